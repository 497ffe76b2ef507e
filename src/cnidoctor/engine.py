"""The engine: run rules over node contexts, link findings along the catalog's cause edges,
and order them so the first domino comes first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cnidoctor.models import Finding
from cnidoctor.rules.base import ClusterContext, FactUnavailable, Hit, NodeContext, Rule


@dataclass
class RuleRun:
    findings: list[Finding] = field(default_factory=list)
    #: "rule id on node: why" for rules that could not be evaluated
    skipped: dict[str, list[str]] = field(default_factory=dict)


def run_node_rules(
    contexts: Sequence[NodeContext],
    rules: Sequence[type[Rule]],
    cluster: ClusterContext | None = None,
) -> RuleRun:
    """Node rules on every node, then cluster rules once (when a cluster context is given)."""
    run = RuleRun()
    for node in contexts:
        for rule_cls in rules:
            if rule_cls.scope != "node":
                continue
            rule = rule_cls()
            try:
                hits = list(rule.check(node))
            except FactUnavailable as exc:
                run.skipped.setdefault(node.name, []).append(f"{rule.id}: needs {exc}")
                continue
            run.findings += [_finding(rule, hit, [node.name, *hit.extra_nodes]) for hit in hits]
    if cluster is not None:
        for rule_cls in rules:
            if rule_cls.scope != "cluster":
                continue
            rule = rule_cls()
            try:
                hits = list(rule.check_cluster(cluster))
            except FactUnavailable as exc:
                run.skipped.setdefault("cluster", []).append(f"{rule.id}: needs {exc}")
                continue
            run.findings += [_finding(rule, hit, list(hit.extra_nodes)) for hit in hits]
    return run


def _finding(rule: Rule, hit: Hit, nodes: list[str]) -> Finding:
    return Finding(
        id=rule.id,
        severity=hit.severity or rule.severity,
        nodes=nodes,
        title=hit.title or rule.title,
        explanation=rule.explanation,
        evidence=hit.evidence,
        fix=list(hit.fix if hit.fix is not None else rule.fix),
    )


def link_causes(findings: list[Finding], rules: Sequence[type[Rule]]) -> list[Finding]:
    """Set caused_by/root_cause from the rules' `causes` edges and order causes first.

    A finding is caused by another when the other's rule lists its id under `causes` and
    they share a node (or the cause is cluster-wide). Order: roots first, the one whose
    consequences are worst and most numerous leading (UFW's DROP, a warning, comes before
    a critical that explains nothing else, because it knocks down the kubelet port), each
    followed depth-first by what it causes; ties keep the rules' registry order.
    """
    causes_of = {r.id: set(r.causes) for r in rules}
    order = {r.id: i for i, r in enumerate(rules)}
    for finding in findings:
        finding.caused_by = sorted(
            {
                other.key
                for other in findings
                if other is not finding
                and finding.id in causes_of.get(other.id, ())
                and (not other.nodes or set(other.nodes) & set(finding.nodes))
            }
        )
        finding.root_cause = not finding.caused_by
    by_key = {f.key: f for f in findings}
    children = {f.key: [c for c in findings if f.key in c.caused_by] for f in findings}

    def downstream(finding: Finding) -> list[Finding]:
        """The finding and everything that follows from it (cycle-safe)."""
        seen: dict[str, Finding] = {}
        stack = [finding]
        while stack:
            current = stack.pop()
            if current.key not in seen:
                seen[current.key] = current
                stack += children.get(current.key, [])
        return list(seen.values())

    weight = {
        f.key: (min(d.severity.rank for d in downstream(f)), -len(downstream(f))) for f in findings
    }

    def sort_key(f: Finding) -> tuple[int, int, int, str]:
        worst, size = weight[f.key]
        return (worst, size, order.get(f.id, len(order)), ",".join(f.nodes))

    ordered: list[Finding] = []
    placed: set[int] = set()

    def place(finding: Finding) -> None:
        if id(finding) in placed:
            return
        placed.add(id(finding))
        ordered.append(finding)
        for child in sorted(children[finding.key], key=sort_key):
            if all(id(by_key.get(k)) in placed for k in child.caused_by if k in by_key):
                place(child)

    for root in sorted((f for f in findings if f.root_cause), key=sort_key):
        place(root)
    for rest in sorted(findings, key=sort_key):  # cycles or causes not yet placed
        place(rest)
    return ordered
