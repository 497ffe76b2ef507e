"""route.prefix-inconsistent: nodes on one segment that disagree on its prefix length."""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Iterator

from cnidoctor.analysis.segments import (
    SHOWN,
    HostAddress,
    Network,
    Segment,
    segments,
    summarize_addresses,
    summarize_names,
)
from cnidoctor.collectors.network import LinksCollector
from cnidoctor.models import Severity
from cnidoctor.rules.base import ClusterContext, ClusterRule, Hit
from cnidoctor.rules.crossnode.common import cluster_addresses


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


def _first_per_host(members: list[HostAddress]) -> dict[str, HostAddress]:
    out: dict[str, HostAddress] = {}
    for member in members:
        out.setdefault(member.host, member)
    return out
