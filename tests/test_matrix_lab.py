"""The matrix end to end on lab scenarios (root): green on healthy-cluster, the loop of
seed-002, the router's poisoned table of seed-002-mac, bounded time with a silent node."""

from __future__ import annotations

import json
import os
import time

import pytest

from cnidoctor.collect import collect_node, judge_facts
from cnidoctor.collectors.network import NeighboursCollector
from cnidoctor.inventory import load_inventory
from cnidoctor.lab.build import build, destroy
from cnidoctor.lab.model import NodeSpec, Scenario, Segment, Uplink
from cnidoctor.probes.matrix import MatrixNode, matrix_report, nodes_from_inventory
from cnidoctor.probes.matrix_model import Status
from cnidoctor.probes.matrix_run import run_matrix
from cnidoctor.transports import transport_for
from conftest import LabSession, requires_root


def cli_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    from cnidoctor import cli

    capsys.readouterr()
    status = cli.main([*argv, "--format", "json"])
    return status, json.loads(capsys.readouterr().out)


@requires_root
def test_healthy_cluster_matrix_is_green_in_well_under_a_timeout(
    lab_session: LabSession, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = load_inventory(lab_session.up("healthy-cluster"))
    result, report = matrix_report(nodes_from_inventory(inventory), inventory.cluster, 1.0)
    bad = [
        (p.source, p.target, p.label, p.status, p.detail) for p in result.probes if not p.status.ok
    ]
    assert bad == []
    assert {p.group for p in result.probes} == {"icmp", "api", "kubelet", "etcd", "vxlan"}
    assert report.findings == [] and all(n.collected for n in report.nodes)
    assert result.duration_s < 1.0  # every answer came: nothing waits for the timeout
    from cnidoctor import cli

    capsys.readouterr()
    assert cli.main(["matrix", "--inventory", str(lab_session.up("healthy-cluster"))]) == 0
    out = capsys.readouterr().out
    assert "4 nodes, 12 pairs" in out and "ooooo" in out and "Failed" not in out


@requires_root
def test_bash_prober_where_python_is_not_used(lab_session: LabSession) -> None:
    inventory = load_inventory(lab_session.up("healthy-cluster"))
    result = run_matrix(nodes_from_inventory(inventory), inventory.cluster, 1.0, prober="bash")
    assert {r.mode for r in result.runs} == {"bash"}
    assert all(p.status is Status.OPEN for p in result.probes if p.proto != "udp")
    udp = [p for p in result.probes if p.proto == "udp"]
    assert udp and all(p.status is Status.UNKNOWN for p in udp)
    assert "cannot observe" in udp[0].detail


@requires_root
def test_seed_002_matrix_reports_the_loop_with_icmp_evidence(
    lab_session: LabSession, capsys: pytest.CaptureFixture[str]
) -> None:
    path = lab_session.up("seed-002")
    status, report = cli_json(["matrix", "--inventory", str(path)], capsys)
    assert status == 1 and report["schema"] == "cnidoctor/v1"
    findings = report["findings"]
    loop = next(f for f in findings if f["id"] == "route.loop")
    assert loop["root_cause"] and "nl-k8s-01" in loop["nodes"]
    text = "\n".join(loop["evidence"])
    assert "Redirect Host(New nexthop: 10.10.0.2)" in text or "Time to live exceeded" in text
    etcd = next(
        f for f in findings if f["id"] == "etcd.peer-unreachable" and f["nodes"][0] == "nl-k8s-01"
    )
    assert "route.loop" in etcd["caused_by"]
    # nl-k8s-03 has no stale entry: it reaches everyone
    assert not any(f["nodes"][1:] == ["nl-k8s-03"] for f in findings if f["id"] != "route.loop")


@requires_root
def test_seed_002_mac_router_table_holds_one_mac_for_every_node(
    lab_session: LabSession, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = load_inventory(lab_session.up("seed-002-mac"))
    [router] = inventory.routers
    collection = collect_node(router.name, transport_for(router.via), [NeighboursCollector])
    neighbours = judge_facts(collection, [NeighboursCollector])["neighbours"]
    assert neighbours.ok, neighbours.reason
    macs = {n.dst: n.lladdr for n in neighbours.value.entries}
    nodes = {n.address for n in inventory.nodes}
    assert {macs.get(ip) for ip in nodes} == {"54:e1:ad:a5:1d:0f"}
    _, report = cli_json(["diagnose", "--inventory", str(lab_session.up("seed-002-mac"))], capsys)
    assert "neigh.duplicate-mac" in {f["id"] for f in report["findings"]}


def _drop_scenario() -> Scenario:
    """Three nodes, the last one dropping every inbound packet (iptables INPUT DROP)."""
    nodes = tuple(
        NodeSpec(
            name=f"mtx-{i}",
            netns=f"cnd-mtx-n{i}",
            role="control-plane" if i == 1 else "worker",
            uplinks=(Uplink(ifname="eth0", segment="lan", address=f"10.77.0.{i + 10}/24"),),
            pod_subnet=f"10.42.{i}.0/24",
            drop_inbound=i == 3,
        )
        for i in (1, 2, 3)
    )
    return Scenario(
        name="matrix-drop-test",
        tag="mtx",
        description="matrix test: one node drops all inbound traffic",
        incident=None,
        segments=(Segment(name="lan", bridge="br-lan", gateway="10.77.0.1/24"),),
        nodes=nodes,
        cluster={"pod_cidr": "10.42.0.0/16", "service_cidr": "10.43.0.0/16", "cni": "flannel"},
        serve_ports=True,
    )


@requires_root
def test_a_silent_node_costs_one_timeout_and_its_firewall_is_the_cause() -> None:
    scenario = _drop_scenario()
    destroy(scenario.name, scenario)
    try:
        inventory = load_inventory(build(scenario))
        nodes = [*nodes_from_inventory(inventory)]
        nodes.append(MatrixNode("ghost", "netns:cnd-mtx-ghost", None))  # cannot be reached
        started = time.monotonic()
        result, report = matrix_report(nodes, inventory.cluster, 1.0)
        elapsed = time.monotonic() - started
    finally:
        destroy(scenario.name, scenario)
    assert result.duration_s < 2.5 and elapsed < 4.0, (result.duration_s, elapsed)
    to_silent = [p for p in result.probes if p.target == "mtx-3" and p.source != "ghost"]
    assert to_silent and all(not p.status.ok for p in to_silent)
    assert {p.status for p in to_silent if p.proto == "tcp"} == {Status.FILTERED}
    # mtx-3's own probes fail too: its INPUT DROP eats the answers
    others = [p for p in result.probes if {p.source, p.target}.isdisjoint({"mtx-3", "ghost"})]
    assert others and all(p.status.ok for p in others)
    ghost = next(n for n in report.nodes if n.name == "ghost")
    assert not ghost.collected and "cnd-mtx-ghost" in (ghost.error or "")
    firewall = next(
        f for f in report.findings if f.id == "firewall.input-drop-blocks-cluster-ports"
    )
    assert firewall.nodes == ["mtx-3"] and firewall.root_cause
    kubelet = next(f for f in report.findings if f.id == "kubelet.unreachable")
    assert kubelet.caused_by == ["firewall.input-drop-blocks-cluster-ports@mtx-3"]
    assert not [n for n in scenario.netns_names if os.path.exists(f"/run/netns/{n}")]
