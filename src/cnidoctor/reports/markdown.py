"""The report as Markdown, for an issue or a chat: the same content as the text report.

Node-derived text (evidence, fixes, errors) goes into code spans and fenced blocks whose
fences are longer than any backtick run inside, so it is shown verbatim and can never
break the document's structure.
"""

from __future__ import annotations

import re

from cnidoctor.models import Finding, Report
from cnidoctor.reports.text import (
    Group,
    cause_tree,
    caused_by_text,
    group_findings,
    node_state,
    plural,
    verdict,
)

_BACKTICKS = re.compile(r"`+")


def code_span(text: str) -> str:
    """Inline code that survives backticks in the text (CommonMark's variable fence)."""
    longest = max((len(m) for m in _BACKTICKS.findall(text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def code_block(lines: list[str], lang: str = "sh") -> str:
    body = "\n".join(lines)
    longest = max((len(m) for m in _BACKTICKS.findall(body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{body}\n{fence}"


def cell(text: str) -> str:
    """Text safe inside a table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def render_markdown(report: Report) -> str:
    """The whole report as a Markdown document (ends with a newline)."""
    out = [f"## cnidoctor: {verdict(report)}", ""]
    c = report.cluster
    facts = [
        f"{label} {code_span(value)}"
        for label, value in (
            ("cluster", c.name),
            ("CNI", c.cni),
            ("pod CIDR", c.pod_cidr),
            ("service CIDR", c.service_cidr),
        )
        if value
    ]
    if facts:
        out += [", ".join(facts), ""]
    if report.nodes:
        counts: dict[str, int] = {}
        for finding in report.findings:
            for name in finding.nodes:
                counts[name] = counts.get(name, 0) + 1
        out += ["| node | state | findings |", "| --- | --- | --- |"]
        for status in report.nodes:
            state = node_state(status)
            if not status.collected or status.error:
                state = f"**{state.split(':', 1)[0]}**:{state.split(':', 1)[1]}"
            out.append(f"| {cell(status.name)} | {cell(state)} | {counts.get(status.name, 0)} |")
        out.append("")
    for group in group_findings(report):
        out += [f"### {group.heading}", ""]
        for finding, depth in cause_tree(group.findings):
            out += _finding(finding, group, depth)
    out += _details(report)
    return "\n".join(out).rstrip("\n") + "\n"


def _finding(finding: Finding, group: Group, depth: int) -> list[str]:
    arrow = "↳ " * depth
    where = "" if group.node is not None else f" ({', '.join(finding.nodes) or 'cluster-wide'})"
    lines = [
        f"#### {arrow}{finding.severity.value.upper()} {code_span(finding.id)}{where}: "
        f"{cell(finding.title)}",
        "",
    ]
    if finding.caused_by:
        lines += [f"*{caused_by_text(finding, group)}*", ""]
    if finding.explanation:
        lines += [finding.explanation, ""]
    if finding.evidence:
        lines += ["Evidence:", ""]
        lines += [f"- {code_span(item)}" for item in finding.evidence]
        lines.append("")
    if finding.fix:
        lines += ["Fix:", "", code_block(finding.fix), ""]
    return lines


def _details(report: Report) -> list[str]:
    """Facts unavailable and rules skipped, folded: useful to whoever reads the issue."""
    nodes = [n for n in report.nodes if n.facts_unavailable or n.rules_skipped]
    if not nodes:
        return []
    skipped = sum(len(n.rules_skipped) for n in nodes)
    unavailable = sum(len(n.facts_unavailable) for n in nodes)
    lines = [
        "<details>",
        f"<summary>not checked: {plural(skipped, 'rule')} skipped, "
        f"{plural(unavailable, 'fact')} unavailable</summary>",
        "",
    ]
    for status in nodes:
        lines += [f"**{cell(status.name)}**", ""]
        lines += [f"- fact unavailable: {code_span(item)}" for item in status.facts_unavailable]
        lines += [f"- rule skipped: {code_span(item)}" for item in status.rules_skipped]
        lines.append("")
    lines += ["</details>", ""]
    return lines
