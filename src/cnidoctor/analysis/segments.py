"""Which hosts share a network, from their own addresses, in one sort (no pairwise checks).

Cross-node rules compare what nodes on one segment believe: their prefix lengths
(route.prefix-inconsistent), their MTUs (mtu.mismatch). CIDR blocks are either nested or
disjoint, so sorting every host address's network by (family, first address, prefix
length) puts each widest network right before everything it contains: one sweep groups
them. A node whose /8 contains the others' /16 thus lands in one group with them, which
is exactly the disagreement to report. 2,000 nodes cost a sort of 2,000 entries.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from cnidoctor.facts.network import (
    Address,
    Link,
    Links,
    Route,
    is_cni_device,
    is_container_bridge,
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
#: how many names a summary shows before "+N more"
SHOWN = 5


@dataclass(frozen=True)
class HostAddress:
    """One address a host (node or router) holds on one of its links."""

    host: str
    link: Link
    address: Address
    network: Network

    @property
    def ip(self) -> IPAddr:
        return ipaddress.ip_address(self.address.local)

    @property
    def prefixlen(self) -> int:
        return self.address.prefixlen


@dataclass
class Segment:
    """Host addresses whose networks nest inside one widest network."""

    network: Network
    members: list[HostAddress]

    def hosts(self) -> list[str]:
        return list(dict.fromkeys(m.host for m in self.members))


def underlay_addresses(links: Links) -> list[tuple[Link, Address]]:
    """The addresses that place a host on a segment.

    Left out: loopback, CNI and container-engine devices (their own networks), link-local
    scopes, host addresses (/32, /128: kube-vip VIPs, flannel.1's /32) and secondary
    addresses (keepalived VIPs): none of them says how big the host thinks its LAN is.
    """
    out = []
    for link in links.links:
        name = link.ifname
        if name == "lo" or is_cni_device(name) or is_container_bridge(name):
            continue
        for address in link.addresses:
            if address.scope != "global" or address.secondary:
                continue
            if address.prefixlen >= (32 if address.family == "inet" else 128):
                continue
            out.append((link, address))
    return out


def host_addresses(host: str, links: Links) -> list[HostAddress]:
    """`underlay_addresses` of one host, with their networks."""
    out = []
    for link, address in underlay_addresses(links):
        network = _network(address.cidr)
        if network is not None:
            out.append(HostAddress(host, link, address, network))
    return out


@lru_cache(maxsize=1 << 14)
def _network(cidr: str) -> Network | None:
    """The network of an address/prefix (cached: nodes of one segment share it)."""
    try:
        return ipaddress.ip_interface(cidr).network
    except ValueError:
        return None


def segments(addresses: Iterable[HostAddress]) -> list[Segment]:
    """Group addresses whose networks nest (the widest first); O(n log n)."""
    ordered = sorted(
        addresses,
        key=lambda a: (a.network.version, int(a.network.network_address), a.network.prefixlen),
    )
    groups: list[Segment] = []
    end = -1
    for entry in ordered:
        net = entry.network
        current = groups[-1] if groups else None
        if (
            current is not None
            and current.network.version == net.version
            and int(net.network_address) <= end
        ):
            current.members.append(entry)
            continue
        groups.append(Segment(net, [entry]))
        end = int(net.broadcast_address)
    return groups


def route_device(routes: Sequence[Route], ip: IPAddr) -> str | None:
    """The device of the route the kernel would pick for `ip` among `routes` (the main
    table's unicast routes): longest prefix, then lowest metric."""
    best: tuple[int, int] | None = None
    device = None
    for route in routes:
        net = route.network
        devices = route.devices
        if net is None or net.version != ip.version or ip not in net or not devices:
            continue
        rank = (net.prefixlen, -route.metric)
        if best is None or rank > best:
            best, device = rank, devices[0]
    return device


def summarize_names(names: Sequence[str], limit: int = SHOWN) -> str:
    """'nl-k8s-02/03/04' for names that differ only in a short suffix; else a list."""
    names = list(names)
    if not names:
        return "none"
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    shown = names[:limit]
    if len(shown) == 1:
        return shown[0] + more
    prefix = _common_prefix(shown)
    while prefix and prefix[-1].isdigit():
        prefix = prefix[:-1]  # keep numbers whole: nl-k8s-02/03, not nl-k8s-0 2/3
    suffixes = [n[len(prefix) :] for n in shown]
    if prefix and all(suffixes) and all(len(s) <= 4 for s in suffixes):
        return shown[0] + "/" + "/".join(suffixes[1:]) + more
    return ", ".join(shown) + more


def summarize_addresses(members: Sequence[HostAddress]) -> str:
    """'10.10.0.x/16' for several IPv4 addresses with one prefix; the address for one."""
    cidrs = list(dict.fromkeys(m.address.cidr for m in members))
    if len(cidrs) == 1:
        return cidrs[0]
    prefixes = {m.prefixlen for m in members}
    if all(m.address.family == "inet" for m in members) and len(prefixes) == 1:
        octets = [m.address.local.split(".") for m in members]
        pattern = []
        for column in zip(*octets, strict=True):
            if len(set(column)) == 1 and "x" not in pattern:
                pattern.append(column[0])
            else:
                pattern.append("x")
        return ".".join(pattern) + f"/{prefixes.pop()}"
    return ", ".join(cidrs[:SHOWN]) + (
        f" (+{len(cidrs) - SHOWN} more)" if len(cidrs) > SHOWN else ""
    )


def _common_prefix(names: Sequence[str]) -> str:
    first, last = min(names), max(names)
    size = 0
    while size < min(len(first), len(last)) and first[size] == last[size]:
        size += 1
    return first[:size]
