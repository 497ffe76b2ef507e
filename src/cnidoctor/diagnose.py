"""The diagnosis pipeline: targets -> parallel collection -> facts -> rules -> ordered report."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cnidoctor.collect import NodeCollection, ResultsKey, collect_node, judge_facts
from cnidoctor.collectors.base import Collector
from cnidoctor.collectors.network import LinksCollector, NeighboursCollector, RoutesCollector
from cnidoctor.collectors.registry import collectors_for
from cnidoctor.engine import link_causes, run_node_rules
from cnidoctor.facts.base import Fact
from cnidoctor.facts.cluster import ClusterFacts
from cnidoctor.inventory import Inventory
from cnidoctor.models import ClusterConfig, ClusterSummary, NodeStatus, Report
from cnidoctor.rules import all_rules
from cnidoctor.rules.base import ClusterContext, NodeContext, Rule
from cnidoctor.transports import transport_for

if TYPE_CHECKING:
    from cnidoctor.probes.pod import PodProbeOptions

#: nodes collected at once; each collection is one shell (or ssh session)
MAX_PARALLEL = 8
#: what is read from a router of the inventory (not a Kubernetes node: no node rules run)
ROUTER_COLLECTORS: tuple[type[Collector], ...] = (
    LinksCollector,
    NeighboursCollector,
    RoutesCollector,
)


@dataclass(frozen=True)
class Target:
    """A node to diagnose: how to reach it and what the cluster knows of it."""

    name: str
    spec: str
    address: str | None = None
    role: str = "worker"
    etcd: bool | None = None

    @property
    def is_router(self) -> bool:
        return self.role == "router"


def targets_from_inventory(inventory: Inventory) -> list[Target]:
    """The inventory's nodes, then its routers (role "router")."""
    nodes = [
        Target(name=n.name, spec=n.via, address=n.address, role=n.role, etcd=n.etcd)
        for n in inventory.nodes
    ]
    return nodes + [Target(name=r.name, spec=r.via, role="router") for r in inventory.routers]


def targets_from_api(kube: ClusterFacts) -> list[Target]:
    """Every Node the API lists, reached over ssh:// at its InternalIP (else its name)."""
    targets = []
    for node in kube.nodes:
        ip = node.internal_ip
        host = (f"[{ip}]" if ":" in ip else ip) if ip else node.name
        labels = node.labels
        control_plane = any(
            f"node-role.kubernetes.io/{role}" in labels for role in ("control-plane", "master")
        )
        etcd = True if "node-role.kubernetes.io/etcd" in labels else None
        targets.append(
            Target(
                name=node.name,
                spec=f"ssh://{host}",
                address=ip,
                role="control-plane" if control_plane else "worker",
                etcd=etcd,
            )
        )
    return targets


def cluster_from_api(kube: ClusterFacts) -> ClusterConfig:
    """What the API tells of the cluster: flannel's network from kube-flannel-cfg, if any."""
    net_conf = kube.flannel_net_conf() or {}
    network = net_conf.get("Network")
    backend = (net_conf.get("Backend") or {}).get("Type")
    try:
        return ClusterConfig(
            pod_cidr=network if isinstance(network, str) else None,
            cni="flannel" if net_conf else "auto",
            flannel_backend=backend.lower() if isinstance(backend, str) else None,
        )
    except ValueError:  # a hand-edited ConfigMap with a bad Network: learn nothing from it
        return ClusterConfig()


def collectors_of(target: Target | None, rules: Sequence[type[Rule]]) -> list[type[Collector]]:
    return (
        list(ROUTER_COLLECTORS)
        if target is not None and target.is_router
        else collectors_for(rules)
    )


def collect(
    targets: Sequence[Target],
    rules: Sequence[type[Rule]],
    on_done: Callable[[NodeCollection], None] | None = None,
) -> list[NodeCollection]:
    """Collect every target in parallel; unreachable nodes come back as collected=False."""

    def one(target: Target) -> NodeCollection:
        try:
            transport = transport_for(target.spec)
        except Exception as exc:  # a bad spec is this node's result, not a crash
            result = NodeCollection(
                name=target.name, spec=target.spec, collected=False, error=str(exc)
            )
        else:
            result = collect_node(target.name, transport, collectors_of(target, rules))
        if on_done:
            on_done(result)
        return result

    if len(targets) == 1:
        return [one(targets[0])]
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(targets))) as pool:
        return list(pool.map(one, targets))


@dataclass
class Analysis:
    """A report and the node contexts it was judged from (remediation plans from both)."""

    report: Report
    context: ClusterContext


def analyse(
    collections: Sequence[NodeCollection],
    targets: Sequence[Target],
    cluster: ClusterConfig,
    rules: Sequence[type[Rule]],
    kube: ClusterFacts | None = None,
) -> Report:
    """Pure analysis of collected raw output (and what the API said): live and on snapshots."""
    return analyse_full(collections, targets, cluster, rules, kube).report


def analyse_full(
    collections: Sequence[NodeCollection],
    targets: Sequence[Target],
    cluster: ClusterConfig,
    rules: Sequence[type[Rule]],
    kube: ClusterFacts | None = None,
) -> Analysis:
    """`analyse`, keeping the facts each node was judged on (for `fix`: steps read them)."""
    with _cyclic_gc_paused(freeze=len(collections) >= FREEZE_FROM_NODES):
        return _analyse_full(collections, targets, cluster, rules, kube)


#: from this many nodes on, what the analysis built is frozen out of the cyclic collector
FREEZE_FROM_NODES = 100


@contextmanager
def _cyclic_gc_paused(freeze: bool) -> Iterator[None]:
    """Parsing a 2,000-node snapshot allocates millions of small objects and no garbage
    cycles to speak of: the cyclic collector would walk the growing heap over and over (a
    third of the analysis time), and, re-enabled, walk all of it once more (seconds).
    Reference counting still frees everything. For big analyses the heap is frozen
    (`gc.freeze`: never scanned again, still freed when unreferenced) instead of handed
    back to the collector; small ones, the usual case, leave the process as it was."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if freeze:
                gc.freeze()
            gc.enable()


def _analyse_full(
    collections: Sequence[NodeCollection],
    targets: Sequence[Target],
    cluster: ClusterConfig,
    rules: Sequence[type[Rule]],
    kube: ClusterFacts | None,
) -> Analysis:
    by_name = {t.name: t for t in targets}
    api_nodes = {n.name: n for n in reversed(kube.nodes)} if kube is not None else {}
    contexts: list[NodeContext] = []
    routers: list[NodeContext] = []
    statuses: list[NodeStatus] = []
    judged: dict[ResultsKey, Fact] = {}
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
        target = by_name.get(collection.name)
        facts = judge_facts(collection, collectors_of(target, rules), judged)
        status.facts_unavailable = [f.describe() for f in facts.values() if not f.ok]
        if target is not None and target.is_router:
            routers.append(NodeContext(collection.name, facts, cluster, role="router"))
            continue
        kube_node = api_nodes.get(collection.name)
        address = target.address if target else None
        contexts.append(
            NodeContext(
                name=collection.name,
                facts=facts,
                cluster=cluster,
                address=address or (kube_node.internal_ip if kube_node else None),
                kube=kube_node,
                api=kube if kube is not None and kube.reachable else None,
                role=target.role if target else "worker",
                etcd=target.etcd if target else None,
            )
        )
    context = ClusterContext(contexts, cluster, kube, routers)
    run = run_node_rules(contexts, rules, context)
    for status in statuses:
        status.rules_skipped = run.skipped.get(status.name, [])
    report = Report(
        cluster=ClusterSummary.of(cluster),
        nodes=statuses,
        findings=link_causes(run.findings, rules),
    )
    return Analysis(report=report, context=context)


def diagnose(
    targets: Sequence[Target],
    cluster: ClusterConfig,
    rules: Sequence[type[Rule]] | None = None,
    on_done: Callable[[NodeCollection], None] | None = None,
    api: Callable[[], ClusterFacts] | None = None,
    probes: PodProbeOptions | None = None,
) -> Report:
    """Collect the nodes and, at the same time, the API (`api`, when given); then, with
    `probes`, probe from a pod on every node (cnidoctor.probes.pod); then judge."""
    rules = list(rules) if rules is not None else all_rules()
    collections, kube = collect_all(targets, rules, on_done, api)
    if probes is not None:
        from cnidoctor.probes.pod import run_pod_probes

        subnets = {
            n.name: n.pod_cidrs[0] for n in (kube.nodes if kube is not None else []) if n.pod_cidrs
        }
        run_pod_probes(targets, cluster, collections, probes, subnets)
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
