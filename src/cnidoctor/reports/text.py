"""The terminal report: a verdict line, then findings per node, causes before consequences.

Everything taken from the nodes (evidence, fix commands, errors) is printed as rich
`Text`, never as markup, so brackets and colons in it are shown as they are; fix and
evidence lines are printed with soft wrapping so a copied command is never broken.
The summarising helpers (verdict, grouping, cause tree) are shared with the Markdown
renderer so both formats say the same thing.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field

from rich.console import Console
from rich.text import Text

from cnidoctor.models import Finding, NodeStatus, Report, Severity

SEVERITY_STYLE: dict[Severity, str] = {
    Severity.CRITICAL: "bold white on red",
    Severity.WARNING: "bold black on yellow",
    Severity.INFO: "bold white on blue",
}
#: foreground colour of a severity where a badge would be too loud (tables)
SEVERITY_COLOUR: dict[Severity, str] = {
    Severity.CRITICAL: "red",
    Severity.WARNING: "yellow",
    Severity.INFO: "blue",
}
#: indentation of the parts of a finding below its headline, per nesting level
INDENT = 4


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def node_label(key: str) -> str:
    """`ID@NODE` (a `caused_by` entry) as `ID on NODE`, for people."""
    rule_id, _, node = key.partition("@")
    return f"{rule_id} on {node}" if node else rule_id


def finding_place(finding: Finding) -> str:
    """Where a finding is: `on NODE`, `on A, B`, or the cluster as a whole."""
    return f"on {', '.join(finding.nodes)}" if finding.nodes else "cluster-wide"


def first_domino(report: Report) -> Finding | None:
    """The finding to act on first: the first root cause in the (already ordered) report."""
    for finding in report.findings:
        if finding.root_cause:
            return finding
    return report.findings[0] if report.findings else None


def verdict(report: Report) -> str:
    """One line a person reads first: how bad, how widespread, where to start."""
    names = [n.name for n in report.nodes]
    missing = [n.name for n in report.nodes if not n.collected]
    partial = [n.name for n in report.nodes if n.collected and n.error]
    collected = len(names) - len(missing)
    if names and not collected:
        return f"No node could be collected ({', '.join(missing)})"
    gaps = []
    if missing:
        gaps.append(f"not collected: {', '.join(missing)}")
    if partial:
        gaps.append(f"partial: {', '.join(partial)}")
    tail = f" ({'; '.join(gaps)})" if gaps else ""
    if not report.findings:
        if missing:
            return f"No problems found on {collected} of {plural(len(names), 'node')}{tail}"
        return f"No problems found on {plural(collected, 'node')}{tail}"
    counts = [
        f"{sum(f.severity == s for f in report.findings)} {s.value}"
        for s in Severity
        if any(f.severity == s for f in report.findings)
    ]
    affected = {n for f in report.findings for n in f.nodes}
    total = len(set(names) | affected)
    where = f" on {len(affected)} of {plural(total, 'node')}" if affected else " cluster-wide"
    line = f"{', '.join(counts)}{where}"
    domino = first_domino(report)
    if domino is not None:
        line += f" - first domino: {domino.id}"
        if domino.nodes:
            line += f" on {', '.join(domino.nodes)}"
    return line + tail


@dataclass
class Group:
    """The findings shown under one heading: one node's, or cluster-wide (node None)."""

    node: str | None
    findings: list[Finding] = field(default_factory=list)

    @property
    def heading(self) -> str:
        return self.node if self.node is not None else "cluster-wide"


def group_findings(report: Report) -> list[Group]:
    """Findings on several nodes (or none) first, then one group per node in order of
    its first finding, so the first domino's node leads; report order is kept inside."""
    cluster = Group(None)
    per_node: dict[str, Group] = {}
    for finding in report.findings:
        if len(finding.nodes) == 1:
            per_node.setdefault(finding.nodes[0], Group(finding.nodes[0])).findings.append(finding)
        else:
            cluster.findings.append(finding)
    groups = [cluster] if cluster.findings else []
    return groups + list(per_node.values())


def cause_tree(findings: list[Finding]) -> Iterator[tuple[Finding, int]]:
    """(finding, depth) in display order: each consequence right under the first of its
    causes shown before it in the same group; anything else at depth 0."""
    parent: dict[int, int] = {}
    seen: dict[str, int] = {}
    for index, finding in enumerate(findings):
        for key in finding.caused_by:
            if key in seen:
                parent[index] = seen[key]
                break
        seen.setdefault(finding.key, index)
    children: dict[int | None, list[int]] = {}
    for index in range(len(findings)):
        children.setdefault(parent.get(index), []).append(index)

    def walk(index: int, depth: int) -> Iterator[tuple[Finding, int]]:
        yield findings[index], depth
        for child in children.get(index, []):
            yield from walk(child, depth + 1)

    for root in children.get(None, []):
        yield from walk(root, 0)


def caused_by_text(finding: Finding, group: Group) -> str:
    """`follows from X, Y`; a cause on the group's own node is named without the node."""
    labels = []
    for key in finding.caused_by:
        rule_id, _, node = key.partition("@")
        labels.append(rule_id if node and node == group.node else node_label(key))
    return "follows from " + ", ".join(labels)


def node_state(status: NodeStatus) -> str:
    if not status.collected:
        return f"NOT COLLECTED: {status.error or 'unknown error'}"
    took = f" in {status.duration_s:.2f}s" if status.duration_s is not None else ""
    if status.error:
        return f"PARTIAL{took}: {status.error}"
    return f"collected{took}"


def render_text(report: Report, console: Console, verbose: bool = False) -> None:
    """Print the report for a person at a terminal (plain text when not a terminal)."""
    console.print(Text(verdict(report), style="bold"), soft_wrap=True)
    cluster = _cluster_line(report)
    if cluster:
        console.print(Text(cluster, style="dim"), soft_wrap=True)
    _print_nodes(report, console)
    for group in group_findings(report):
        console.print()
        console.print(Text(group.heading, style="bold underline"), soft_wrap=True)
        tree = list(cause_tree(group.findings))
        for index, (finding, depth) in enumerate(tree):
            # consequences are folded: no explanation paragraph (-v and JSON have it), but
            # their evidence and fix stay, since they are often what to act on first
            _print_finding(console, finding, group, depth, explain=verbose or depth == 0)
            if depth == 0:
                _print_consequence_count(console, tree, index, verbose)
    _print_details(report, console, verbose)


def _print_consequence_count(
    console: Console, tree: list[tuple[Finding, int]], index: int, verbose: bool
) -> None:
    """`3 symptoms follow from this`: what fixing this root should also clear."""
    count = 0
    for _, depth in tree[index + 1 :]:
        if depth == 0:
            break
        count += 1
    if count:
        what = "symptom follows" if count == 1 else "symptoms follow"
        hint = "" if verbose else " (-v explains each)"
        console.print(Text(f"{' ' * INDENT}{count} {what} from this{hint}:", style="bold"))


def _cluster_line(report: Report) -> str:
    c = report.cluster
    parts = [
        f"{label} {value}"
        for label, value in (
            ("cluster", c.name),
            ("cni", c.cni),
            ("pod CIDR", c.pod_cidr),
            ("service CIDR", c.service_cidr),
        )
        if value
    ]
    return ", ".join(parts)


def _print_nodes(report: Report, console: Console) -> None:
    if not report.nodes:
        return
    console.print()
    counts: dict[str, int] = {}
    for finding in report.findings:
        for name in finding.nodes:
            counts[name] = counts.get(name, 0) + 1
    width = max(len(n.name) for n in report.nodes)
    for status in report.nodes:
        line = Text("  ")
        line.append(status.name.ljust(width), style="bold")
        line.append("  ")
        state = node_state(status)
        style = "red" if not status.collected else "yellow" if status.error else "green"
        line.append(state, style=style)
        if status.collected and status.name in counts:
            line.append(f", {plural(counts[status.name], 'finding')}")
        console.print(line, soft_wrap=True)


def _badge(console: Console, severity: Severity) -> Text:
    label = severity.value.upper()
    if console.color_system is None:
        return Text(label.ljust(8))
    return Text(f" {label} ", style=SEVERITY_STYLE[severity])


def _print_finding(
    console: Console, finding: Finding, group: Group, depth: int, explain: bool = True
) -> None:
    pad = " " * (INDENT * depth)
    console.print()
    head = Text(pad + ("-> " if depth else ""))
    head.append_text(_badge(console, finding.severity))
    head.append(" ")
    head.append(finding.id, style="bold")
    if group.node is None:
        head.append(f" ({finding_place(finding)})")
    head.append(f": {finding.title}")
    console.print(head, soft_wrap=True)
    body = " " * (INDENT * (depth + 1))
    if finding.caused_by:
        console.print(Text(body + caused_by_text(finding, group), style="italic"), soft_wrap=True)
    if finding.explanation and explain:
        width = max(40, console.width - len(body))
        for line in textwrap.wrap(finding.explanation, width=width):
            console.print(Text(body + line, style="dim"), soft_wrap=True)
    if finding.evidence:
        console.print(Text(body + "evidence:", style="bold"), soft_wrap=True)
        for line in finding.evidence:
            console.print(Text(f"{body}  - {line}"), soft_wrap=True)
    if finding.fix:
        console.print(Text(body + "fix:", style="bold"), soft_wrap=True)
        for line in finding.fix:
            # indented but otherwise exactly the command: safe to copy and paste
            console.print(Text(f"{body}  {line}", style="cyan"), soft_wrap=True)


def _print_details(report: Report, console: Console, verbose: bool) -> None:
    """What was not checked: listed with verbose, otherwise counted in one hint line."""
    unavailable = sum(len(n.facts_unavailable) for n in report.nodes)
    skipped = sum(len(n.rules_skipped) for n in report.nodes)
    if not unavailable and not skipped:
        return
    console.print()
    if not verbose:
        hint = (
            f"{plural(skipped, 'rule')} skipped, {plural(unavailable, 'fact')} unavailable "
            "(-v lists them)"
        )
        console.print(Text(hint, style="dim"), soft_wrap=True)
        return
    console.print(Text("not checked", style="bold underline"), soft_wrap=True)
    for status in report.nodes:
        if not status.facts_unavailable and not status.rules_skipped:
            continue
        console.print(Text(f"  {status.name}", style="bold"), soft_wrap=True)
        for title, items in (
            ("facts unavailable", status.facts_unavailable),
            ("rules skipped", status.rules_skipped),
        ):
            if items:
                console.print(Text(f"    {title}:"), soft_wrap=True)
                for item in items:
                    console.print(Text(f"      - {item}", style="dim"), soft_wrap=True)
