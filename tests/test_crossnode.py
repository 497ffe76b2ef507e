"""Cross-node rules on real captures of small clusters (tests/data/crossnode/capture.sh).

Each scenario directory holds, per host, the collectors' exact outputs captured in
scratch namespaces (nodes n1..n4 = 10.10.0.2-5, router r); the helpers below turn them
into NodeContexts through the real parsers, and the rules run the way the engine runs
them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from cnidoctor.collectors.base import Collector, FactParseError
from cnidoctor.collectors.fdb import FdbCollector, parse_bridge_fdb
from cnidoctor.collectors.k3s import K3sConfigCollector
from cnidoctor.collectors.network import LinksCollector, NeighboursCollector, RoutesCollector
from cnidoctor.engine import run_node_rules
from cnidoctor.facts.base import Fact, FactStatus
from cnidoctor.facts.cluster import ClusterFacts, KubeNode
from cnidoctor.facts.k3s import K3sConfig
from cnidoctor.facts.network import Neighbour
from cnidoctor.models import ClusterConfig, Finding, Severity
from cnidoctor.rules import all_rules
from cnidoctor.rules.addressing import HostOverlapsClusterCidr
from cnidoctor.rules.base import ClusterContext, NodeContext, Rule
from cnidoctor.rules.crossnode import (
    DuplicateMac,
    PrefixInconsistent,
    VxlanFdbStale,
    WrongInterfaceSelected,
)
from cnidoctor.rules.mtu import MtuMismatch, MtuMismatchAcrossSegment
from cnidoctor.transports.base import CommandResult
from helpers import DATA, failed, node, ok

NAMES = {"n1": "nl-k8s-01", "n2": "nl-k8s-02", "n3": "nl-k8s-03", "n4": "nl-k8s-04", "r": "r5c"}
ADDRESSES = {"n1": "10.10.0.2", "n2": "10.10.0.3", "n3": "10.10.0.4", "n4": "10.10.0.5"}
VTEPS = {"n1": "6a:3e:2d:11:22:02", "n2": "6a:3e:2d:11:22:03", "n3": "6a:3e:2d:11:22:04"}
VTEPS["n4"] = "6a:3e:2d:11:22:05"
K3S = ClusterConfig(pod_cidr="10.42.0.0/16", service_cidr="10.43.0.0/16", cni="flannel")


def host(
    scenario: str,
    key: str,
    cluster: ClusterConfig = K3S,
    replace: tuple[str, str] | None = None,
    role: str = "worker",
) -> NodeContext:
    """One captured host of a scenario, as a NodeContext built by the real parsers."""
    base = DATA / "crossnode" / scenario

    def text(suffix: str) -> str:
        raw = (base / f"{key}.{suffix}.json").read_text()
        return raw.replace(*replace) if replace else raw

    outputs: dict[Any, list[Any]] = {
        LinksCollector: [text("addr")],
        RoutesCollector: [text("route4"), text("route6")],
        NeighboursCollector: [text("neigh")],
    }
    if (base / f"{key}.fdb.json").exists():
        outputs[FdbCollector] = [text("fdb")]
    elif key != "r":
        outputs[FdbCollector] = [
            failed(255, stderr=(DATA / "bridge_fdb/no-device.stderr").read_text())
        ]
    return node(
        outputs,
        cluster=cluster,
        name=NAMES.get(key, key),
        address=ADDRESSES.get(key),
        role=role,
    )


def cluster(
    scenario: str,
    nodes: tuple[str, ...] = ("n1", "n2", "n3", "n4"),
    router: bool = True,
    config: ClusterConfig = K3S,
    kube: ClusterFacts | None = None,
    replace: dict[str, tuple[str, str]] | None = None,
) -> ClusterContext:
    contexts = [host(scenario, key, config, (replace or {}).get(key)) for key in nodes]
    if kube is not None:
        for ctx in contexts:
            ctx.kube = kube.node(ctx.name)
    routers = [host(scenario, "r", config)] if router else []
    return ClusterContext(nodes=contexts, cluster=config, kube=kube, routers=routers)


def run(rule: type[Rule], ctx: ClusterContext) -> list[Finding]:
    result = run_node_rules(ctx.nodes, [rule], ctx)
    assert not result.skipped, result.skipped
    return result.findings


def api(vteps: dict[str, str] | None = None, public: dict[str, str] | None = None) -> ClusterFacts:
    """The API's Node objects for n1..n4, with flannel's annotations."""
    nodes = []
    for key, name in NAMES.items():
        if key == "r":
            continue
        vtep = (vteps or {}).get(key, VTEPS[key])
        annotations = {
            "flannel.alpha.coreos.com/backend-type": "vxlan",
            "flannel.alpha.coreos.com/backend-data": json.dumps({"VNI": 1, "VtepMAC": vtep}),
            "flannel.alpha.coreos.com/public-ip": (public or {}).get(key, ADDRESSES[key]),
        }
        obj = {
            "kind": "Node",
            "metadata": {"name": name, "annotations": annotations},
            "status": {
                "addresses": [{"type": "InternalIP", "address": ADDRESSES[key]}],
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }
        nodes.append(KubeNode.from_object(obj))
    return ClusterFacts(reachable=True, nodes=nodes)


# --------------------------------------------------------------------------- bridge fdb parser


def judge_outputs(collector: type[Collector], results: list[CommandResult | str]) -> Fact:
    raw = [ok(r) if isinstance(r, str) else r for r in results]
    argv = [list(c.argv) for c in collector.commands]
    return collector.judge(
        [r.model_copy(update={"argv": a}) for r, a in zip(raw, argv, strict=True)]
    )


def test_fdb_parser_reads_flannels_peer_entries() -> None:
    fdb = parse_bridge_fdb((DATA / "bridge_fdb/flannel-peers.json").read_text())
    assert [(e.mac, e.dst, e.state) for e in fdb.entries][-1] == (
        "6a:3e:2d:11:22:03",
        "10.10.0.3",
        "permanent",
    )
    assert all("self" in e.flags and not e.is_default_destination for e in fdb.entries)


def test_fdb_without_flannel_1_is_absent_not_an_error() -> None:
    stderr = (DATA / "bridge_fdb/no-device.stderr").read_text()
    fact = judge_outputs(FdbCollector, [failed(255, stderr=stderr)])
    assert fact.status is FactStatus.ABSENT and "flannel.1 does not exist" in (fact.reason or "")
    missing = judge_outputs(FdbCollector, [failed(127, stderr="bridge: not found")])
    assert missing.status is FactStatus.ABSENT


@pytest.mark.parametrize(
    "garbage",
    [
        "[{",
        '{"mac": "x"}',
        '[{"mac": "not-a-mac"}]',
        '[{"mac": "6a:3e:2d:11:22:03", "dst": "10.10.0"}]',
        '[{"mac": "6a:3e:2d:11:22:03", "dst": 7}]',
        '[{"mac": "6a:3e:2d:11:22:03", "vni": "one"}]',
    ],
)
def test_fdb_parser_rejects_garbage(garbage: str) -> None:
    with pytest.raises(FactParseError):
        parse_bridge_fdb(garbage)
    cut = (DATA / "bridge_fdb/flannel-stale-peer.json").read_text()[:70]
    assert judge_outputs(FdbCollector, [cut]).status is FactStatus.ERROR


# --------------------------------------------------------------------------- prefixes


def test_incident_002_names_the_odd_node_and_both_prefixes() -> None:
    [finding] = run(PrefixInconsistent, cluster("slash8"))
    assert finding.nodes == ["nl-k8s-01"]
    assert finding.evidence[0] == "nl-k8s-01 10.10.0.2/8 vs nl-k8s-02/03/04 10.10.0.x/16"
    assert finding.title == "nl-k8s-01 uses /8 where the other nodes on 10.0.0.0/8 use /16"
    assert finding.severity is Severity.CRITICAL  # the /8 also swallows 10.42.0.0/16
    assert any("covers the cluster's 10.42.0.0/16" in line for line in finding.evidence)
    assert (
        "ip addr add 10.10.0.2/16 dev eth0 && ip addr del 10.10.0.2/8 dev eth0" in (finding.fix[0])
    )


def test_same_prefixes_vips_and_kube_vip_are_not_inconsistent() -> None:
    """healthy: all /16; n3 has a secondary keepalived VIP, n4 a kube-vip /32."""
    assert run(PrefixInconsistent, cluster("healthy")) == []


def test_symmetric_disagreement_without_cluster_overlap_is_a_warning() -> None:
    [finding] = run(PrefixInconsistent, cluster("slash8", config=ClusterConfig()))
    assert finding.severity is Severity.WARNING


def test_asymmetric_prefixes_are_critical() -> None:
    """n4 renumbered into 10.10.7.0/24: the /16 nodes see it on-link, it does not see them."""
    moved = {"n4": ('"local":"10.10.0.5","prefixlen":16', '"local":"10.10.7.5","prefixlen":24')}
    [finding] = run(PrefixInconsistent, cluster("healthy", config=ClusterConfig(), replace=moved))
    assert finding.nodes == ["nl-k8s-04"] and finding.severity is Severity.CRITICAL
    assert any("asymmetric routing" in line for line in finding.evidence)


def test_incident_002_host_network_over_the_pod_cidr_is_reported_on_the_odd_node() -> None:
    ctx = cluster("slash8")
    result = run_node_rules(ctx.nodes, [HostOverlapsClusterCidr], ctx)
    [finding] = result.findings
    assert finding.nodes == ["nl-k8s-01"]
    assert finding.evidence == [
        "eth0 10.10.0.2/8 contains pod CIDR 10.42.0.0/16",
        "eth0 10.10.0.2/8 contains service CIDR 10.43.0.0/16",
    ]


# --------------------------------------------------------------------------- duplicate MAC


def test_router_cache_with_one_mac_for_every_node() -> None:
    [finding] = run(DuplicateMac, cluster("dupmac"))
    assert finding.nodes[0] == "nl-k8s-01"  # the MAC's owner, then the nodes it swallows
    assert set(finding.nodes) == {"nl-k8s-01", "nl-k8s-02", "nl-k8s-03", "nl-k8s-04"}
    assert finding.evidence[0].startswith("r5c's neighbour table on eth0: ")
    assert "10.10.0.3 (nl-k8s-02)" in finding.evidence[0]
    assert "52:54:00:0a:00:02 is nl-k8s-01's eth0" in finding.evidence
    assert finding.title == (
        "52:54:00:0a:00:02 (nl-k8s-01's eth0) is the neighbour entry of nl-k8s-02/03/04 too"
    )
    assert finding.fix[0].startswith("on r5c: ip neigh del ")


def test_healthy_tables_a_moved_vip_and_arp_replies_are_no_duplicate() -> None:
    """n2 still resolves n3's keepalived VIP to n1's MAC: a VIP is no node's identity."""
    assert run(DuplicateMac, cluster("healthy")) == []


def test_router_proxy_arp_for_a_range_it_owns_is_no_duplicate() -> None:
    """Real proxy-ARP: r answers n1 (/8) for 10.20.0.7 and .8, which it routes on eth1."""
    far = [NodeContext(name=f"w{i}", facts={}, cluster=K3S, address=f"10.20.0.{i}") for i in (7, 8)]
    ctx = cluster("proxyarp", nodes=("n1",))
    ctx.nodes += far
    assert run(DuplicateMac, ctx) == []
    ctx.routers = []  # the router not collected: its MAC is n1's gateway's
    assert run(DuplicateMac, ctx) == []


def test_cloned_mac_on_two_nodes() -> None:
    clone = {"n3": ("52:54:00:0a:00:04", "52:54:00:0a:00:03")}
    findings = run(DuplicateMac, cluster("healthy", replace=clone))
    assert findings[0].title == "nl-k8s-02/03 have the same MAC 52:54:00:0a:00:03"
    assert findings[0].nodes == ["nl-k8s-02", "nl-k8s-03"]


def test_an_entry_for_the_tables_own_address_counts_in_other_tables_only() -> None:
    """One entry object in two tables (the parsers share identical entries between nodes):
    n1 resolving its own address to n2's MAC is not counted, n3 doing so is."""
    entry = Neighbour(dst="10.10.0.2", dev="eth0", lladdr="52:54:00:0a:00:03", state=["STALE"])
    ctx = cluster("healthy")
    n1, _, n3, _ = ctx.nodes
    n1.fact(NeighboursCollector).entries.append(entry)
    assert run(DuplicateMac, ctx) == []
    n3.fact(NeighboursCollector).entries.append(entry)
    [finding] = run(DuplicateMac, ctx)
    assert finding.title == (
        "52:54:00:0a:00:03 (nl-k8s-02's eth0) is the neighbour entry of nl-k8s-01 too"
    )
    assert finding.evidence[0].startswith("nl-k8s-03's neighbour table on eth0: 10.10.0.2")


# --------------------------------------------------------------------------- MTU


def test_jumbo_frames_on_one_node_of_the_segment() -> None:
    ctx = cluster("mtu")
    result = run_node_rules(ctx.nodes, [MtuMismatch], ctx)  # the node part stays quiet
    [finding] = result.findings
    assert finding.id == "mtu.mismatch" and finding.nodes == ["nl-k8s-03"]
    assert finding.evidence[0] == (
        "nl-k8s-03 eth0 mtu 9000 vs nl-k8s-01/02/04 eth0 mtu 1500 on 10.10.0.0/16"
    )
    assert "flannel.1 on nl-k8s-03: mtu 8950" in finding.evidence[1]
    assert finding.fix[0] == "on nl-k8s-03: ip link set dev eth0 mtu 1500"


def test_one_mtu_on_the_segment_is_clean() -> None:
    assert run(MtuMismatchAcrossSegment, cluster("healthy")) == []


def test_the_cross_node_part_is_no_registry_entry_of_its_own() -> None:
    rules = all_rules()
    assert MtuMismatchAcrossSegment not in rules and MtuMismatch.cross_node is not None
    assert [r.id for r in rules].count("mtu.mismatch") == 1


# --------------------------------------------------------------------------- flannel fdb


def test_peer_vtep_mac_changed_under_its_peers() -> None:
    """n2's flannel.1 got a new MAC; n1/n3/n4 still send to the old one (no API)."""
    findings = run(VxlanFdbStale, cluster("fdbstale"))
    [finding] = [f for f in findings if "nl-k8s-02" in f.title]
    assert finding.nodes[0] == "nl-k8s-02"
    assert set(finding.nodes) == {"nl-k8s-02", "nl-k8s-01", "nl-k8s-03", "nl-k8s-04"}
    assert any(
        "fdb sends nl-k8s-02's VXLAN (10.10.0.3) to MAC 6a:3e:2d:11:22:03, but nl-k8s-02's "
        "flannel.1 has 6a:3e:2d:99:99:02" in line
        for line in finding.evidence
    )
    assert any("neighbour 10.42.1.0 dev flannel.1" in line for line in finding.evidence)
    # without the API's node list, 10.10.0.9 cannot be called "no node's address"
    assert len(findings) == 1


def test_with_the_api_a_departed_node_and_a_stale_annotation_are_named() -> None:
    kube = api(vteps={"n2": VTEPS["n2"]})  # the annotation still has the old VtepMAC
    findings = run(VxlanFdbStale, cluster("fdbstale", kube=kube))
    by_title = {f.title: f for f in findings}
    gone = by_title["flannel.1 entries point at 10.10.0.9, which is no node's address"]
    assert gone.nodes == ["nl-k8s-01"]
    [peer] = [f for f in findings if "nl-k8s-02" in f.title]
    assert any("announces VtepMAC 6a:3e:2d:11:22:03" in line for line in peer.evidence)


def test_consistent_fdb_neighbours_and_annotations_are_clean() -> None:
    assert run(VxlanFdbStale, cluster("healthy")) == []
    assert run(VxlanFdbStale, cluster("healthy", kube=api())) == []


# --------------------------------------------------------------------------- interface


def test_flannel_bound_to_a_second_nic() -> None:
    [finding] = run(WrongInterfaceSelected, cluster("wrongiface"))
    assert finding.nodes == ["nl-k8s-01"] and finding.severity is Severity.CRITICAL
    assert finding.evidence[0] == (
        "flannel.1 sends VXLAN from 192.168.50.2 (eth1); the node's InternalIP is 10.10.0.2 (eth0)"
    )
    assert "3 of 3 via eth0, 0 via eth1" in finding.evidence[-1]
    assert "flannel-iface: eth0" in finding.fix[0]


def test_flannel_on_the_internal_ip_or_deliberately_external_is_clean() -> None:
    assert run(WrongInterfaceSelected, cluster("healthy")) == []
    ctx = cluster("wrongiface")
    ctx.nodes[0].facts[K3sConfigCollector.name] = Fact(
        name=K3sConfigCollector.name,
        status=FactStatus.OK,
        value=K3sConfig(settings={"flannel-external-ip": True}),
    )
    assert run(WrongInterfaceSelected, ctx) == []
