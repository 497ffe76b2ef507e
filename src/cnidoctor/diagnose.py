"""The diagnosis pipeline: targets -> parallel collection -> facts -> rules -> ordered report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cnidoctor.collect import NodeCollection, collect_node, judge_facts
from cnidoctor.collectors.registry import collectors_for
from cnidoctor.engine import link_causes, run_node_rules
from cnidoctor.facts.cluster import ClusterFacts
from cnidoctor.inventory import Inventory
from cnidoctor.models import ClusterConfig, ClusterSummary, NodeStatus, Report
from cnidoctor.rules import all_rules
from cnidoctor.rules.base import ClusterContext, NodeContext, Rule
from cnidoctor.transports import transport_for

#: nodes collected at once; each collection is one shell (or ssh session)
MAX_PARALLEL = 8


@dataclass(frozen=True)
class Target:
    """A node to diagnose: how to reach it and what the cluster knows of it."""

    name: str
    spec: str
    address: str | None = None
    role: str = "worker"
    etcd: bool | None = None


def targets_from_inventory(inventory: Inventory) -> list[Target]:
    return [
        Target(name=n.name, spec=n.via, address=n.address, role=n.role, etcd=n.etcd)
        for n in inventory.nodes
    ]


def collect(
    targets: Sequence[Target],
    rules: Sequence[type[Rule]],
    on_done: Callable[[NodeCollection], None] | None = None,
) -> list[NodeCollection]:
    """Collect every target in parallel; unreachable nodes come back as collected=False."""
    collectors = collectors_for(rules)

    def one(target: Target) -> NodeCollection:
        try:
            transport = transport_for(target.spec)
        except Exception as exc:  # a bad spec is this node's result, not a crash
            return NodeCollection(
                name=target.name, spec=target.spec, collected=False, error=str(exc)
            )
        result = collect_node(target.name, transport, collectors)
        if on_done:
            on_done(result)
        return result

    if len(targets) == 1:
        return [one(targets[0])]
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(targets))) as pool:
        return list(pool.map(one, targets))


def analyse(
    collections: Sequence[NodeCollection],
    targets: Sequence[Target],
    cluster: ClusterConfig,
    rules: Sequence[type[Rule]],
    kube: ClusterFacts | None = None,
) -> Report:
    """Pure analysis of collected raw output (and what the API said): live and on snapshots."""
    collectors = collectors_for(rules)
    by_name = {t.name: t for t in targets}
    contexts: list[NodeContext] = []
    statuses: list[NodeStatus] = []
    for collection in collections:
        status = NodeStatus(
            name=collection.name,
            collected=collection.collected,
            error=collection.error,
            duration_s=collection.duration_s,
        )
        statuses.append(status)
        if not collection.collected:
            continue
        facts = judge_facts(collection, collectors)
        status.facts_unavailable = [f.describe() for f in facts.values() if not f.ok]
        target = by_name.get(collection.name)
        kube_node = kube.node(collection.name) if kube is not None else None
        address = target.address if target else None
        contexts.append(
            NodeContext(
                name=collection.name,
                facts=facts,
                cluster=cluster,
                address=address or (kube_node.internal_ip if kube_node else None),
                kube=kube_node,
                role=target.role if target else "worker",
                etcd=target.etcd if target else None,
            )
        )
    run = run_node_rules(contexts, rules, ClusterContext(contexts, cluster, kube))
    for status in statuses:
        status.rules_skipped = run.skipped.get(status.name, [])
    return Report(
        cluster=ClusterSummary(
            name=cluster.name,
            pod_cidr=cluster.pod_cidr,
            service_cidr=cluster.service_cidr,
            cni=cluster.cni,
        ),
        nodes=statuses,
        findings=link_causes(run.findings, rules),
    )


def diagnose(
    targets: Sequence[Target],
    cluster: ClusterConfig,
    rules: Sequence[type[Rule]] | None = None,
    on_done: Callable[[NodeCollection], None] | None = None,
    api: Callable[[], ClusterFacts] | None = None,
) -> Report:
    """Collect the nodes and, at the same time, the API (`api`, when given); then judge."""
    rules = list(rules) if rules is not None else all_rules()
    collections, kube = collect_all(targets, rules, on_done, api)
    return analyse(collections, targets, cluster, rules, kube)


def collect_all(
    targets: Sequence[Target],
    rules: Sequence[type[Rule]],
    on_done: Callable[[NodeCollection], None] | None = None,
    api: Callable[[], ClusterFacts] | None = None,
) -> tuple[list[NodeCollection], ClusterFacts | None]:
    """Nodes and the API in parallel: the API's timeout overlaps the nodes' collection."""
    if api is None:
        return collect(targets, rules, on_done), None
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(api)
        collections = collect(targets, rules, on_done)
        return collections, pending.result()
