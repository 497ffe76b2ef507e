"""A rule = one catalog id: what it needs, how to judge it, and how to explain and fix it.

Rules read facts only (never run commands). `check` yields `Hit`s; the engine turns
each hit into a contract `Finding` with the rule's id, severity, title and text.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar

from cnidoctor.collectors.base import Collector
from cnidoctor.facts.base import Fact
from cnidoctor.facts.cluster import ClusterFacts, KubeNode
from cnidoctor.models import ClusterConfig, Severity


class FactUnavailable(Exception):
    """A rule asked for a fact that was not collected; the engine records the rule as skipped."""

    def __init__(self, fact: Fact) -> None:
        super().__init__(fact.describe())
        self.fact = fact


@dataclass
class NodeContext:
    """Everything a node rule may look at: the node's facts and what is known of the cluster."""

    name: str
    facts: dict[str, Fact]
    cluster: ClusterConfig
    #: the node's InternalIP as the inventory or the API knows it
    address: str | None = None
    role: str = "worker"
    #: runs an etcd member (the inventory's `etcd`; control-plane nodes by default)
    etcd: bool | None = None
    #: the API's Node object for this node, when the API was read
    kube: KubeNode | None = None
    #: everything the API said (the CNI's ConfigMaps and DaemonSets), when it was read
    api: ClusterFacts | None = None

    def fact(self, collector: type[Collector]) -> Any:
        """The parsed value of a collected fact; raises FactUnavailable otherwise."""
        fact = self.facts.get(collector.name)
        if fact is None:
            raise FactUnavailable(Fact(name=collector.name, status="error", reason="not collected"))
        if not fact.ok:
            raise FactUnavailable(fact)
        return fact.value

    @property
    def is_etcd(self) -> bool:
        return self.etcd if self.etcd is not None else self.role == "control-plane"

    def fact_or_none(self, collector: type[Collector]) -> Any:
        fact = self.facts.get(collector.name)
        return fact.value if fact is not None and fact.ok else None

    def fact_envelope(self, collector: type[Collector]) -> Fact | None:
        return self.facts.get(collector.name)

    @property
    def cluster_networks(self) -> list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]]:
        """(label, network) for the cluster CIDRs that are known."""
        out = []
        for label, cidr in (
            ("pod CIDR", self.cluster.pod_cidr),
            ("service CIDR", self.cluster.service_cidr),
        ):
            if cidr:
                out.append((label, _cidr(cidr)))
        return out


@lru_cache(maxsize=256)
def _cidr(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Parsed once: every node's rules ask for the same cluster CIDRs."""
    return ipaddress.ip_network(cidr, strict=False)


@dataclass
class ClusterContext:
    """What a cluster rule may look at: every collected node and what the API said."""

    nodes: list[NodeContext]
    cluster: ClusterConfig
    #: what the API said, or None when no API was configured
    kube: ClusterFacts | None = None
    #: the inventory's routers (links, routes, neighbours only): their neighbour tables matter
    routers: list[NodeContext] = field(default_factory=list)

    def node(self, name: str) -> NodeContext | None:
        return next((n for n in self.nodes if n.name == name), None)


@dataclass
class Hit:
    """One occurrence of a failure mode: the evidence and, where it differs per case, the fix."""

    evidence: list[str]
    fix: list[str] | None = None
    #: a more specific title for this occurrence (the rule's title otherwise)
    title: str | None = None
    severity: Severity | None = None
    #: for node rules: more nodes than the checked one; for cluster rules: the nodes concerned
    extra_nodes: list[str] = field(default_factory=list)
    #: ids whose `causes` edge does not hold for this occurrence, so the engine does not link
    #: them (no SNAT on any NIC at all is not a matter of which NIC the CNI picked)
    not_caused_by: list[str] = field(default_factory=list)


class Rule:
    """Subclass per catalog id. Class attributes are the registry entry `cnidoctor rules` prints."""

    id: ClassVar[str]
    severity: ClassVar[Severity]
    title: ClassVar[str]
    explanation: ClassVar[str]
    #: the collectors whose facts this rule reads
    needs: ClassVar[tuple[type[Collector], ...]]
    #: the default fix, in order; a Hit may give a more specific one
    fix: ClassVar[tuple[str, ...]] = ()
    #: catalog ids this failure typically brings down next (the engine links them)
    causes: ClassVar[tuple[str, ...]] = ()

    #: "node": check() runs once per collected node; "cluster": check_cluster() runs once
    scope: ClassVar[str] = "node"
    #: a node rule's cross-node part: a ClusterRule reporting the same id (mtu.mismatch on
    #: one node and across a segment); it is not a registry entry of its own
    cross_node: ClassVar[type[Rule] | None] = None

    def check(self, node: NodeContext) -> Iterator[Hit]:
        raise NotImplementedError

    def check_cluster(self, cluster: ClusterContext) -> Iterator[Hit]:
        raise NotImplementedError


class ClusterRule(Rule):
    """A rule over the whole cluster (API objects, several nodes): its hits name their nodes."""

    scope = "cluster"
    needs = ()
