"""iface.wrong-interface-selected: flannel bound to an interface that misses the peers."""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Iterator

from cnidoctor.analysis.segments import route_device
from cnidoctor.collectors.fdb import FLANNEL_VXLAN_DEVICE
from cnidoctor.collectors.k3s import K3sConfigCollector
from cnidoctor.collectors.network import LinksCollector, RoutesCollector
from cnidoctor.facts.network import Link, Links, Routes
from cnidoctor.models import Severity
from cnidoctor.rules.base import ClusterContext, ClusterRule, Hit, NodeContext
from cnidoctor.rules.crossnode.common import canonical_ip


class WrongInterfaceSelected(ClusterRule):
    """iface.wrong-interface-selected: flannel bound to an interface that does not reach the
    other nodes.

    flannel.1's VXLAN `local` (or, without the node's facts, the public-ip annotation) is
    compared with the node's InternalIP. When they differ and sit on different interfaces,
    the routes to the other nodes decide: if most peers are reached through the
    InternalIP's interface rather than the bound one, flannel uses the wrong network.
    Deliberate bindings are left alone: k3s `flannel-external-ip`, or a public-ip that is
    the node's ExternalIP. Only the suspect nodes' routes are looked up for every peer,
    so the rule stays linear in the cluster's size.
    """

    id = "iface.wrong-interface-selected"
    severity = Severity.CRITICAL
    title = "the CNI is bound to an interface that does not reach the other nodes"
    explanation = (
        "flannel sends VXLAN from the address of the interface it picked and tells the peers "
        "to send to that address. When that is not the network the nodes share (a second NIC, "
        "WiFi, a management network), overlay traffic leaves on the wrong network: pod traffic "
        "between nodes fails or takes a detour while node-to-node traffic works."
    )
    needs = (LinksCollector, RoutesCollector, K3sConfigCollector)

    def check_cluster(self, ctx: ClusterContext) -> Iterator[Hit]:
        peers = [
            (node.name, ip)
            for node in ctx.nodes
            for ip in [canonical_ip(node.address)]
            if ip is not None
        ]
        for node in ctx.nodes:
            hit = self._check(node, peers)
            if hit is not None:
                yield hit

    def _check(self, node: NodeContext, peers: list[tuple[str, str]]) -> Hit | None:
        internal = canonical_ip(node.address)
        links: Links | None = node.fact_or_none(LinksCollector)
        if internal is None or links is None:
            return None
        k3s = node.fact_or_none(K3sConfigCollector)
        if k3s is not None and k3s.flannel_external_ip:
            return None
        flannel = links.by_name(FLANNEL_VXLAN_DEVICE)
        local = canonical_ip(flannel.vxlan.local if flannel and flannel.vxlan else None)
        public = canonical_ip(node.kube.flannel_public_ip) if node.kube is not None else None
        bound = local or public
        if bound is None or bound == internal:
            return None
        if node.kube is not None and bound in {
            canonical_ip(a.address) for a in node.kube.addresses if a.type == "ExternalIP"
        }:
            return None
        holder = {a.local: link for link in links.links for a in link.addresses}
        internal_dev = holder.get(internal)
        bound_dev = (flannel.vxlan.link if flannel and flannel.vxlan else None) or (
            holder[bound].ifname if bound in holder else None
        )
        if internal_dev is None or bound_dev == internal_dev.ifname:
            return None  # InternalIP gone: addr.node-ip-changed says so
        routes: Routes | None = node.fact_or_none(RoutesCollector)
        family = "inet6" if ":" in internal else "inet"
        table = routes.main_table(family) if routes is not None else []
        via: dict[str, list[tuple[str, str]]] = {}
        for name, ip in peers:
            if name == node.name:
                continue
            dev = route_device(table, ipaddress.ip_address(ip)) if table else None
            via.setdefault(dev or "?", []).append((name, ip))
        on_bound = len(via.get(bound_dev or "", []))
        on_internal = len(via.get(internal_dev.ifname, []))
        if on_bound >= on_internal and on_bound > 0:
            return None  # the bound interface reaches the peers at least as well
        evidence = [
            f"flannel.1 sends VXLAN from {bound}"
            + (f" ({bound_dev})" if bound_dev else "")
            + f"; the node's InternalIP is {internal} ({internal_dev.ifname})"
        ]
        if public and public != internal:
            evidence.append(f"API: flannel public-ip annotation {public}: peers send VXLAN there")
        total = sum(len(v) for v in via.values())
        if total:
            sample = via.get(internal_dev.ifname, [("", "")])[0]
            line = (
                f"routes to the other nodes: {on_internal} of {total} via "
                f"{internal_dev.ifname}, {on_bound} via {bound_dev or '?'}"
            )
            if sample[0]:
                line += f" (e.g. {sample[0]} {sample[1]} via {internal_dev.ifname})"
            evidence.append(line)
        critical = on_bound == 0 and on_internal > 0
        return Hit(
            evidence=evidence,
            fix=_iface_fix(node, internal_dev, internal),
            title=(
                f"flannel on {node.name} uses {bound_dev or bound}, the other nodes are "
                f"reached through {internal_dev.ifname}"
            ),
            severity=None if critical else Severity.WARNING,
            extra_nodes=[node.name],
        )


def _iface_fix(node: NodeContext, link: Link, internal: str) -> list[str]:
    iface = shlex.quote(link.ifname)
    service = "k3s" if node.role == "control-plane" else "k3s-agent"
    return [
        f"k3s: set `flannel-iface: {iface}` and `node-ip: {internal}` in "
        f"/etc/rancher/k3s/config.yaml, then: systemctl restart {service}",
        f"kube-flannel: add --iface={iface} (or --iface-can-reach=PEER_IP) to the "
        "kube-flannel container args and delete the node's kube-flannel pod",
        "check what the peers now use: kubectl get node "
        + shlex.quote(node.name)
        + " -o jsonpath='{.metadata.annotations.flannel\\.alpha\\.coreos\\.com/public-ip}'",
    ]
