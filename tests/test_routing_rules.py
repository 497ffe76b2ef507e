"""route.multiple-default and route.duplicate-connected-route on real `ip -j route` captures."""

from __future__ import annotations

from tests.helpers import data, findings, node

from cnidoctor.collectors.network import RoutesCollector
from cnidoctor.models import Severity
from cnidoctor.rules.base import NodeContext
from cnidoctor.rules.routing import DuplicateConnectedRoute, MultipleDefaultRoutes


def routes_node(case: str, replace: tuple[str, str] | None = None) -> NodeContext:
    v4, v6 = data(f"ip_route/{case}.v4.json"), data(f"ip_route/{case}.v6.json")
    if replace is not None:
        v4, v6 = v4.replace(*replace), v6.replace(*replace)
    return node({RoutesCollector: [v4, v6]})


# --- route.multiple-default ------------------------------------------------------------------


def test_incident_000_wifi_and_ethernet_defaults() -> None:
    [finding] = findings(MultipleDefaultRoutes, routes_node("incident000-wifi-ethernet"))
    assert finding.id == "route.multiple-default"
    assert finding.severity is Severity.WARNING
    assert finding.evidence == [
        "ip route: default via 192.168.1.1 dev enp4s0 metric 100",
        "ip route: default via 192.168.1.1 dev wlp2s0 metric 600",
    ]
    assert finding.fix[0] == "ip route del default via 192.168.1.1 dev wlp2s0 metric 600"
    assert "enp4s0" in finding.fix[1]


def test_incident_003_two_uplinks() -> None:
    [finding] = findings(MultipleDefaultRoutes, routes_node("incident003-two-uplinks"))
    assert finding.evidence == [
        "ip route: default via 192.168.178.1 dev ens18 metric 100",
        "ip route: default via 10.50.10.1 dev ens19 metric 200",
    ]
    assert finding.fix[0] == "ip route del default via 10.50.10.1 dev ens19 metric 200"
    # the policy table's default via ens19 is not one of the main-table defaults
    assert not any("table" in line for line in finding.evidence)


def test_single_default_is_clean() -> None:
    assert findings(MultipleDefaultRoutes, routes_node("incident002-slash16")) == []
    # IPv6 default plus one IPv4 default: one per family, still clean
    assert findings(MultipleDefaultRoutes, routes_node("duplicate-connected")) == []


def test_two_defaults_in_a_policy_table_only_is_clean() -> None:
    ctx = routes_node("policy-table-defaults")
    table100 = [r for r in ctx.fact(RoutesCollector).routes if r.table == "100" and r.is_default]
    assert len(table100) == 2  # the capture really has them
    assert findings(MultipleDefaultRoutes, ctx) == []


def test_default_fix_quotes_node_derived_device_names() -> None:
    ctx = routes_node("incident000-wifi-ethernet", replace=("wlp2s0", "wl$(id)"))
    [finding] = findings(MultipleDefaultRoutes, ctx)
    assert finding.fix[0] == "ip route del default via 192.168.1.1 dev 'wl$(id)' metric 600"


# --- route.duplicate-connected-route ----------------------------------------------------------


def test_same_subnet_on_a_live_and_an_unplugged_nic() -> None:
    [finding] = findings(DuplicateConnectedRoute, routes_node("duplicate-connected"))
    assert finding.id == "route.duplicate-connected-route"
    assert finding.severity is Severity.WARNING
    assert finding.evidence[0] == "ip route: 192.168.5.0/24 dev eth0 (src 192.168.5.10)"
    assert finding.evidence[1].startswith("ip route: 192.168.5.0/24 dev eth1 linkdown")
    assert "no carrier" in finding.evidence[1]
    assert "first route listed (eth0)" in finding.evidence[2]
    assert finding.fix[0] == "ip addr del 192.168.5.11/24 dev eth1"
    assert any("ignore_routes_with_linkdown=1" in step for step in finding.fix)


def test_dead_route_listed_first_is_critical() -> None:
    [finding] = findings(DuplicateConnectedRoute, routes_node("duplicate-connected-dead-first"))
    assert finding.severity is Severity.CRITICAL
    assert "first route listed (eth1)" in finding.evidence[2]
    # the dead path goes, the live one stays
    assert finding.fix[0] == "ip addr del 192.168.5.11/24 dev eth1"


def test_fix_quotes_device_names() -> None:
    ctx = routes_node("duplicate-connected", replace=('"eth1"', '"e;reboot"'))
    [finding] = findings(DuplicateConnectedRoute, ctx)
    assert finding.fix[0] == "ip addr del 192.168.5.11/24 dev 'e;reboot'"


def test_same_subnet_with_different_metrics_is_clean() -> None:
    """Incident 000 as NetworkManager sets it up: metrics 100 and 600 on one LAN."""
    ctx = routes_node("incident000-wifi-ethernet")
    lan = [r for r in ctx.fact(RoutesCollector).main_table() if r.dst == "192.168.1.0/24"]
    assert {r.dev for r in lan} == {"enp4s0", "wlp2s0"}
    assert findings(DuplicateConnectedRoute, ctx) == []


def test_link_local_and_cni_routes_are_clean() -> None:
    """fe80::/64 exists on every device, and flannel/cni0 routes are the CNI's own."""
    ctx = routes_node("incident003-two-uplinks")
    fe80 = [r for r in ctx.fact(RoutesCollector).main_table("inet6") if r.dst == "fe80::/64"]
    assert len(fe80) >= 2
    assert findings(DuplicateConnectedRoute, ctx) == []
