"""flannel.vxlan-fdb-stale: flannel.1 fdb and neighbour entries that no longer match the peer."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import compress

from cnidoctor.analysis.segments import SHOWN, host_addresses, summarize_names
from cnidoctor.collectors.fdb import FLANNEL_VXLAN_DEVICE, FdbCollector
from cnidoctor.collectors.network import LinksCollector, NeighboursCollector
from cnidoctor.facts.fdb import Fdb, FdbEntry
from cnidoctor.facts.network import Links, Neighbour, Neighbours
from cnidoctor.models import Severity
from cnidoctor.rules.base import ClusterContext, ClusterRule, Hit
from cnidoctor.rules.crossnode.common import Judged, canonical_ip


@dataclass
class _Vtep:
    node: str
    mac: str
    local: str | None
    #: flannel.1's own address: the node's pod subnet's .0 (what peers' neighbours resolve)
    overlay_ip: str | None
    ips: set[str]


class VxlanFdbStale(ClusterRule):
    """flannel.vxlan-fdb-stale: flannel.1 entries that no longer point at the peer.

    flanneld programs, for each peer, a neighbour (the peer's flannel.1 address -> its
    VtepMAC) and an fdb entry (VtepMAC -> the peer's public IP), from the VtepMAC and
    public-ip the peer announced in its Node annotations. An entry is stale when:
    - its MAC is a peer's real flannel.1 MAC but its dst is not that peer's address;
    - its dst is a peer's address but its MAC is not that peer's flannel.1 MAC (the peer's
      MAC changed: MAC churn after a restart, systemd-networkd MACAddressPolicy);
    - its dst is no node's address at all (a node that left or changed IP) - only judged
      when the API listed the nodes, since an inventory may name only some of them;
    - a flannel.1 neighbour resolves a peer's overlay address to another MAC;
    - a peer's announced VtepMAC (backend-data annotation) is not its real flannel.1 MAC:
      every other node programs the wrong MAC from it.
    Peers whose facts were not collected are judged only on what the API says of them.
    """

    id = "flannel.vxlan-fdb-stale"
    severity = Severity.CRITICAL
    title = "flannel.1 entries point at an address or MAC that is no longer the peer's"
    explanation = (
        "flannel sends a pod packet for a peer to the peer's VTEP MAC at the peer's public IP, "
        "as its forwarding database and neighbour entries say. When those entries are stale "
        "(the peer's flannel.1 got a new MAC, or the peer changed address or left) the VXLAN "
        "packets go to nobody, or are dropped by the peer: all traffic to that node's pods is "
        "blackholed while the nodes themselves reach each other."
    )
    needs = (LinksCollector, NeighboursCollector, FdbCollector)
    fix = (
        "restart flannel on the peer and on the nodes with stale entries "
        "(k3s: systemctl restart k3s / k3s-agent; kube-flannel: delete the node's pod)",
    )

    def check_cluster(self, ctx: ClusterContext) -> Iterator[Hit]:
        vteps = _vteps(ctx)
        by_mac = {v.mac: v for v in vteps.values()}
        by_overlay = {v.overlay_ip: v for v in vteps.values() if v.overlay_ip}
        by_ip: dict[str, _Vtep] = {}
        for vtep in vteps.values():
            for ip in vtep.ips:
                by_ip.setdefault(ip, vtep)
        api_nodes = _api_nodes(ctx)
        known_ips = set(by_ip) | {ip for ips in api_nodes.values() for ip in ips}
        problems: dict[str, _Problem] = {}
        # the entries that may be reported, on some node: the others (a peer's MAC at its
        # address) are reported by nobody, whoever holds them, and are not looked at again
        current = {(mac, ip) for mac, vtep in by_mac.items() for ip in vtep.ips}

        def may_be_stale_fdb(entry: FdbEntry) -> bool:
            dst = canonical_ip(entry.dst)
            return not (entry.is_default_destination or dst is None or (entry.mac, dst) in current)

        def may_be_stale_neighbour(entry: Neighbour) -> bool:
            if entry.dev != FLANNEL_VXLAN_DEVICE or not entry.lladdr:
                return False
            peer = by_overlay.get(entry.dst)
            return peer is not None and entry.lladdr.lower() != peer.mac

        suspect_fdb = Judged(may_be_stale_fdb)
        suspect_neighbour = Judged(may_be_stale_neighbour)

        def report(victim: str, holder: str | None, line: str) -> None:
            problem = problems.setdefault(victim, _Problem())
            problem.lines.append(line)
            if holder is not None and holder not in problem.holders:
                problem.holders.append(holder)

        for node in ctx.nodes:
            fdb: Fdb | None = node.fact_or_none(FdbCollector)
            fdb_entries = fdb.entries if fdb is not None else []
            for entry in compress(fdb_entries, suspect_fdb.of(fdb_entries)):
                dst = canonical_ip(entry.dst)
                if entry.is_default_destination or dst is None:
                    continue
                mac_owner = by_mac.get(entry.mac)
                dst_owner = by_ip.get(dst)
                if mac_owner is not None and mac_owner.node != node.name:
                    if dst not in mac_owner.ips:
                        report(
                            mac_owner.node,
                            node.name,
                            f"{node.name}: fdb {entry.mac} dst {dst}, but {mac_owner.node}'s "
                            f"flannel.1 ({entry.mac}) sends from {mac_owner.local}",
                        )
                elif dst_owner is not None and dst_owner.node != node.name:
                    if mac_owner is None:
                        report(
                            dst_owner.node,
                            node.name,
                            f"{node.name}: fdb sends {dst_owner.node}'s VXLAN ({dst}) to MAC "
                            f"{entry.mac}, but {dst_owner.node}'s flannel.1 has {dst_owner.mac}",
                        )
                elif dst_owner is None and api_nodes and dst not in known_ips:
                    report(
                        dst,
                        node.name,
                        f"{node.name}: fdb {entry.mac} dst {dst}: no node has {dst} "
                        f"({len(api_nodes)} nodes in the API)",
                    )
            neighbours: Neighbours | None = node.fact_or_none(NeighboursCollector)
            entries = neighbours.entries if neighbours is not None else []
            for entry in compress(entries, suspect_neighbour.of(entries)):
                if entry.dev != FLANNEL_VXLAN_DEVICE or not entry.lladdr:
                    continue
                peer = by_overlay.get(entry.dst)
                if peer is not None and peer.node != node.name and entry.lladdr.lower() != peer.mac:
                    report(
                        peer.node,
                        node.name,
                        f"{node.name}: neighbour {entry.dst} dev flannel.1 lladdr "
                        f"{entry.lladdr.lower()}, but {peer.node}'s flannel.1 has {peer.mac}",
                    )
        for node in ctx.nodes:
            kube = node.kube
            vtep = vteps.get(node.name)
            if kube is None or vtep is None:
                continue
            data = kube.flannel_backend_data or {}
            announced = str(data.get("VtepMAC") or "").lower()
            if announced and announced != vtep.mac:
                report(
                    node.name,
                    None,
                    f"API: node {node.name} announces VtepMAC {announced} "
                    f"(flannel.alpha.coreos.com/backend-data), its flannel.1 has {vtep.mac}",
                )
            public = canonical_ip(kube.flannel_public_ip)
            if public and vtep.local and public != vtep.local:
                report(
                    node.name,
                    None,
                    f"API: node {node.name} announces public-ip {public}, its flannel.1 "
                    f"sends from {vtep.local}",
                )
        for victim, problem in problems.items():
            yield self._hit(victim, problem, victim in vteps or victim in api_nodes)

    def _hit(self, victim: str, problem: _Problem, is_node: bool) -> Hit:
        evidence = problem.lines[: SHOWN * 2]
        if len(problem.lines) > len(evidence):
            evidence.append(f"(+{len(problem.lines) - len(evidence)} more stale entries)")
        holders = problem.holders
        fix = []
        if is_node:
            fix.append(
                f"restart flannel on {victim} so it announces its current VtepMAC and address "
                "(k3s: systemctl restart k3s or k3s-agent; kube-flannel: kubectl -n kube-flannel "
                f"delete pod -l app=flannel --field-selector spec.nodeName={shlex.quote(victim)})"
            )
        if holders:
            fix.append(
                ("then on " if is_node else "on ")
                + f"{summarize_names(holders)}: restart flannel so it reprograms its "
                "peers, or delete the stale entries now: bridge fdb del MAC dev flannel.1 dst "
                "ADDRESS; ip neigh del ADDRESS dev flannel.1"
            )
        fix.append(
            "if flannel.1's MAC changes at every restart, pin it: a systemd-networkd .link file "
            "with MACAddressPolicy=none matching flannel* (see netmgr.interferes)"
        )
        title = (
            f"flannel.1 entries for {victim} are stale: its pods are unreachable over VXLAN"
            if is_node
            else f"flannel.1 entries point at {victim}, which is no node's address"
        )
        nodes = ([victim] if is_node else []) + [h for h in holders if h != victim]
        return Hit(evidence=evidence, fix=fix, title=title, extra_nodes=nodes)


@dataclass
class _Problem:
    lines: list[str] = field(default_factory=list)
    holders: list[str] = field(default_factory=list)


def _vteps(ctx: ClusterContext) -> dict[str, _Vtep]:
    """Each collected node's real flannel.1: MAC, VXLAN local address, overlay address."""
    out: dict[str, _Vtep] = {}
    for node in ctx.nodes:
        links: Links | None = node.fact_or_none(LinksCollector)
        flannel = links.by_name(FLANNEL_VXLAN_DEVICE) if links is not None else None
        if links is None or flannel is None or not flannel.address:
            continue
        local = canonical_ip(flannel.vxlan.local if flannel.vxlan else None)
        overlay = next((a.local for a in flannel.addresses if a.family == "inet"), None)
        ips = {m.address.local for m in host_addresses(node.name, links)}
        ips |= {ip for ip in (local, canonical_ip(node.address)) if ip}
        out[node.name] = _Vtep(node.name, flannel.address.lower(), local, overlay, ips)
    return out


def _api_nodes(ctx: ClusterContext) -> dict[str, set[str]]:
    """Node name -> its addresses as the API lists them (empty without the API)."""
    kube = ctx.kube
    if kube is None or not kube.reachable:
        return {}
    out = {}
    for node in kube.nodes:
        ips = {canonical_ip(a.address) for a in node.addresses}
        ips.add(canonical_ip(node.flannel_public_ip))
        out[node.name] = {ip for ip in ips if ip}
    return out
