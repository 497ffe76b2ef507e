"""Renderers: what a person reads must be right at a glance and copy-pasteable.

Reports are built by hand (renderers are pure); consoles are plain StringIO consoles.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

from rich.console import Console

from cnidoctor.collectors.network import RoutesCollector
from cnidoctor.models import ClusterSummary, Finding, NodeStatus, Report, Severity
from cnidoctor.reports import render_markdown, render_rules, render_text, rules_markdown, verdict
from cnidoctor.rules import all_rules
from cnidoctor.rules.base import Hit, NodeContext, Rule

NODE = "donovan-xps-8930"
LONG_FIX = (
    "iptables -I INPUT 1 -s 192.168.1.0/24 -p tcp -m multiport --dports 6443,10250,2379:2380 "
    "-m comment --comment 'cnidoctor: cluster ports' -j ACCEPT"
)
UFW_EVIDENCE = "iptables-save: :ufw-before-input - [0:0] (chain present; :warning: kept as is)"


def incident_000() -> Report:
    """The shape of incident 000: UFW first, the INPUT drop follows, br_netfilter apart."""
    ufw = Finding(
        id="firewall.host-firewall-active",
        severity=Severity.CRITICAL,
        nodes=[NODE],
        title="UFW manages the node's firewall",
        explanation="UFW owns INPUT and drops what it does not know. " * 4,
        evidence=[UFW_EVIDENCE, "/etc/ufw/ufw.conf: ENABLED=yes"],
        fix=["sudo ufw allow from 192.168.1.0/24", LONG_FIX],
    )
    drop = Finding(
        id="firewall.input-drop-blocks-cluster-ports",
        severity=Severity.CRITICAL,
        nodes=[NODE],
        title="INPUT drops 10250/tcp and 8472/udp",
        explanation="The kubelet and VXLAN ports are dropped.",
        evidence=["-P INPUT DROP", "10250/tcp from 192.168.1.10: dropped by policy"],
        fix=["sudo ufw allow 10250/tcp"],
        caused_by=[f"firewall.host-firewall-active@{NODE}"],
        root_cause=False,
    )
    brnf = Finding(
        id="kernel.br-netfilter-missing",
        severity=Severity.WARNING,
        nodes=[NODE],
        title="br_netfilter is not loaded",
        explanation="Bridged traffic bypasses iptables.",
        evidence=["/proc/sys/net/bridge/bridge-nf-call-iptables: absent"],
        fix=["modprobe br_netfilter"],
    )
    prefix = Finding(
        id="route.prefix-inconsistent",
        severity=Severity.WARNING,
        nodes=["nl-k8s-01", NODE],
        title="nodes use different prefixes for 192.168.1.0",
        explanation="Asymmetric routing.",
        evidence=["nl-k8s-01: 192.168.1.10/24", f"{NODE}: 192.168.1.34/16"],
    )
    return Report(
        cluster=ClusterSummary(name="homelab", pod_cidr="10.244.0.0/16", cni="flannel"),
        nodes=[
            NodeStatus(name="nl-k8s-01", collected=True, duration_s=0.41),
            NodeStatus(
                name=NODE,
                collected=True,
                duration_s=1.5,
                facts_unavailable=["nft_ruleset: absent: nft is not installed"],
                rules_skipped=["iptables.backend-mismatch: needs nft_ruleset: absent"],
            ),
            NodeStatus(
                name="nl-k8s-03",
                collected=False,
                error="ssh://root@10.0.0.9: ssh failed: connect to host 10.0.0.9 port 22: refused",
            ),
        ],
        findings=[ufw, drop, prefix, brnf],
    )


def text_of(report: Report, verbose: bool = False, width: int = 100) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=False)
    render_text(report, console, verbose=verbose)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(output, str)
    return output


def line_index(lines: list[str], needle: str) -> int:
    matches = [i for i, line in enumerate(lines) if needle in line]
    assert matches, f"{needle!r} not in output"
    return matches[0]


# --- verdict ---------------------------------------------------------------------------


def test_verdict_counts_spread_and_first_domino() -> None:
    line = verdict(incident_000())
    assert line.startswith(
        f"2 critical, 2 warning on 2 of 3 nodes - first domino: "
        f"firewall.host-firewall-active on {NODE}"
    )
    assert "not collected: nl-k8s-03" in line


def test_verdict_when_clean() -> None:
    report = Report(
        cluster=ClusterSummary(),
        nodes=[NodeStatus(name="a", collected=True), NodeStatus(name="b", collected=True)],
        findings=[],
    )
    assert verdict(report) == "No problems found on 2 nodes"


def test_verdict_clean_but_incomplete_says_so() -> None:
    report = Report(
        cluster=ClusterSummary(),
        nodes=[
            NodeStatus(name="a", collected=True),
            NodeStatus(name="b", collected=False, error="no shell"),
            NodeStatus(name="c", collected=True, error="the node did not finish within 40s"),
        ],
        findings=[],
    )
    assert verdict(report) == "No problems found on 2 of 3 nodes (not collected: b; partial: c)"


def test_verdict_when_nothing_collected() -> None:
    report = Report(
        cluster=ClusterSummary(),
        nodes=[NodeStatus(name="a", collected=False, error="netns:a: no network namespace")],
        findings=[],
    )
    assert verdict(report) == "No node could be collected (a)"


def test_verdict_first_domino_is_a_root_cause() -> None:
    consequence = Finding(
        id="kubelet.unreachable",
        severity=Severity.CRITICAL,
        nodes=["n1"],
        title="t",
        explanation="e",
        caused_by=["firewall.input-drop-blocks-cluster-ports@n1"],
        root_cause=False,
    )
    root = Finding(
        id="firewall.input-drop-blocks-cluster-ports",
        severity=Severity.WARNING,
        nodes=["n1"],
        title="t",
        explanation="e",
    )
    report = Report(
        cluster=ClusterSummary(),
        nodes=[NodeStatus(name="n1", collected=True)],
        findings=[consequence, root],
    )
    assert "first domino: firewall.input-drop-blocks-cluster-ports on n1" in verdict(report)


# --- text ------------------------------------------------------------------------------


def test_text_verdict_is_the_first_line_and_no_colour_codes() -> None:
    output = text_of(incident_000())
    assert output.splitlines()[0] == verdict(incident_000())
    assert "\x1b[" not in output


def test_text_groups_cluster_wide_first_then_cause_before_consequence() -> None:
    lines = text_of(incident_000()).splitlines()
    cluster = line_index(lines, "route.prefix-inconsistent")
    heading = lines.index(NODE)
    ufw = line_index(lines, "firewall.host-firewall-active:")
    drop = line_index(lines, "firewall.input-drop-blocks-cluster-ports:")
    brnf = line_index(lines, "kernel.br-netfilter-missing:")
    assert cluster < heading < ufw < drop < brnf
    assert "(on nl-k8s-01, donovan-xps-8930)" in lines[cluster]
    # the consequence is folded under its cause and says what it follows from
    assert lines[drop].startswith("    -> CRITICAL")
    assert lines[ufw].startswith("CRITICAL")
    assert lines[drop + 1].strip() == "follows from firewall.host-firewall-active"
    assert lines[brnf].startswith("WARNING ")


def test_text_evidence_and_fix_are_verbatim_and_unbroken() -> None:
    output = text_of(incident_000(), width=60)
    lines = output.splitlines()
    fix_lines = [line for line in lines if LONG_FIX in line]
    assert len(fix_lines) == 1
    assert fix_lines[0].strip() == LONG_FIX  # only indentation around it: copy-pasteable
    assert not re.search(r"[│─┃━╭╮╰╯┌┐└┘]", fix_lines[0])
    assert any(line.strip() == f"- {UFW_EVIDENCE}" for line in lines)
    assert any(line.strip() == "sudo ufw allow 10250/tcp" for line in lines)


def test_text_shows_nodes_with_errors_and_partial_marks() -> None:
    report = incident_000()
    report.nodes.append(
        NodeStatus(name="late", collected=True, duration_s=40.2, error="the node did not finish")
    )
    lines = text_of(report).splitlines()
    missing = lines[line_index(lines, "  nl-k8s-03")]
    assert "NOT COLLECTED: ssh://root@10.0.0.9: ssh failed: connect to host 10.0.0.9" in missing
    assert "PARTIAL in 40.20s: the node did not finish" in lines[line_index(lines, "  late")]
    assert "4 findings" in lines[line_index(lines, f"  {NODE}")]


def test_text_details_only_with_verbose() -> None:
    quiet = text_of(incident_000())
    assert "iptables.backend-mismatch" not in quiet
    assert "1 rule skipped, 1 fact unavailable (-v lists them)" in quiet
    loud = text_of(incident_000(), verbose=True)
    assert "- nft_ruleset: absent: nft is not installed" in loud
    assert "- iptables.backend-mismatch: needs nft_ruleset: absent" in loud
    assert "-v lists them" not in loud


def test_text_clean_report() -> None:
    report = Report(
        cluster=ClusterSummary(name="homelab"),
        nodes=[NodeStatus(name="a", collected=True, duration_s=0.2)],
        findings=[],
    )
    lines = text_of(report).splitlines()
    assert lines[0] == "No problems found on 1 node"
    assert "CRITICAL" not in "\n".join(lines)


def test_text_colours_on_a_terminal() -> None:
    console = Console(file=io.StringIO(), width=100, force_terminal=True, color_system="standard")
    render_text(incident_000(), console)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[" in output and " CRITICAL " in output
    assert LONG_FIX in output  # colour codes wrap the command, never split it


# --- markdown --------------------------------------------------------------------------


def test_markdown_structure() -> None:
    md = render_markdown(incident_000())
    lines = md.splitlines()
    assert lines[0] == f"## cnidoctor: {verdict(incident_000())}"
    header = lines.index("| node | state | findings |")
    assert lines[header + 1] == "| --- | --- | --- |"
    assert lines[header + 2] == "| nl-k8s-01 | collected in 0.41s | 1 |"
    assert lines[header + 4].startswith("| nl-k8s-03 | **NOT COLLECTED**: ssh://root@10.0.0.9")
    assert lines.index("### cluster-wide") < lines.index(f"### {NODE}")
    ufw = lines.index(
        "#### CRITICAL `firewall.host-firewall-active`: UFW manages the node's firewall"
    )
    drop = line_index(lines, "#### ↳ CRITICAL `firewall.input-drop-blocks-cluster-ports`")
    assert ufw < drop
    assert lines[drop + 2] == "*follows from firewall.host-firewall-active*"
    assert f"- `{UFW_EVIDENCE}`" in lines
    fence = lines.index("```sh", ufw)
    assert lines[fence + 1 : fence + 4] == ["sudo ufw allow from 192.168.1.0/24", LONG_FIX, "```"]
    assert "<summary>not checked: 1 rule skipped, 1 fact unavailable</summary>" in lines
    assert md.endswith("\n") and not md.endswith("\n\n")


def test_markdown_keeps_hostile_text_inside_its_code() -> None:
    finding = Finding(
        id="cni.config-conflict",
        severity=Severity.WARNING,
        nodes=["n|1"],
        title="t",
        explanation="e",
        evidence=["name has `back` ticks"],
        fix=["echo '```'"],
    )
    report = Report(
        cluster=ClusterSummary(),
        nodes=[NodeStatus(name="n|1", collected=False, error="a | b\nsecond line")],
        findings=[finding],
    )
    lines = render_markdown(report).splitlines()
    assert "- ``name has `back` ticks``" in lines
    fence = line_index(lines, "````sh")
    assert lines[fence + 1 : fence + 3] == ["echo '```'", "````"]
    assert "| n\\|1 | **NOT COLLECTED**: a \\| b second line | 1 |" in lines


# --- rules -----------------------------------------------------------------------------


class FakeRule(Rule):
    id = "test.fake-rule"
    severity = Severity.INFO
    title = "a rule made for this test"
    explanation = "It explains."
    needs = (RoutesCollector,)
    fix = ("do `this` first",)
    causes = ("route.loop",)

    def check(self, node: NodeContext) -> Iterator[Hit]:
        yield from ()


def test_render_rules_lists_every_rule() -> None:
    rules = [*all_rules(), FakeRule]
    console = Console(file=io.StringIO(), width=300, force_terminal=False)
    render_rules(rules, console)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    for rule in rules:
        row = next(line for line in output.splitlines() if line.startswith(rule.id + " "))
        assert rule.severity.value in row and rule.title in row
        assert ", ".join(c.name for c in rule.needs) in row
    assert output.rstrip().endswith(f"{len(rules)} rule{'s' if len(rules) > 1 else ''}")


def test_rules_markdown() -> None:
    md = rules_markdown([FakeRule])
    lines = md.splitlines()
    assert lines[0] == "# Rules"
    assert (
        "| [`test.fake-rule`](#testfake-rule) | info | a rule made for this test | `routes` |"
        in lines
    )
    section = lines.index("## test.fake-rule")
    assert "Causes: `route.loop`" in lines[section:]
    fence = lines.index("```sh", section)
    assert lines[fence + 1] == "do `this` first"


def test_text_counts_and_folds_the_consequences_of_a_root() -> None:
    report = incident_000()
    drop = next(f for f in report.findings if f.id == "firewall.input-drop-blocks-cluster-ports")
    quiet = text_of(report).splitlines()
    ufw = line_index(quiet, "firewall.host-firewall-active:")
    count = line_index(quiet, "symptom follows from this")
    consequence = line_index(quiet, "firewall.input-drop-blocks-cluster-ports:")
    assert ufw < count < consequence
    assert quiet[count].strip() == "1 symptom follows from this (-v explains each):"
    # folded: the consequence keeps its evidence and fix, its explanation moves to -v
    first_words = drop.explanation.split()[0:4]
    assert not any(" ".join(first_words) in line for line in quiet[consequence:])
    assert any(line.strip() == "sudo ufw allow 10250/tcp" for line in quiet[consequence:])
    verbose = text_of(report, verbose=True)
    assert " ".join(first_words) in verbose
