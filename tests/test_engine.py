"""The engine links findings along the rules' `causes` edges and puts first dominoes first."""

from __future__ import annotations

from collections.abc import Iterator

from cnidoctor.cli import exit_status
from cnidoctor.engine import link_causes, run_node_rules
from cnidoctor.models import ClusterConfig, ClusterSummary, Finding, NodeStatus, Report, Severity
from cnidoctor.rules.base import Hit, NodeContext, Rule


def finding(id_: str, node: str, severity: Severity = Severity.CRITICAL) -> Finding:
    return Finding(id=id_, severity=severity, nodes=[node], title=id_, explanation="x")


class Cause(Rule):
    id = "firewall.host-firewall-active"
    severity = Severity.WARNING
    title = "cause"
    explanation = "x"
    needs = ()
    causes = ("firewall.input-drop-blocks-cluster-ports",)


class Effect(Rule):
    id = "firewall.input-drop-blocks-cluster-ports"
    severity = Severity.CRITICAL
    title = "effect"
    explanation = "x"
    needs = ()


class Unrelated(Rule):
    id = "route.multiple-default"
    severity = Severity.WARNING
    title = "unrelated"
    explanation = "x"
    needs = ()


RULES = [Cause, Effect, Unrelated]


def test_a_cause_on_the_same_node_comes_first_and_marks_its_effect() -> None:
    effect = finding(Effect.id, "w1")
    cause = finding(Cause.id, "w1", Severity.WARNING)
    unrelated = finding(Unrelated.id, "w1", Severity.WARNING)
    ordered = link_causes([effect, unrelated, cause], RULES)
    assert [f.id for f in ordered] == [Cause.id, Effect.id, Unrelated.id]
    assert effect.caused_by == [f"{Cause.id}@w1"] and not effect.root_cause
    assert cause.root_cause and unrelated.root_cause


def test_a_cause_on_another_node_explains_nothing() -> None:
    effect = finding(Effect.id, "w1")
    cause = finding(Cause.id, "w2", Severity.WARNING)
    ordered = link_causes([cause, effect], RULES)
    assert effect.caused_by == [] and effect.root_cause
    # both roots: the critical one first
    assert [f.id for f in ordered] == [Effect.id, Cause.id]


class NeedsMissingFact(Rule):
    id = "kernel.br-netfilter-missing"
    severity = Severity.CRITICAL
    title = "t"
    explanation = "x"
    needs = ()

    def check(self, node: NodeContext) -> Iterator[Hit]:
        from cnidoctor.collectors.network import LinksCollector

        node.fact(LinksCollector)
        yield Hit(evidence=["never"])


def test_a_rule_whose_fact_is_missing_is_skipped_with_the_reason() -> None:
    ctx = NodeContext(name="n", facts={}, cluster=ClusterConfig())
    run = run_node_rules([ctx], [NeedsMissingFact])
    assert run.findings == []
    assert run.skipped["n"] == [
        "kernel.br-netfilter-missing: needs links: could not collect: not collected"
    ]


def report(*severities: Severity) -> Report:
    return Report(
        cluster=ClusterSummary(),
        nodes=[NodeStatus(name="n", collected=True)],
        findings=[finding(f"x.{i}", "n", s) for i, s in enumerate(severities)],
    )


def test_exit_status_follows_fail_on() -> None:
    assert exit_status(report(), "critical") == 0
    assert exit_status(report(Severity.WARNING), "critical") == 0
    assert exit_status(report(Severity.WARNING), "warning") == 1
    assert exit_status(report(Severity.CRITICAL), "critical") == 1
    assert exit_status(report(Severity.INFO), "warning") == 0
    assert exit_status(report(Severity.CRITICAL), "never") == 0


class Isolated(Rule):
    id = "kernel.br-netfilter-missing"
    severity = Severity.CRITICAL
    title = "isolated"
    explanation = "x"
    needs = ()


def test_a_warning_that_knocks_down_a_critical_leads_an_isolated_critical() -> None:
    """Incident 000: UFW (warning) blocks the kubelet (critical): it is the first domino."""
    rules = [Isolated, Cause, Effect]  # registry order alone would put Isolated first
    isolated = finding(Isolated.id, "w1")
    cause = finding(Cause.id, "w1", Severity.WARNING)
    effect = finding(Effect.id, "w1")
    ordered = link_causes([isolated, effect, cause], rules)
    assert [f.id for f in ordered] == [Cause.id, Effect.id, Isolated.id]


def test_causes_in_a_cycle_are_all_reported() -> None:
    class A(Rule):
        id = "a.a"
        severity = Severity.WARNING
        title = explanation = "a"
        needs = ()
        causes = ("b.b",)

    class B(Rule):
        id = "b.b"
        severity = Severity.WARNING
        title = explanation = "b"
        needs = ()
        causes = ("a.a",)

    ordered = link_causes([finding("a.a", "n"), finding("b.b", "n")], [A, B])
    assert sorted(f.id for f in ordered) == ["a.a", "b.b"]
    assert not any(f.root_cause for f in ordered)
