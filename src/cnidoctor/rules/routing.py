"""Routing on one node: several default routes; one subnet connected twice."""

from __future__ import annotations

import shlex
from collections.abc import Iterator

from cnidoctor.collectors.network import RoutesCollector
from cnidoctor.facts.network import Route
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
    fix = ("keep one default route: remove or raise the metric of the others in the OS network config",)
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
                f"ip {'-6 ' if family == 'inet6' else ''}route del {_route_spec(r)}"
                for r in extra
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


RULES: list[type[Rule]] = [MultipleDefaultRoutes]
