"""Routing on one node: several default routes; one subnet connected twice."""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Iterator
from functools import lru_cache

from cnidoctor.collectors.network import RoutesCollector
from cnidoctor.facts.network import Route, is_cni_device
from cnidoctor.models import Severity
from cnidoctor.rules.base import Hit, NodeContext, Rule


class MultipleDefaultRoutes(Rule):
    id = "route.multiple-default"
    severity = Severity.WARNING
    title = "more than one default route in the main table"
    explanation = (
        "With two default routes (WiFi and Ethernet, or two uplinks) the kernel picks the "
        "egress by metric, and the CNI auto-detects its interface from the default route: "
        "overlay traffic, SNAT and the node's source address can end up on the wrong NIC, "
        "and flip when a link flaps."
    )
    needs = (RoutesCollector,)
    fix = (
        "keep one default route: remove or raise the metric of the others in the OS network config",
    )
    causes = ("iface.multi-nic-ambiguous", "egress.no-snat")

    def check(self, node: NodeContext) -> Iterator[Hit]:
        routes = node.fact(RoutesCollector)
        for family in ("inet", "inet6"):
            defaults = [r for r in routes.main_table(family) if r.is_default]
            if len(defaults) < 2:
                continue
            defaults.sort(key=lambda r: r.metric)
            keep, extra = defaults[0], defaults[1:]
            fix = [
                f"ip {'-6 ' if family == 'inet6' else ''}route del {_route_spec(r)}" for r in extra
            ]
            fix.append(
                f"make it permanent: keep only the default via {keep.dev} in the OS network "
                "configuration (netplan/NetworkManager/systemd-networkd/NixOS), or give the "
                "others a higher metric"
            )
            yield Hit(evidence=[f"ip route: {r.describe()}" for r in defaults], fix=fix)


def _route_spec(route: Route) -> str:
    """The `ip route del` arguments for a route, quoted: device names come from the node."""
    parts = ["default"]
    if route.gateway:
        parts += ["via", route.gateway]
    if route.dev:
        parts += ["dev", route.dev]
    if route.metric:
        parts += ["metric", str(route.metric)]
    return shlex.join(parts)


#: every interface has these; two devices sharing them is normal
_LINK_LOCAL = (ipaddress.ip_network("fe80::/10"), ipaddress.ip_network("169.254.0.0/16"))


class DuplicateConnectedRoute(Rule):
    id = "route.duplicate-connected-route"
    severity = Severity.WARNING
    title = "one subnet is connected on two interfaces with the same metric"
    explanation = (
        "When the same subnet is directly connected on two devices with equal metric, the "
        "kernel sends everything for that subnet out of the route it finds first, whether or "
        "not that link works. If it is an unplugged NIC or another segment, traffic to every "
        "node on the subnet (kubelet, etcd, VXLAN) takes the dead path."
    )
    needs = (RoutesCollector,)
    fix = (
        "keep the subnet on one interface: remove the address from the other one in the OS "
        "network configuration, or give the routes different metrics",
    )

    def check(self, node: NodeContext) -> Iterator[Hit]:
        routes = node.fact(RoutesCollector)
        for family in ("inet", "inet6"):
            groups: dict[tuple[str, int], list[Route]] = {}
            for route in routes.main_table(family):
                if not route.is_connected or is_cni_device(route.dev):
                    continue
                net = route.network
                if net is None or _is_link_local(net):
                    continue
                groups.setdefault((str(net), route.metric), []).append(route)
            for (subnet, _metric), group in groups.items():
                if len({r.dev for r in group}) >= 2:
                    yield _duplicate_hit(subnet, group, family)


def _duplicate_hit(subnet: str, group: list[Route], family: str) -> Hit:
    """Evidence: every route of the subnet; fix: drop the dead (or, if none is, the later) ones."""
    evidence = []
    for route in group:
        line = f"ip route: {route.describe()}"
        if route.prefsrc:
            line += f" (src {route.prefsrc})"
        if route.is_linkdown:
            line += ": no carrier, but the route stays installed"
        evidence.append(line)
    dead = [r for r in group if r.is_linkdown]
    first = group[0]
    evidence.append(
        f"the kernel sends traffic for {subnet} out of the first route listed ({first.dev}), "
        "whether or not its link works"
    )
    drop = dead if dead and len(dead) < len(group) else group[1:]
    keep = next(r for r in group if r not in drop)
    ip = "ip -6" if family == "inet6" else "ip"
    fix = []
    for route in drop:
        prefixlen = subnet.rsplit("/", 1)[-1]
        if route.prefsrc:
            cidr = f"{route.prefsrc}/{prefixlen}"
            fix.append(f"{ip} addr del {shlex.quote(cidr)} dev {shlex.quote(route.dev or '')}")
        else:
            fix.append(f"{ip} route del {shlex.join([subnet, 'dev', route.dev or ''])}")
    fix.append(
        f"make it permanent: configure {subnet} on {keep.dev} only (netplan/NetworkManager/"
        "systemd-networkd/NixOS), or give the other interface a higher route metric"
    )
    if dead and family == "inet":
        fix += [
            "or let the kernel skip routes of links without carrier: "
            + shlex.join(["sysctl", "-w", f"net.ipv4.conf.{dev}.ignore_routes_with_linkdown=1"])
            for dev in sorted({r.dev or "" for r in dead})
        ]
    # the first route being the dead one means the subnet is unreachable right now
    severity = Severity.CRITICAL if first.is_linkdown and len(dead) < len(group) else None
    return Hit(evidence=evidence, fix=fix, severity=severity)


@lru_cache(maxsize=1 << 12)
def _is_link_local(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """Cached: nodes share their connected networks, and subnet_of() is slow."""
    return any(
        net.version == ll.version and net.subnet_of(ll)  # type: ignore[arg-type]
        for ll in _LINK_LOCAL
    )


RULES: list[type[Rule]] = [MultipleDefaultRoutes, DuplicateConnectedRoute]
