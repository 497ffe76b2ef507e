"""The `ip -j` parsers on real captures (tests/data/ip_*), on garbage, and under hypothesis.

The captures come from scratch network namespaces built to mirror the incidents: veth
uplinks, a flannel.1-like VXLAN (id 1, dstport 8472, nolearning), cni0 with a pod veth,
two default routes with metrics, a policy table, an ECMP route, a linkdown route, IPv6
and permanent neighbours.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.helpers import data, failed, node, ok

from cnidoctor.collectors.base import Collector, FactParseError
from cnidoctor.collectors.network import (
    LinksCollector,
    NeighboursCollector,
    RoutesCollector,
    parse_ip_addr,
    parse_ip_neigh,
    parse_ip_route,
)
from cnidoctor.facts.base import FactStatus
from cnidoctor.facts.network import Links, Routes, is_cni_device, is_container_bridge


def links_of(case: str) -> Links:
    return parse_ip_addr(data(f"ip_addr/{case}.json"))


def routes_of(case: str) -> Routes:
    return RoutesCollector.parse(
        [ok(data(f"ip_route/{case}.v4.json")), ok(data(f"ip_route/{case}.v6.json"))]
    )


# --- golden captures ---------------------------------------------------------------------


def test_two_uplinks_links_vxlan_bridge_and_veth() -> None:
    links = links_of("incident003-two-uplinks")
    assert [link.ifname for link in links.links] == [
        "lo",
        "ens18",
        "ens19",
        "flannel.1",
        "cni0",
        "veth1a2b3c4d",
    ]
    ens18 = links.by_name("ens18")
    assert ens18 is not None and ens18.kind == "veth" and ens18.mtu == 1500
    assert ens18.is_up and ens18.has_carrier
    assert [a.cidr for a in ens18.global_addresses()] == ["192.168.178.20/24"]
    assert [a.cidr for a in ens18.global_addresses("inet6")] == ["2001:db8:178::20/64"]
    flannel = links.by_name("flannel.1")
    assert flannel is not None and flannel.kind == "vxlan" and flannel.mtu == 1450
    assert flannel.vxlan is not None
    assert (flannel.vxlan.id, flannel.vxlan.port, flannel.vxlan.learning) == (1, 8472, False)
    assert (flannel.vxlan.local, flannel.vxlan.link) == ("10.50.10.20", "ens19")
    assert flannel.address == "6a:3e:2d:11:22:01"
    cni0 = links.by_name("cni0")
    assert cni0 is not None and cni0.kind == "bridge"
    assert [a.cidr for a in cni0.global_addresses()] == ["10.42.1.1/24"]
    veth = links.by_name("veth1a2b3c4d")
    assert veth is not None and veth.master == "cni0" and veth.global_addresses() == []
    assert links.by_name("eth9") is None


def test_vxlan_bound_by_local_address_only_has_no_link() -> None:
    flannel = links_of("mtu-underlay-1400").by_name("flannel.1")
    assert flannel is not None and flannel.vxlan is not None
    assert flannel.vxlan.link is None and flannel.vxlan.local == "172.31.5.10"
    eth0 = links_of("mtu-underlay-1400").by_name("eth0")
    assert eth0 is not None and eth0.mtu == 1400


def test_veth_pair_in_one_namespace_names_its_peer() -> None:
    links = parse_ip_addr(data("ip_addr/vxlan-bridge-veth.json"))
    v1, v2 = links.by_name("v1"), links.by_name("v2")
    assert v1 is not None and v2 is not None
    assert (v1.link, v2.link) == ("v2", "v1")
    assert [a.cidr for a in v1.global_addresses()] == ["10.0.0.1/24"]
    vxlan0 = links.by_name("vxlan0")
    assert vxlan0 is not None and not vxlan0.is_up and vxlan0.vxlan is not None
    assert vxlan0.vxlan.local == "127.0.0.1"


def test_unplugged_nic_is_up_without_carrier() -> None:
    eth1 = links_of("duplicate-connected").by_name("eth1")
    assert eth1 is not None
    assert eth1.is_up and not eth1.has_carrier
    assert "NO-CARRIER" in eth1.flags


def test_routes_two_defaults_policy_table_ecmp_and_ipv6() -> None:
    routes = routes_of("incident003-two-uplinks")
    main = routes.main_table("inet")
    defaults = [r for r in main if r.is_default]
    assert [(r.dev, r.gateway, r.metric) for r in defaults] == [
        ("ens18", "192.168.178.1", 100),
        ("ens19", "10.50.10.1", 200),
    ]
    table100 = [r for r in routes.routes if r.table == "100"]
    assert [(r.dst, r.dev, r.gateway) for r in table100] == [("default", "ens19", "10.50.10.1")]
    assert all(r not in main for r in table100)
    overlay = next(r for r in main if r.dst == "10.42.0.0/24")
    assert overlay.dev == "flannel.1" and overlay.gateway == "10.42.0.0"
    assert "onlink" in overlay.flags and not overlay.is_connected
    ecmp = next(r for r in main if r.dst == "172.16.0.0/16")
    assert ecmp.dev is None and ecmp.devices == ["ens18", "ens19"]
    assert [(h.gateway, h.dev, h.weight) for h in ecmp.nexthops] == [
        ("192.168.178.1", "ens18", 1),
        ("10.50.10.1", "ens19", 2),
    ]
    assert ecmp.describe() == (
        "172.16.0.0/16 nexthop via 192.168.178.1 dev ens18 nexthop via 10.50.10.1 dev ens19"
    )
    connected = next(r for r in main if r.dst == "192.168.178.0/24")
    assert connected.is_connected and connected.prefsrc == "192.168.178.20"
    assert connected.network == ipaddress.ip_network("192.168.178.0/24")
    local = [r for r in routes.routes if r.table == "local"]
    assert local and all(r.type in ("local", "broadcast", "multicast") for r in local)
    v6 = routes.main_table("inet6")
    v6_default = [r for r in v6 if r.is_default]
    assert [(r.gateway, r.metric) for r in v6_default] == [("2001:db8:178::1", 1024)]
    assert v6_default[0].network == ipaddress.ip_network("::/0")
    assert any(r.dst == "2001:db8:178::/64" and r.dev == "ens18" for r in v6)


def test_linkdown_route_and_describe() -> None:
    routes = routes_of("duplicate-connected")
    dup = [r for r in routes.main_table() if r.dst == "192.168.5.0/24"]
    assert [(r.dev, r.is_linkdown) for r in dup] == [("eth0", False), ("eth1", True)]
    assert dup[1].describe() == "192.168.5.0/24 dev eth1 linkdown"


def test_route_describe_shows_metric_and_table() -> None:
    routes = routes_of("policy-table-defaults")
    described = [r.describe() for r in routes.routes if r.table == "100"]
    assert described == [
        "default via 10.1.0.1 dev eth0 metric 10 table 100",
        "default via 10.2.0.1 dev eth1 metric 20 table 100",
    ]


def test_neighbours_permanent_router_and_shared_mac() -> None:
    neigh = parse_ip_neigh(data("ip_neigh/incident003-two-uplinks.json"))
    by_dst = {n.dst: n for n in neigh.entries}
    assert by_dst["192.168.178.1"].state == ["PERMANENT"]
    assert by_dst["10.42.0.0"].dev == "flannel.1"
    assert by_dst["10.42.0.0"].lladdr == "6a:3e:2d:11:22:02"
    assert by_dst["2001:db8:178::1"].router is True
    assert by_dst["192.168.178.1"].router is False
    shared = parse_ip_neigh(data("ip_neigh/incident002-slash8.json"))
    macs = [n.lladdr for n in shared.entries if n.dst.startswith("10.10.0.")]
    assert macs == ["bc:24:11:5e:00:01"] * 3
    assert parse_ip_neigh(data("ip_neigh/empty.json")).entries == []


def test_collectors_judge_real_captures_ok() -> None:
    ctx = node(
        {
            LinksCollector: [data("ip_addr/incident002-slash8.json")],
            RoutesCollector: [
                data("ip_route/incident002-slash8.v4.json"),
                data("ip_route/incident002-slash8.v6.json"),
            ],
            NeighboursCollector: [data("ip_neigh/incident002-slash8.json")],
        }
    )
    assert ctx.fact(LinksCollector).by_name("eth0").addresses[0].cidr == "10.10.0.2/8"
    assert len(ctx.fact(NeighboursCollector).entries) == 4
    assert any(r.family == "inet6" for r in ctx.fact(RoutesCollector).routes)


def test_routes_without_ipv6_keep_ipv4() -> None:
    """A host booted with ipv6.disable=1: the -6 command fails, the fact stays usable."""
    ctx = node(
        {
            RoutesCollector: [
                data("ip_route/duplicate-connected.v4.json"),
                failed(2, "RTNETLINK answers: Address family not supported by protocol"),
            ]
        }
    )
    routes = ctx.fact(RoutesCollector)
    assert routes.routes and all(r.family == "inet" for r in routes.routes)


def test_cni_device_names() -> None:
    for name in ("cni0", "flannel.1", "cali1234abcd", "cilium_host", "vxlan.calico", "lxc9a"):
        assert is_cni_device(name), name
    for name in ("eth0", "ens18", "wlp2s0", "br0", "docker0", None):
        assert not is_cni_device(name), name
    assert is_container_bridge("docker0") and is_container_bridge("br-0123456789ab")
    assert not is_container_bridge("br0") and not is_container_bridge("eth0")


# --- garbage: always FactParseError, and via judge() a fact with status error -------------

GARBAGE = {
    "not json": "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue",
    "object, not list": '{"ifindex": 1, "ifname": "lo"}',
    "list of numbers": "[1, 2, 3]",
    "json null": "null",
}


def _truncated(case_path: str) -> str:
    text = data(case_path)
    return text[: len(text) // 2]


@pytest.mark.parametrize(
    ("collector", "outputs"),
    [
        (LinksCollector, [_truncated("ip_addr/incident003-two-uplinks.json")]),
        (RoutesCollector, [_truncated("ip_route/incident003-two-uplinks.v4.json"), "[]"]),
        (NeighboursCollector, [_truncated("ip_neigh/incident003-two-uplinks.json")]),
        *[(LinksCollector, [text]) for text in GARBAGE.values()],
        *[(RoutesCollector, [text, "[]"]) for text in GARBAGE.values()],
        *[(NeighboursCollector, [text]) for text in GARBAGE.values()],
        (LinksCollector, ['[{"ifname": "eth0"}]']),
        (LinksCollector, ['[{"ifindex": 2, "ifname": "eth0", "mtu": "big"}]']),
        (
            LinksCollector,
            [
                '[{"ifindex": 2, "ifname": "eth0", "addr_info": [{"family": "inet", '
                '"local": "10.0.0.300", "prefixlen": 24}]}]'
            ],
        ),
        (
            LinksCollector,
            [
                '[{"ifindex": 2, "ifname": "eth0", "addr_info": [{"family": "inet6", '
                '"local": "10.0.0.3", "prefixlen": 24}]}]'
            ],
        ),
        (LinksCollector, ['[{"ifindex": 2, "ifname": "eth0", "addr_info": 7}]']),
        (RoutesCollector, ['[{"dev": "eth0"}]', "[]"]),
        (RoutesCollector, ['[{"dst": "default", "metric": "low"}]', "[]"]),
        (RoutesCollector, ['[{"dst": "default", "nexthops": "eth0"}]', "[]"]),
        (NeighboursCollector, ['[{"dst": "not-an-ip", "dev": "eth0"}]']),
    ],
)
def test_garbage_is_a_fact_error_with_a_reason(
    collector: type[Collector], outputs: list[str]
) -> None:
    ctx = node({collector: outputs})
    fact = ctx.fact_envelope(collector)
    assert fact is not None and fact.status is FactStatus.ERROR
    assert fact.reason and "unparseable output of ip" in fact.reason
    assert "\n" not in fact.reason


def test_bad_entry_error_names_the_entry() -> None:
    text = json.dumps([{"ifindex": 1, "ifname": "lo"}, {"ifindex": "two", "ifname": "eth0"}])
    with pytest.raises(FactParseError, match=r"entry 1: ifindex missing or not a int"):
        parse_ip_addr(text)
    with pytest.raises(FactParseError, match="not JSON"):
        parse_ip_route(_truncated("ip_route/duplicate-connected.v4.json"))
    # orjson from 3.9.15 stops at 1,024 levels (not JSON); older ones decode the lists
    with pytest.raises(FactParseError, match=r"not JSON|expected a JSON array of objects"):
        parse_ip_neigh("[" * 100_000 + "]" * 100_000)


def test_empty_output_is_an_empty_table() -> None:
    assert parse_ip_addr("").links == []
    assert parse_ip_route("  \n") == []
    assert parse_ip_neigh("[]").entries == []


# --- hypothesis ------------------------------------------------------------------------------

PARSERS = (parse_ip_addr, parse_ip_route, parse_ip_neigh)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
KEYS = [
    "ifindex",
    "ifname",
    "mtu",
    "flags",
    "linkinfo",
    "addr_info",
    "dst",
    "dev",
    "gateway",
    "metric",
    "table",
    "nexthops",
    "family",
    "local",
    "prefixlen",
    "lladdr",
    "state",
    "router",
]
entry_like = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=200))
def test_arbitrary_text_never_crashes(text: str) -> None:
    for parse in PARSERS:
        with contextlib.suppress(FactParseError):
            parse(text)


@settings(max_examples=200, deadline=None)
@given(entries=st.lists(entry_like, max_size=4))
def test_arbitrary_ip_shaped_json_never_crashes(entries: list[dict]) -> None:
    text = json.dumps(entries)
    for parse in PARSERS:
        try:
            result = parse(text)
        except FactParseError:
            continue
        assert result is not None


ifnames = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=15)
ipv4_ifaces = st.builds(
    lambda ip, prefix: ipaddress.ip_interface(f"{ip}/{prefix}"),
    st.ip_addresses(v=4),
    st.integers(min_value=0, max_value=32),
)
ipv6_ifaces = st.builds(
    lambda ip, prefix: ipaddress.ip_interface(f"{ip}/{prefix}"),
    st.ip_addresses(v=6),
    st.integers(min_value=0, max_value=128),
)


@st.composite
def ip_links(draw: st.DrawFn) -> list[dict]:
    names = draw(st.lists(ifnames, min_size=1, max_size=5, unique=True))
    out = []
    for index, name in enumerate(names, start=1):
        addrs = draw(st.lists(ipv4_ifaces | ipv6_ifaces, max_size=3))
        out.append(
            {
                "ifindex": index,
                "ifname": name,
                "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
                "mtu": draw(st.integers(min_value=68, max_value=65535)),
                "operstate": "UP",
                "addr_info": [
                    {
                        "family": "inet" if a.version == 4 else "inet6",
                        "local": str(a.ip),
                        "prefixlen": a.network.prefixlen,
                        "scope": "global",
                        "valid_life_time": 4294967295,
                    }
                    for a in addrs
                ],
            }
        )
    return out


@settings(max_examples=100, deadline=None)
@given(raw=ip_links())
def test_links_round_trip(raw: list[dict]) -> None:
    links = parse_ip_addr(json.dumps(raw))
    assert [link.ifname for link in links.links] == [r["ifname"] for r in raw]
    assert [link.mtu for link in links.links] == [r["mtu"] for r in raw]
    for link, r in zip(links.links, raw, strict=True):
        assert [a.cidr for a in link.addresses] == [
            f"{a['local']}/{a['prefixlen']}" for a in r["addr_info"]
        ]
        assert all(a.interface.ip == ipaddress.ip_address(a.local) for a in link.addresses)


networks = (ipv4_ifaces | ipv6_ifaces).map(lambda i: i.network)


@settings(max_examples=100, deadline=None)
@given(
    nets=st.lists(networks, max_size=6),
    metric=st.integers(min_value=0, max_value=2**32 - 1),
    dev=ifnames,
)
def test_routes_round_trip(nets: list, metric: int, dev: str) -> None:
    raw = [{"dst": str(n), "dev": dev, "metric": metric, "flags": []} for n in nets]
    raw.append({"dst": "default", "gateway": "192.0.2.1", "dev": dev, "flags": []})
    routes = parse_ip_route(json.dumps(raw))
    assert [r.dst for r in routes] == [r["dst"] for r in raw]
    assert [r.network for r in routes[:-1]] == nets
    assert [r.family for r in routes[:-1]] == ["inet" if n.version == 4 else "inet6" for n in nets]
    assert all(r.metric == metric for r in routes[:-1])
    assert routes[-1].is_default and routes[-1].metric == 0
