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
        for registered in rules:
            rule_cls = (
                registered
                if registered.scope == "cluster"
                else getattr(registered, "cross_node", None)
            )
            if rule_cls is None:
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
        not_caused_by=list(hit.not_caused_by),
    )


def _set_caused_by(findings: list[Finding], rules: Sequence[type[Rule]]) -> None:
    """caused_by and root_cause of every finding, through indexes by id and node: each
    finding looks only at the findings of its causes' ids on its own nodes (2,000 nodes
    make thousands of findings; comparing all pairs took seconds)."""
    causers: dict[str, set[str]] = {}
    for rule in rules:
        for effect in rule.causes:
            causers.setdefault(effect, set()).add(rule.id)
    on_node: dict[str, dict[str, list[Finding]]] = {}
    cluster_wide: dict[str, list[Finding]] = {}
    for other in findings:
        if not other.nodes:
            cluster_wide.setdefault(other.id, []).append(other)
            continue
        index = on_node.setdefault(other.id, {})
        for node in dict.fromkeys(other.nodes):
            index.setdefault(node, []).append(other)
    for finding in findings:
        keys: set[str] = set()
        for cause in causers.get(finding.id, ()):
            if cause in finding.not_caused_by:
                continue
            keys.update(o.key for o in cluster_wide.get(cause, ()) if o is not finding)
            index = on_node.get(cause)
            if index:
                for node in finding.nodes:
                    keys.update(o.key for o in index.get(node, ()) if o is not finding)
        finding.caused_by = sorted(keys)
        finding.root_cause = not finding.caused_by


def link_causes(findings: list[Finding], rules: Sequence[type[Rule]]) -> list[Finding]:
    """Set caused_by/root_cause from the rules' `causes` edges and order causes first.

    A finding is caused by another when the other's rule lists its id under `causes` and
    they share a node (or the cause is cluster-wide). Order: roots first, the one whose
    consequences are worst and most numerous leading (UFW's DROP, a warning, comes before
    a critical that explains nothing else, because it knocks down the kubelet port), each
    followed depth-first by what it causes; ties keep the rules' registry order.
    """
    order = {r.id: i for i, r in enumerate(rules)}
    _set_caused_by(findings, rules)
    by_key = {f.key: f for f in findings}
    children: dict[str, list[Finding]] = {f.key: [] for f in findings}
    for finding in findings:
        for key in finding.caused_by:
            children[key].append(finding)

    weight: dict[str, tuple[int, int]] = {}
    for finding in reversed(findings):  # a key's weight is its last finding's, as before
        if finding.key in weight:
            continue
        seen: dict[str, Finding] = {}  # the finding and everything that follows (cycle-safe)
        stack = [finding]
        while stack:
            current = stack.pop()
            if current.key not in seen:
                seen[current.key] = current
                stack += children.get(current.key, [])
        weight[finding.key] = (min(d.severity.rank for d in seen.values()), -len(seen))

    def sort_key(f: Finding) -> tuple[int, int, int, str]:
        worst, size = weight[f.key]
        return (worst, size, order.get(f.id, len(order)), ",".join(f.nodes))

    ordered: list[Finding] = []
    placed: set[int] = set()
    #: per finding: how many of its causes are not placed yet (placed when it reaches 0)
    waiting = {id(f): len(f.caused_by) for f in findings}

    def place(finding: Finding) -> None:
        if id(finding) in placed:
            return
        placed.add(id(finding))
        ordered.append(finding)
        if by_key[finding.key] is finding:
            for child in children[finding.key]:
                waiting[id(child)] -= 1
        for child in sorted(children[finding.key], key=sort_key):
            if waiting[id(child)] == 0:
                place(child)

    for root in sorted((f for f in findings if f.root_cause), key=sort_key):
        place(root)
    for rest in sorted(findings, key=sort_key):  # cycles or causes not yet placed
        place(rest)
    return ordered
