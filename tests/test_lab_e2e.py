"""End to end: `cnidoctor lab run` builds a scenario, diagnoses it, and tears it down.

Root only (the lab builds network and mount namespaces); skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os

import pytest

from cnidoctor.lab.scenarios import SCENARIOS
from conftest import LabSession, requires_root
from helpers import lab_run

WORKER = "donovan-xps-8930"
CONTROL_PLANE = "donovan-optiplex-9020m"
SEED_000_IDS = {
    "firewall.host-firewall-active",
    "firewall.input-drop-blocks-cluster-ports",
    "kernel.br-netfilter-missing",
    "route.multiple-default",
    "cni.binaries-missing",
}


@requires_root
def test_lab_run_seed_000_names_every_fault_on_the_worker(
    lab_session: LabSession, capsys: pytest.CaptureFixture[str]
) -> None:
    lab_session.release("seed-000")  # lab run brings it up and down itself
    status, report = lab_run(capsys, "seed-000")
    findings = report["findings"]
    assert isinstance(findings, list)
    on_worker = {f["id"] for f in findings if WORKER in f["nodes"]}
    assert on_worker >= SEED_000_IDS, f"missing: {SEED_000_IDS - on_worker}"
    drop = next(f for f in findings if f["id"] == "firewall.input-drop-blocks-cluster-ports")
    assert "10250/tcp" in " ".join([drop["title"], *drop["evidence"]])
    loud_on_cp = [
        f["id"]
        for f in findings
        if f["nodes"] == [CONTROL_PLANE] and f["severity"] in ("critical", "warning")
    ]
    assert loud_on_cp == [], "the control-plane node of seed-000 is healthy"
    assert status == 1
    left = [n for n in SCENARIOS["seed-000"].netns_names if os.path.exists(f"/run/netns/{n}")]
    assert left == [], "lab run must take the scenario down"


@requires_root
def test_lab_run_healthy_node_reports_nothing_at_warning_or_above(
    lab_session: LabSession, capsys: pytest.CaptureFixture[str]
) -> None:
    lab_session.release("healthy-node")
    status, report = lab_run(capsys, "healthy-node")
    findings = report["findings"]
    assert isinstance(findings, list)
    loud = [(f["id"], f["evidence"]) for f in findings if f["severity"] in ("critical", "warning")]
    assert loud == []
    assert [n["collected"] for n in report["nodes"]] == [True]
    assert status == 0


@requires_root
def test_lab_run_seed_001_finds_the_first_domino_under_ready_nodes(
    lab_session: LabSession, capsys: pytest.CaptureFixture[str]
) -> None:
    """Incident 001: subnet.env gone on the rebooted nodes; the API symptoms follow from it."""
    lab_session.release("seed-001")
    status, report = lab_run(capsys, "seed-001")
    findings = report["findings"]
    assert isinstance(findings, list)
    by_key = {(f["id"], tuple(f["nodes"])): f for f in findings}
    for node in ("boromir", "theoden"):
        root = by_key[("flannel.subnet-env-missing", (node,))]
        assert root["root_cause"] is True and root["caused_by"] == []
        assert f"API: node {node} spec.podCIDR" in " ".join(root["evidence"])
        for symptom in ("node.ready-but-cni-broken", "pods.stale-unknown"):
            finding = by_key[(symptom, (node,))]
            assert finding["caused_by"] == [f"flannel.subnet-env-missing@{node}"]
            assert finding["root_cause"] is False
            # the first domino is listed before what follows from it
            assert findings.index(root) < findings.index(finding)
    subnet = by_key[("flannel.subnet-env-missing", ("boromir",))]
    assert "FLANNEL_SUBNET=10.42.0.1/24" in " ".join(subnet["fix"])
    theoden = by_key[("flannel.subnet-env-missing", ("theoden",))]
    assert "FLANNEL_SUBNET=10.42.2.1/24" in " ".join(theoden["fix"])
    loud_on_samwise = [
        f["id"] for f in findings if "samwise" in f["nodes"] and f["severity"] != "info"
    ]
    assert loud_on_samwise == []
    assert status == 1
    assert not [n for n in SCENARIOS["seed-001"].netns_names if os.path.exists(f"/run/netns/{n}")]
    assert api_servers() == [], "lab run must stop the scenario's API stand-in"


def api_servers() -> list[int]:
    """Running `cnidoctor lab api` processes."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if b"cnidoctor" in argv and b"lab" in argv and b"api" in argv:
            found.append(int(entry))
    return found


@requires_root
def test_a_snapshot_of_seed_001_is_judged_the_same_elsewhere(
    lab_session: LabSession, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    """Raw node output and the API's facts travel in the snapshot; `--from` needs neither."""
    from pathlib import Path

    from cnidoctor import cli

    inventory = lab_session.up("seed-001")
    snapshot = Path(str(tmp_path)) / "seed-001.json"
    assert cli.main(["snapshot", "--inventory", str(inventory), "-o", str(snapshot), "-q"]) == 0
    capsys.readouterr()
    cli.main(["diagnose", "--inventory", str(inventory), "--format", "json"])
    live = json.loads(capsys.readouterr().out)
    lab_session.release("seed-001")  # the lab is gone: only the file is left
    cli.main(["diagnose", "--from", str(snapshot), "--format", "json"])
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["findings"] == live["findings"]
    assert "node.ready-but-cni-broken" in {f["id"] for f in replayed["findings"]}


@requires_root
def test_lab_run_seed_002_names_the_odd_prefix_and_the_swallowed_pod_range(
    lab_session: LabSession, capsys: pytest.CaptureFixture[str]
) -> None:
    """Incident 002: one node on /8, the others on /16; the /8 contains the pod CIDR."""
    lab_session.release("seed-002")
    status, report = lab_run(capsys, "seed-002")
    findings = report["findings"]
    assert isinstance(findings, list)
    by_id = {f["id"]: f for f in findings}
    prefix = by_id["route.prefix-inconsistent"]
    assert prefix["nodes"] == ["nl-k8s-01"]
    assert "10.10.0.2/8" in prefix["evidence"][0] and "/16" in prefix["evidence"][0]
    overlap = by_id["addr.host-overlaps-cluster-cidr"]
    assert overlap["nodes"] == ["nl-k8s-01"]
    assert any("10.42.0.0/16" in line for line in overlap["evidence"])
    assert status == 1


@requires_root
def test_lab_run_healthy_cluster_reports_nothing_at_warning_or_above(
    lab_session: LabSession, capsys: pytest.CaptureFixture[str]
) -> None:
    lab_session.release("healthy-cluster")
    status, report = lab_run(capsys, "healthy-cluster")
    findings = report["findings"]
    assert isinstance(findings, list)
    loud = [(f["id"], f["nodes"]) for f in findings if f["severity"] in ("critical", "warning")]
    assert loud == []
    assert len(report["nodes"]) >= 4 and all(n["collected"] for n in report["nodes"])
    assert status == 0
