"""End to end: `cnidoctor lab run` builds a scenario, diagnoses it, and tears it down.

Needs the CLI (cnidoctor.cli.main) and the rules; skipped until they exist.
"""

from __future__ import annotations

import json
import os

import pytest

from cnidoctor.lab.scenarios import SCENARIOS
from conftest import LabSession, requires_root

WORKER = "donovan-xps-8930"
CONTROL_PLANE = "donovan-optiplex-9020m"
SEED_000_IDS = {
    "firewall.host-firewall-active",
    "firewall.input-drop-blocks-cluster-ports",
    "kernel.br-netfilter-missing",
    "route.multiple-default",
    "cni.binaries-missing",
}


def lab_run(name: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    cli = pytest.importorskip("cnidoctor.cli", reason="the CLI is not written yet")
    capsys.readouterr()
    status = cli.main(["lab", "run", name, "--format", "json"])
    return status, json.loads(capsys.readouterr().out)


@requires_root
def test_lab_run_seed_000_names_every_fault_on_the_worker(
    lab_session: LabSession, capsys: pytest.CaptureFixture[str]
) -> None:
    lab_session.release("seed-000")  # lab run brings it up and down itself
    status, report = lab_run("seed-000", capsys)
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
    status, report = lab_run("healthy-node", capsys)
    findings = report["findings"]
    assert isinstance(findings, list)
    loud = [(f["id"], f["evidence"]) for f in findings if f["severity"] in ("critical", "warning")]
    assert loud == []
    assert [n["collected"] for n in report["nodes"]] == [True]
    assert status == 0
