"""neigh.duplicate-mac: one MAC resolving the addresses of several nodes (or cloned NICs)."""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field

from cnidoctor.analysis.segments import SHOWN, Network, host_addresses, summarize_names
from cnidoctor.collectors.network import LinksCollector, NeighboursCollector, RoutesCollector
from cnidoctor.facts.network import (
    Link,
    Links,
    Neighbour,
    Neighbours,
    Routes,
    is_cni_device,
    is_container_bridge,
)
from cnidoctor.models import Severity
from cnidoctor.rules.base import ClusterContext, ClusterRule, Hit, NodeContext
from cnidoctor.rules.crossnode.common import Judged, canonical_ip

#: neighbour states that hold no usable MAC
_UNRESOLVED = frozenset({"FAILED", "INCOMPLETE", "NOARP"})
#: VRRP virtual MACs (keepalived use_vmac): they move between hosts by design
_VRRP_PREFIXES = ("00:00:5e:00:01:", "00:00:5e:00:02:")


@dataclass
class _Sighting:
    table: str
    dev: str
    ip: str
    owner: str
    state: str


@dataclass
class _MacOwner:
    host: str
    ifname: str
    router: bool
    #: a router's connected networks on its other interfaces (what it owns elsewhere)
    elsewhere: list[Network] = field(default_factory=list)


class DuplicateMac(ClusterRule):
    """neigh.duplicate-mac: one MAC resolves the addresses of several different nodes.

    Every node's and router's neighbour table is hashed by MAC, keeping entries whose
    address is a node's (its InternalIP or a primary segment address). A MAC is reported
    when it resolves addresses of two different hosts. What is not a duplicate:

    - a node's own several addresses (or ARP flux: one NIC answering for the host's other
      address): the addresses map to hosts, and both belong to the same host;
    - a VIP (keepalived, kube-vip) that moved: a VIP is a secondary or /32 address, never a
      node's identity, so a cache still pointing it at the old holder is not counted;
    - MetalLB/kube-vip ARP answers for service IPs: those are no node's address;
    - proxy-ARP by a router for a range it owns: when the MAC is an inventory router's and
      the addresses lie in networks that router has on another interface, or (routers not
      collected) when the MAC is the table host's default gateway's: the router answers
      for hosts behind it, by design. A router answering for nodes on the very segment it
      is asked from is reported: that traffic does go to the wrong host;
    - VRRP virtual MACs (00:00:5e:00:01:xx) move between hosts by design.

    Two nodes with the same MAC on their NICs (cloned VMs) are reported too: it is the same
    failure seen from the hosts' side.
    """

    id = "neigh.duplicate-mac"
    severity = Severity.CRITICAL
    title = "one MAC address answers for several nodes"
    explanation = (
        "A neighbour table that maps several nodes' addresses to one MAC sends the traffic of "
        "all of them to one host. With a /8 host prefix and VXLAN (incident 002) or cloned VMs "
        "the router or the nodes learn the wrong MAC: connections to every node but one fail "
        "or reach the wrong machine, until the caches are flushed and the cause is removed."
    )
    needs = (LinksCollector, NeighboursCollector, RoutesCollector)
    causes = ("kubelet.unreachable", "etcd.peer-unreachable", "route.loop")
    fix = ("flush the stale neighbour entries and remove what answers for the other nodes",)

    def check_cluster(self, ctx: ClusterContext) -> Iterator[Hit]:
        ip_owner = _node_ip_owners(ctx)
        node_names = {node.name for node in ctx.nodes}
        owners, clones = _mac_owners(ctx)
        for mac, hosts in clones.items():
            yield Hit(
                evidence=[f"{host} {ifname} has MAC {mac}" for host, ifname in hosts[: SHOWN * 2]],
                fix=[
                    "give every machine a unique MAC: regenerate it in the hypervisor "
                    "(cloned VM templates keep the MAC) or in the OS network configuration",
                    "then flush the neighbour caches of the nodes and the router: "
                    "ip neigh flush dev DEVICE",
                ],
                title=f"{summarize_names([h for h, _ in hosts])} have the same MAC {mac}",
                extra_nodes=[h for h, _ in hosts if h in node_names],
            )
        tables = [
            (table, neighbours)
            for table in [*ctx.nodes, *ctx.routers]
            for neighbours in [table.fact_or_none(NeighboursCollector)]
            if neighbours is not None
        ]
        # every table's sightings as (MAC, owner): a MAC is suspect once it resolves two
        # owners, or a node other than the one whose NIC has it. A table's entries for its
        # own host's addresses do not count: `owned` holds each owner's pairs.
        node_mac = {mac: o.host for mac, o in owners.items() if not o.router}
        is_cni: dict[str | None, bool] = {}
        owned: dict[str, set[tuple[str, str] | None]] = {}

        def sighting(entry: Neighbour) -> tuple[str, str] | None:
            owner = ip_owner.get(canonical_ip(entry.dst) or "")
            mac = _resolved_mac(entry, is_cni) if owner is not None else None
            if owner is None or mac is None:
                return None
            owned.setdefault(owner, set()).add((mac, owner))
            return mac, owner

        sightings = Judged(sighting)
        pairs: set[tuple[str, str] | None] = set()
        for table, neighbours in tables:
            pairs |= set(sightings.of(neighbours.entries)).difference(owned.get(table.name, ()))
        first: dict[str, str] = {}
        suspects: set[str] = set()
        for mac, owner in filter(None, pairs):
            if first.setdefault(mac, owner) != owner or node_mac.get(mac, owner) != owner:
                suspects.add(mac)
        suspects -= set(clones)
        suspects = {mac for mac in suspects if not mac.startswith(_VRRP_PREFIXES)}
        if not suspects:
            return
        # the details, for the suspects only
        sightings: dict[str, list[_Sighting]] = {}
        gateway_macs: dict[str, set[str]] = {}
        for table, neighbours in tables:
            gateways = _gateway_ips(table)
            for mac, dst, entry in _resolved(neighbours):
                if entry.router or dst in gateways:
                    gateway_macs.setdefault(table.name, set()).add(mac)
                owner = ip_owner.get(canonical_ip(dst) or "")
                if mac not in suspects or owner is None or owner == table.name:
                    continue
                state = ",".join(entry.state) or "?"
                sightings.setdefault(mac, []).append(
                    _Sighting(table.name, entry.dev or "?", dst, owner, state)
                )
        for mac, seen in sightings.items():
            hit = self._judge(mac, seen, owners.get(mac), gateway_macs)
            if hit is not None:
                yield hit

    def _judge(
        self,
        mac: str,
        seen: list[_Sighting],
        owner: _MacOwner | None,
        gateway_macs: dict[str, set[str]],
    ) -> Hit | None:
        victims = list(dict.fromkeys(s.owner for s in seen))
        if owner is not None and not owner.router:
            wrong = [s for s in seen if s.owner != owner.host]
            if not wrong:
                return None
            whose = f"{mac} is {owner.host}'s {owner.ifname}"
        elif owner is not None:  # an inventory router's MAC
            wrong = [
                s
                for s in seen
                if not any(ipaddress.ip_address(s.ip) in net for net in owner.elsewhere)
            ]
            if not wrong:
                return None  # proxy-ARP for hosts the router reaches on its other interfaces
            whose = (
                f"{mac} is router {owner.host}'s {owner.ifname}, and it answers for nodes on "
                "that same segment (not for a range it routes elsewhere)"
            )
        else:
            if len(victims) < 2:
                return None
            if all(mac in gateway_macs.get(s.table, ()) for s in seen):
                return None  # the tables' own gateway answering: proxy-ARP by the router
            wrong = seen
            whose = f"{mac} belongs to no collected node or router"
        by_table: dict[tuple[str, str], list[_Sighting]] = {}
        for s in sorted(wrong, key=lambda s: ipaddress.ip_address(s.ip)):
            by_table.setdefault((s.table, s.dev), []).append(s)
        evidence = []
        for (table, dev), rows in list(by_table.items())[:SHOWN]:
            states = ", ".join(sorted({r.state for r in rows}))
            ips = ", ".join(f"{r.ip} ({r.owner})" for r in rows[:SHOWN])
            more = f" (+{len(rows) - SHOWN} more)" if len(rows) > SHOWN else ""
            evidence.append(f"{table}'s neighbour table on {dev}: {ips}{more} -> {mac} ({states})")
        if len(by_table) > SHOWN:
            evidence.append(f"(+{len(by_table) - SHOWN} more neighbour tables say the same)")
        evidence.append(whose)
        first = [owner.host] if owner is not None and not owner.router else []
        nodes = list(dict.fromkeys([*first, *(s.owner for s in wrong), *(s.owner for s in seen)]))
        fix = [
            f"on {table}: "
            + " ; ".join(
                f"ip neigh del {shlex.quote(r.ip)} dev {shlex.quote(dev)}" for r in rows[:SHOWN]
            )
            for (table, dev), rows in list(by_table.items())[:SHOWN]
        ]
        fix += [
            "find who answers for those addresses: arping -c 2 -I DEVICE "
            f"{shlex.quote(wrong[0].ip)} from the router, then on the host with that MAC "
            "check proxy_arp (sysctl net.ipv4.conf.all.proxy_arp), a host prefix covering "
            "the others (route.prefix-inconsistent) and bridges or VXLAN devices holding "
            "their addresses",
            "if the caches refill with the same MAC, the cause is still there: fix it before "
            "flushing again (incident 002: /8 prefixes with flannel VXLAN)",
        ]
        return Hit(
            evidence=evidence,
            fix=fix,
            title=_duplicate_title(mac, owner, wrong, victims),
            extra_nodes=nodes,
        )


def _duplicate_title(
    mac: str, owner: _MacOwner | None, wrong: list[_Sighting], victims: list[str]
) -> str:
    others = summarize_names(sorted({s.owner for s in wrong}))
    if owner is not None:
        whose = f"router {owner.host}" if owner.router else owner.host
        return f"{mac} ({whose}'s {owner.ifname}) is the neighbour entry of {others} too"
    return f"{mac} is the neighbour entry of {len(victims)} nodes: {summarize_names(victims)}"


def _resolved(neighbours: Neighbours) -> Iterator[tuple[str, str, Neighbour]]:
    """(MAC, address, entry) of the entries that resolve an address to a MAC on a host
    interface (CNI devices' neighbours are pods and VTEPs)."""
    is_cni: dict[str | None, bool] = {}
    for entry in neighbours.entries:
        mac = _resolved_mac(entry, is_cni)
        if mac is not None:
            yield mac, entry.dst, entry


def _resolved_mac(entry: Neighbour, is_cni: dict[str | None, bool]) -> str | None:
    """The MAC `entry` resolves its address to on a host interface, lower-case; None when
    unresolved or on a CNI device. `is_cni` remembers the devices already judged."""
    mac = entry.lladdr
    if not mac or (entry.state and entry.state[0] in _UNRESOLVED):
        return None
    dev = entry.dev
    cni = is_cni.get(dev)
    if cni is None:
        cni = is_cni[dev] = is_cni_device(dev)
    if cni:
        return None
    mac = mac.lower()
    return None if mac == "00:00:00:00:00:00" else mac


def _node_ip_owners(ctx: ClusterContext) -> dict[str, str]:
    """Node identity address -> node: InternalIPs and primary segment addresses. An address
    two nodes claim (a duplicate IP, a different problem) is left out."""
    owners: dict[str, str] = {}
    clashes: set[str] = set()

    def claim(ip: str | None, host: str) -> None:
        key = canonical_ip(ip)
        if key is None:
            return
        if owners.setdefault(key, host) != host:
            clashes.add(key)

    for node in ctx.nodes:
        claim(node.address, node.name)
        links: Links | None = node.fact_or_none(LinksCollector)
        for member in host_addresses(node.name, links) if links is not None else []:
            claim(member.address.local, node.name)
    for key in clashes:
        owners.pop(key, None)
    return owners


def _mac_owners(
    ctx: ClusterContext,
) -> tuple[dict[str, _MacOwner], dict[str, list[tuple[str, str]]]]:
    """MAC -> the host whose NIC has it; and MACs found on NICs of several hosts (clones)."""
    owners: dict[str, _MacOwner] = {}
    holders: dict[str, list[tuple[str, str]]] = {}
    for host, router in [*((n, False) for n in ctx.nodes), *((r, True) for r in ctx.routers)]:
        links: Links | None = host.fact_or_none(LinksCollector)
        if links is None:
            continue
        for link in links.links:
            mac = (link.address or "").lower()
            if not _is_host_mac(link, mac):
                continue
            seen = holders.setdefault(mac, [])
            if all(h != host.name for h, _ in seen):
                seen.append((host.name, link.ifname))
            if mac not in owners:
                # a router's other networks are what it may proxy-ARP for (nodes': unused)
                elsewhere = _networks_elsewhere(links, link) if router else []
                owners[mac] = _MacOwner(host.name, link.ifname, router, elsewhere)
    clones = {mac: hosts for mac, hosts in holders.items() if len(hosts) > 1}
    return owners, clones


def _is_host_mac(link: Link, mac: str) -> bool:
    """A MAC that identifies the host on its LAN: a NIC or the bridge holding its address.

    Bridge ports are skipped (their bridge speaks for them), as are loopback, CNI and
    container devices, VXLAN devices (flannel.1 is judged by flannel.vxlan-fdb-stale)
    and VRRP virtual MACs."""
    if not mac or mac == "00:00:00:00:00:00" or mac.startswith(_VRRP_PREFIXES):
        return False
    name = link.ifname
    if name == "lo" or is_cni_device(name) or is_container_bridge(name):
        return False
    return link.kind != "vxlan" and link.master is None


def _networks_elsewhere(links: Links, link: Link) -> list[Network]:
    return [
        ipaddress.ip_interface(a.cidr).network
        for other in links.links
        if other.ifname not in (link.ifname, "lo")
        for a in other.addresses
        if a.scope == "global"
    ]


def _gateway_ips(host: NodeContext) -> set[str]:
    routes: Routes | None = host.fact_or_none(RoutesCollector)
    if routes is None:
        return set()
    return {
        gw
        for r in routes.routes
        if r.is_default
        for gw in [r.gateway, *(h.gateway for h in r.nexthops)]
        if gw
    }
