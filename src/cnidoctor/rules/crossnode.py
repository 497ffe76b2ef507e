"""What only shows when nodes are compared: incident 002 was invisible from any single node.

One node had 10.10.0.2/8 while the others had /16; the router's neighbour cache held one
MAC for every node. Each rule here reads every collected node (and the inventory's
routers) once and groups or hashes, never compares all pairs: segments are found by one
sort (analysis.segments), duplicate MACs by one dict keyed by MAC, stale VXLAN entries by
dicts of every node's VTEP MAC and address. 2,000 nodes stay a linear pass.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import compress, repeat
from typing import Any, Generic, TypeVar

from cnidoctor.analysis.segments import (
    SHOWN,
    HostAddress,
    Network,
    Segment,
    host_addresses,
    route_device,
    segments,
    summarize_addresses,
    summarize_names,
)
from cnidoctor.collectors.fdb import FLANNEL_VXLAN_DEVICE, FdbCollector
from cnidoctor.collectors.k3s import K3sConfigCollector
from cnidoctor.collectors.network import LinksCollector, NeighboursCollector, RoutesCollector
from cnidoctor.facts.fdb import Fdb, FdbEntry
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

#: neighbour states that hold no usable MAC
_UNRESOLVED = frozenset({"FAILED", "INCOMPLETE", "NOARP"})
#: VRRP virtual MACs (keepalived use_vmac): they move between hosts by design
_VRRP_PREFIXES = ("00:00:5e:00:01:", "00:00:5e:00:02:")

E = TypeVar("E")
V = TypeVar("V")


@lru_cache(maxsize=1 << 16)
def _canonical(ip: str | None) -> str | None:
    """One spelling per address (IPv6 compressed), or None for what is not an address.
    Cached: every node's tables name the same peers."""
    if not ip:
        return None
    try:
        return ipaddress.ip_address(ip).compressed
    except ValueError:
        return None


def cluster_addresses(ctx: ClusterContext) -> list[HostAddress]:
    """Every collected node's segment addresses (routers are not nodes: they do not vote)."""
    out: list[HostAddress] = []
    for node in ctx.nodes:
        links: Links | None = node.fact_or_none(LinksCollector)
        if links is not None:
            out += host_addresses(node.name, links)
    return out


def _first_per_host(members: list[HostAddress]) -> dict[str, HostAddress]:
    out: dict[str, HostAddress] = {}
    for member in members:
        out.setdefault(member.host, member)
    return out


# --------------------------------------------------------------------------- prefix


class PrefixInconsistent(ClusterRule):
    """route.prefix-inconsistent: nodes on one segment with different prefix lengths.

    Nodes whose networks nest (10.10.0.2/8 contains 10.10.0.4/16) are one segment; the
    prefix most nodes use is taken as intended (on a tie, the longer one: the wider prefix
    is the one that swallows other networks), the others are named. Critical when the
    disagreement makes routing asymmetric between nodes (one sends directly, the other
    answers through its gateway) or the wider prefix covers the pod or service CIDR, as in
    incident 002; a warning when every node still sees every other as on-link.
    """

    id = "route.prefix-inconsistent"
    severity = Severity.CRITICAL
    title = "nodes on one segment use different prefix lengths"
    explanation = (
        "Nodes that share a segment but disagree on its size disagree on what is on-link: "
        "one ARPs directly for addresses the others send to their gateway. Replies then take "
        "another path than requests (asymmetric routing), the router answers with ICMP "
        "redirects, packets loop until their TTL expires, and etcd and the overlay time out."
    )
    needs = (LinksCollector,)
    causes = ("route.loop", "etcd.peer-unreachable", "neigh.duplicate-mac")
    fix = ("give every node on the segment the same prefix length, in the OS network config",)

    def check_cluster(self, ctx: ClusterContext) -> Iterator[Hit]:
        cluster_nets = _cluster_networks(ctx)
        for segment in segments(cluster_addresses(ctx)):
            by_prefix: dict[int, dict[str, HostAddress]] = {}
            for member in segment.members:
                by_prefix.setdefault(member.prefixlen, {}).setdefault(member.host, member)
            if len(by_prefix) < 2:
                continue
            ranked = sorted(by_prefix.items(), key=lambda kv: (-len(kv[1]), -kv[0]))
            expected_len, expected = ranked[0]
            yield self._hit(segment, expected_len, expected, ranked[1:], cluster_nets)

    def _hit(
        self,
        segment: Segment,
        expected_len: int,
        expected: dict[str, HostAddress],
        odd_groups: list[tuple[int, dict[str, HostAddress]]],
        cluster_nets: list[Network],
    ) -> Hit:
        odd = [m for _, group in odd_groups for m in group.values() if m.host not in expected]
        if not odd:  # a node with both prefixes: it is the odd one
            odd = [m for _, group in odd_groups for m in group.values()]
        majority = [m for m in expected.values() if m.host not in {o.host for o in odd}]
        evidence = [
            f"{summarize_names([m.host for m in group.values()])} "
            f"{summarize_addresses(list(group.values()))} vs "
            f"{summarize_names([m.host for m in majority])} {summarize_addresses(majority)}"
            for _, group in odd_groups
        ]
        if len(odd_groups) == 1 and len(odd_groups[0][1]) == len(expected):
            evidence.append(
                f"as many nodes use /{odd_groups[0][0]} as /{expected_len}: /{expected_len} is "
                "taken as intended (the wider prefix is the one that swallows other networks)"
            )
        critical = False
        asymmetric = _asymmetric_pair(odd, majority)
        if asymmetric is not None:
            a, b = asymmetric
            evidence.append(
                f"{b.host} sends to {a.host} ({a.address.local}) directly on {b.link.ifname}, "
                f"while {a.host} ({a.address.cidr}) sends its replies through its gateway: "
                "asymmetric routing"
            )
            critical = True
        for member in _first_per_host(odd).values():
            for net in cluster_nets:
                if net.version == member.network.version and member.network.overlaps(net):  # type: ignore[arg-type]
                    evidence.append(
                        f"{member.host}'s {member.network} also covers the cluster's {net}"
                    )
                    critical = True
        wide = min(odd + majority, key=lambda m: m.prefixlen)
        if not critical:
            evidence.append(
                f"every node is still inside the others' networks; hosts of {wide.network} "
                "outside the narrower prefix are reached on-link by some nodes and through the "
                "gateway by others"
            )
        names = summarize_names(list(dict.fromkeys(m.host for m in odd)))
        lengths = "/".join(f"/{length}" for length, _ in odd_groups)
        return Hit(
            evidence=evidence,
            fix=_prefix_fix(odd, expected_len),
            title=(
                f"{names} use{'s' if len({m.host for m in odd}) == 1 else ''} {lengths} where "
                f"the other nodes on {segment.network} use /{expected_len}"
            ),
            severity=None if critical else Severity.WARNING,
            extra_nodes=list(dict.fromkeys(m.host for m in odd)),
        )


def _asymmetric_pair(
    odd: list[HostAddress], majority: list[HostAddress]
) -> tuple[HostAddress, HostAddress] | None:
    """(a, b): b thinks a is on-link but a does not think b is (or the reverse), if any.

    Only the extremes need checking: the odd prefix against one address of each other
    prefix length, so this stays linear in the segment's size."""
    samples = list({m.prefixlen: m for m in majority}.values())
    for a in _first_per_host(odd).values():
        for b in samples:
            a_in_b, b_in_a = a.ip in b.network, b.ip in a.network
            if a_in_b and not b_in_a:
                return a, b
            if b_in_a and not a_in_b:
                return b, a
    return None


def _prefix_fix(odd: list[HostAddress], length: int) -> list[str]:
    fix = []
    for member in list(_first_per_host(odd).values())[:SHOWN]:
        dev = shlex.quote(member.link.ifname)
        new = shlex.quote(f"{member.address.local}/{length}")
        old = shlex.quote(member.address.cidr)
        fix.append(
            f"on {member.host}, from a console: ip addr add {new} dev {dev} && "
            f"ip addr del {old} dev {dev}"
        )
    fix += [
        "make it permanent in each node's OS network configuration "
        "(netplan/NetworkManager/systemd-networkd/NixOS), the same prefix everywhere",
        "reach other subnets through routes via the gateway (ip route add SUBNET via GATEWAY), "
        "not through a wider prefix",
        "then flush the stale neighbour entries on every node and the router: "
        "ip neigh flush dev DEVICE",
    ]
    return fix


def _cluster_networks(ctx: ClusterContext) -> list[Network]:
    cidrs = (ctx.cluster.pod_cidr, ctx.cluster.service_cidr)
    return [ipaddress.ip_network(cidr, strict=False) for cidr in cidrs if cidr]


# --------------------------------------------------------------------------- duplicate MAC


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
            owner = ip_owner.get(_canonical(entry.dst) or "")
            mac = _resolved_mac(entry, is_cni) if owner is not None else None
            if owner is None or mac is None:
                return None
            owned.setdefault(owner, set()).add((mac, owner))
            return mac, owner

        sightings = _Judged(sighting)
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
                owner = ip_owner.get(_canonical(dst) or "")
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


class _Judged(Generic[E, V]):
    """`judge` applied once per distinct entry object, for the length of one rule (the
    entries are the facts', alive meanwhile: their ids stay theirs). The parsers share
    identical entries between nodes and every node's tables list the same peers, so a
    2,000-node cluster's half a million neighbour rows are a few thousand distinct
    entries: those are judged, each table's verdicts are looked up by map operations."""

    def __init__(self, judge: Callable[[E], V]) -> None:
        self._judge = judge
        self._verdicts: dict[int, V] = {}

    def of(self, entries: Sequence[E]) -> list[V]:
        """The verdict of each entry, in order."""
        verdicts = self._verdicts
        ids = list(map(id, entries))
        out: list[Any] = list(map(verdicts.get, ids, repeat(_UNJUDGED)))
        if _UNJUDGED in out:  # entries met for the first time
            for i, key in enumerate(ids):
                if out[i] is _UNJUDGED:
                    if key not in verdicts:
                        verdicts[key] = self._judge(entries[i])
                    out[i] = verdicts[key]
        return out


_UNJUDGED = object()


def _node_ip_owners(ctx: ClusterContext) -> dict[str, str]:
    """Node identity address -> node: InternalIPs and primary segment addresses. An address
    two nodes claim (a duplicate IP, a different problem) is left out."""
    owners: dict[str, str] = {}
    clashes: set[str] = set()

    def claim(ip: str | None, host: str) -> None:
        key = _canonical(ip)
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


# --------------------------------------------------------------------------- flannel fdb


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
            dst = _canonical(entry.dst)
            return not (entry.is_default_destination or dst is None or (entry.mac, dst) in current)

        def may_be_stale_neighbour(entry: Neighbour) -> bool:
            if entry.dev != FLANNEL_VXLAN_DEVICE or not entry.lladdr:
                return False
            peer = by_overlay.get(entry.dst)
            return peer is not None and entry.lladdr.lower() != peer.mac

        suspect_fdb = _Judged(may_be_stale_fdb)
        suspect_neighbour = _Judged(may_be_stale_neighbour)

        def report(victim: str, holder: str | None, line: str) -> None:
            problem = problems.setdefault(victim, _Problem())
            problem.lines.append(line)
            if holder is not None and holder not in problem.holders:
                problem.holders.append(holder)

        for node in ctx.nodes:
            fdb: Fdb | None = node.fact_or_none(FdbCollector)
            fdb_entries = fdb.entries if fdb is not None else []
            for entry in compress(fdb_entries, suspect_fdb.of(fdb_entries)):
                dst = _canonical(entry.dst)
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
            public = _canonical(kube.flannel_public_ip)
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
        local = _canonical(flannel.vxlan.local if flannel.vxlan else None)
        overlay = next((a.local for a in flannel.addresses if a.family == "inet"), None)
        ips = {m.address.local for m in host_addresses(node.name, links)}
        ips |= {ip for ip in (local, _canonical(node.address)) if ip}
        out[node.name] = _Vtep(node.name, flannel.address.lower(), local, overlay, ips)
    return out


def _api_nodes(ctx: ClusterContext) -> dict[str, set[str]]:
    """Node name -> its addresses as the API lists them (empty without the API)."""
    kube = ctx.kube
    if kube is None or not kube.reachable:
        return {}
    out = {}
    for node in kube.nodes:
        ips = {_canonical(a.address) for a in node.addresses}
        ips.add(_canonical(node.flannel_public_ip))
        out[node.name] = {ip for ip in ips if ip}
    return out


# --------------------------------------------------------------------------- interface


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
            for ip in [_canonical(node.address)]
            if ip is not None
        ]
        for node in ctx.nodes:
            hit = self._check(node, peers)
            if hit is not None:
                yield hit

    def _check(self, node: NodeContext, peers: list[tuple[str, str]]) -> Hit | None:
        internal = _canonical(node.address)
        links: Links | None = node.fact_or_none(LinksCollector)
        if internal is None or links is None:
            return None
        k3s = node.fact_or_none(K3sConfigCollector)
        if k3s is not None and k3s.flannel_external_ip:
            return None
        flannel = links.by_name(FLANNEL_VXLAN_DEVICE)
        local = _canonical(flannel.vxlan.local if flannel and flannel.vxlan else None)
        public = _canonical(node.kube.flannel_public_ip) if node.kube is not None else None
        bound = local or public
        if bound is None or bound == internal:
            return None
        if node.kube is not None and bound in {
            _canonical(a.address) for a in node.kube.addresses if a.type == "ExternalIP"
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


RULES: list[type[ClusterRule]] = [
    PrefixInconsistent,
    DuplicateMac,
    VxlanFdbStale,
    WrongInterfaceSelected,
]
