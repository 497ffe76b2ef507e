"""MTU on one node: an overlay device (or flannel's lease) larger than its underlay allows.

VXLAN adds 50 bytes over IPv4 (outer IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14), 70
over IPv6. A full-size overlay packet that no longer fits the underlay is dropped (or
fragmented, then dropped by whatever blocks fragments): small requests work while TLS
handshakes and large responses hang.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Iterator

from cnidoctor.analysis.segments import HostAddress, segments, summarize_names
from cnidoctor.collectors.flannel import FlannelSubnetEnvCollector
from cnidoctor.collectors.network import LinksCollector, RoutesCollector
from cnidoctor.facts.cni import FlannelSubnetEnv
from cnidoctor.facts.network import Link, Links, Routes
from cnidoctor.models import Severity
from cnidoctor.rules.base import ClusterContext, ClusterRule, Hit, NodeContext, Rule
from cnidoctor.rules.crossnode import cluster_addresses

VXLAN_OVERHEAD_V4 = 50
VXLAN_OVERHEAD_V6 = 70


def vxlan_underlay(links: Links, vxlan: Link) -> Link | None:
    """The device VXLAN packets leave through: the pinned `dev`, else the holder of `local`."""
    info = vxlan.vxlan
    if info is None:
        return None
    if info.link:
        return links.by_name(info.link)
    if not info.local:
        return None  # external/collect_metadata devices (cilium_vxlan): no fixed underlay
    return next(
        (
            link
            for link in links.links
            if link.ifname != vxlan.ifname and any(a.local == info.local for a in link.addresses)
        ),
        None,
    )


def vxlan_overhead(vxlan: Link) -> int:
    local = vxlan.vxlan.local if vxlan.vxlan else None
    try:
        v6 = local is not None and ipaddress.ip_address(local).version == 6
    except ValueError:
        v6 = False
    return VXLAN_OVERHEAD_V6 if v6 else VXLAN_OVERHEAD_V4


class MtuMismatchAcrossSegment(ClusterRule):
    """mtu.mismatch across nodes: MtuMismatch's cross-node part (`MtuMismatch.cross_node`).

    Nodes are grouped by segment (analysis.segments: one sort); within a segment the MTU
    of the NIC holding each node's address is compared. The MTU most nodes use is taken
    as intended (on a tie, the smaller: it is the one every path carries).
    """

    id = "mtu.mismatch"
    severity = Severity.WARNING
    title = "nodes on one segment use different MTUs"
    explanation = (
        "flannel derives each node's overlay MTU from its own underlay. A node with a larger "
        "MTU than its peers (jumbo frames on one host) sends packets the others or the switch "
        "cannot carry, and drops nothing itself: pings and small requests work, TLS handshakes "
        "and large responses between those nodes hang."
    )
    needs = (LinksCollector,)
    causes = ("api.tls-handshake-timeout",)
    fix = ("give every node on the segment the same MTU, then restart flannel on them",)

    def check_cluster(self, ctx: ClusterContext) -> Iterator[Hit]:
        flannel_mtu = {
            node.name: link.mtu
            for node in ctx.nodes
            for links in [node.fact_or_none(LinksCollector)]
            if links is not None
            for link in [links.by_name("flannel.1")]
            if link is not None and link.mtu
        }
        for segment in segments(cluster_addresses(ctx)):
            by_mtu: dict[int, dict[str, HostAddress]] = {}
            for member in segment.members:
                if member.link.mtu:
                    by_mtu.setdefault(member.link.mtu, {}).setdefault(member.host, member)
            if len(by_mtu) < 2:
                continue
            ranked = sorted(by_mtu.items(), key=lambda kv: (-len(kv[1]), kv[0]))
            expected, majority = ranked[0]
            odd = ranked[1:]
            evidence = [
                f"{_who(group)} mtu {mtu} vs {_who(majority)} mtu {expected} on {segment.network}"
                for mtu, group in odd
            ]
            for mtu, group in odd:
                overlay = sorted({flannel_mtu[h] for h in group if h in flannel_mtu})
                if overlay and mtu > expected:
                    evidence.append(
                        f"flannel.1 on {summarize_names(list(group))}: mtu "
                        f"{'/'.join(map(str, overlay))}: their pods send packets up to that "
                        f"size, the {expected}-byte nodes drop them"
                    )
            names = [h for _, group in odd for h in group]
            yield Hit(
                evidence=evidence,
                fix=_segment_fix(odd, expected),
                title=(
                    f"{summarize_names(names)} "
                    + ("use" if len(names) > 1 else "uses")
                    + f" MTU {'/'.join(str(m) for m, _ in odd)} where the other nodes on "
                    f"{segment.network} use {expected}"
                ),
                extra_nodes=names,
            )


def _who(group: dict[str, HostAddress]) -> str:
    devices = sorted({m.link.ifname for m in group.values()})
    return f"{summarize_names(list(group))} {'/'.join(devices)}"


def _segment_fix(odd: list[tuple[int, dict[str, HostAddress]]], expected: int) -> list[str]:
    fix = []
    for mtu, group in odd:
        for member in list(group.values())[:5]:
            dev = shlex.quote(member.link.ifname)
            if mtu > expected:
                fix.append(f"on {member.host}: ip link set dev {dev} mtu {expected}")
            else:
                fix.append(
                    f"on {member.host}: ip link set dev {dev} mtu {expected}, if every switch "
                    f"port carries it; else lower the other nodes to {mtu}"
                )
    fix += [
        "make it permanent in each node's OS network configuration",
        "restart flannel on the changed nodes so flannel.1 and FLANNEL_MTU follow "
        "(k3s: systemctl restart k3s or k3s-agent), then recreate their pods",
    ]
    return fix


class MtuMismatch(Rule):
    id = "mtu.mismatch"
    severity = Severity.WARNING
    title = "overlay MTU plus VXLAN overhead exceeds the underlay MTU"
    explanation = (
        "VXLAN wraps every pod packet in 50 more bytes, so the overlay MTU must be the "
        "underlay's minus 50. When it is larger (the underlay MTU was lowered, or the CNI "
        "picked it from another NIC), full-size packets are dropped: pings and small requests "
        "work while TLS handshakes and large responses hang. Across nodes, the same id names "
        "nodes of one segment whose underlay MTUs differ."
    )
    needs = (LinksCollector, RoutesCollector, FlannelSubnetEnvCollector)
    fix = ("set the overlay MTU to the underlay MTU minus 50 (or raise the underlay MTU)",)
    causes = ("api.tls-handshake-timeout",)
    cross_node = MtuMismatchAcrossSegment

    def check(self, node: NodeContext) -> Iterator[Hit]:
        links: Links = node.fact(LinksCollector)
        env: FlannelSubnetEnv | None = node.fact_or_none(FlannelSubnetEnvCollector)
        flannel_seen = False
        for link in links.links:
            if link.kind != "vxlan" or link.mtu is None:
                continue
            underlay = vxlan_underlay(links, link)
            if underlay is None or underlay.mtu is None:
                continue
            overhead = vxlan_overhead(link)
            limit = underlay.mtu - overhead
            is_flannel = link.ifname.startswith("flannel")
            env_line = self._env_line(env, limit, underlay) if is_flannel else None
            flannel_seen = flannel_seen or is_flannel
            if link.mtu <= limit and env_line is None:
                continue
            evidence = []
            if link.mtu > limit:
                evidence.append(
                    f"{link.ifname} mtu {link.mtu} + {overhead} bytes VXLAN overhead = "
                    f"{link.mtu + overhead} > {underlay.ifname} mtu {underlay.mtu}"
                )
            else:
                evidence.append(
                    f"{link.ifname} mtu {link.mtu} fits {underlay.ifname} mtu {underlay.mtu}"
                )
            if env_line:
                evidence.append(env_line)
            if link.mtu > limit:
                fix = _fix(link, underlay, limit, is_flannel, node)
            else:
                fix = _env_fix(limit, node)
            yield Hit(evidence=evidence, fix=fix)
        if not flannel_seen and env is not None and env.mtu is not None:
            underlay = self._default_device(node, links)
            if underlay is not None and underlay.mtu is not None:
                limit = underlay.mtu - VXLAN_OVERHEAD_V4
                line = self._env_line(env, limit, underlay)
                if line is not None:
                    yield Hit(
                        evidence=[
                            line,
                            "flannel.1 does not exist: compared with the device "
                            f"of the default route, {underlay.ifname}",
                        ],
                        fix=_env_fix(limit, node),
                    )

    @staticmethod
    def _env_line(env: FlannelSubnetEnv | None, limit: int, underlay: Link) -> str | None:
        if env is None or env.mtu is None or env.mtu <= limit:
            return None
        return (
            f"/run/flannel/subnet.env FLANNEL_MTU={env.mtu} > {underlay.ifname} mtu "
            f"{underlay.mtu} - {(underlay.mtu or 0) - limit} = {limit}: pods get interfaces "
            "larger than the overlay carries"
        )

    @staticmethod
    def _default_device(node: NodeContext, links: Links) -> Link | None:
        routes: Routes | None = node.fact_or_none(RoutesCollector)
        if routes is None:
            return None
        defaults = sorted(
            (r for r in routes.main_table("inet") if r.is_default and r.devices),
            key=lambda r: r.metric,
        )
        return links.by_name(defaults[0].devices[0]) if defaults else None


def _restart_flannel(node: NodeContext) -> str:
    service = "k3s" if node.role == "control-plane" else "k3s-agent"
    return (
        f"restart flannel so it derives the MTU from the underlay again: systemctl restart "
        f"{service} (k3s), or delete this node's kube-flannel pod"
    )


def _fix(link: Link, underlay: Link, limit: int, is_flannel: bool, node: NodeContext) -> list[str]:
    dev = shlex.quote(link.ifname)
    fix = [f"ip link set dev {dev} mtu {limit}"]
    if is_flannel:
        fix += [
            _restart_flannel(node),
            "then recreate the pods on this node so their interfaces take the new MTU",
        ]
    else:
        fix.append(f"set the CNI's overlay MTU to {limit} so it keeps it")
    if link.mtu is not None and underlay.mtu is not None:
        wanted = link.mtu + underlay.mtu - limit
        fix.append(
            f"or, if {underlay.ifname}'s MTU was lowered by mistake, restore it: "
            f"ip link set dev {shlex.quote(underlay.ifname)} mtu {wanted}"
        )
    return fix


def _env_fix(limit: int, node: NodeContext) -> list[str]:
    return [
        _restart_flannel(node) + f" (FLANNEL_MTU should become {limit})",
        "then recreate the pods on this node so their interfaces take the new MTU",
    ]


RULES: list[type[Rule]] = [MtuMismatch]
