"""The CLI boundary: exit statuses, one-line errors, partial results, snapshots."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cnidoctor.cli import main
from cnidoctor.rules import all_rules

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="collecting this host fully needs root")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "preflight", "--pod-cidr", "10.42.0.0/99")
    assert status == 2
    assert err.strip().splitlines() == ["cnidoctor: error: '10.42.0.0/99' is not a CIDR"]
    assert run(capsys, "preflight", "--node", "telnet://x")[0] == 2
    assert run(capsys, "no-such-command")[0] == 2


def test_a_node_that_cannot_be_reached_is_a_result_and_exit_2_when_it_is_the_only_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run(
        capsys, "preflight", "--node", "netns:cnd-does-not-exist", "--format", "json"
    )
    assert status == 2
    report = json.loads(out)
    assert report["nodes"] == [
        {
            "name": "netns:cnd-does-not-exist",
            "collected": False,
            "error": "netns:cnd-does-not-exist: no network namespace 'cnd-does-not-exist' "
            "(/run/netns/cnd-does-not-exist does not exist)",
            "duration_s": None,
        }
    ]
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@needs_root
def test_partial_results_are_reported_and_judged(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        "cluster: {pod_cidr: 10.42.0.0/16}\n"
        "nodes:\n"
        "  - {name: here, via: local}\n"
        "  - {name: gone, via: 'netns:cnd-does-not-exist'}\n"
    )
    status, out, _ = run(
        capsys, "diagnose", "--inventory", str(inventory), "--format", "json", "--fail-on", "never"
    )
    assert status == 0
    report = json.loads(out)
    assert report["schema"] == "cnidoctor/v1"
    nodes = {n["name"]: n for n in report["nodes"]}
    assert nodes["here"]["collected"] is True and nodes["here"]["error"] is None
    assert nodes["gone"]["collected"] is False and "does not exist" in nodes["gone"]["error"]
    node_findings = [f for f in report["findings"] if f["nodes"]]
    assert node_findings and all(f["nodes"] == ["here"] for f in node_findings)


@needs_root
def test_snapshot_then_diagnose_from_gives_the_same_findings(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        "cluster: {pod_cidr: 10.42.0.0/16}\nnodes:\n  - {name: here, via: local}\n"
    )
    snapshot = tmp_path / "snap.json"
    status, out, _ = run(capsys, "snapshot", "--inventory", str(inventory), "-o", str(snapshot))
    assert status == 0 and out.strip() == str(snapshot)
    _, live, _ = run(capsys, "diagnose", "--inventory", str(inventory), "--format", "json")
    _, replayed, _ = run(capsys, "diagnose", "--from", str(snapshot), "--format", "json")
    ids = lambda text: sorted(f["id"] for f in json.loads(text)["findings"])  # noqa: E731
    assert ids(replayed) == ids(live)


def test_a_broken_snapshot_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "snap.json"
    bad.write_text('{"schema_version": "cnidoctor/snapshot-v1", "cluster": {}}')
    status, _, err = run(capsys, "diagnose", "--from", str(bad))
    assert status == 2
    assert err.startswith(f"cnidoctor: error: snapshot {bad}: not a cnidoctor snapshot")
    assert len(err.strip().splitlines()) == 1


def test_rules_lists_every_registered_rule(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "rules")
    assert status == 0
    for rule in all_rules():
        assert rule.id in out
    assert f"{len(all_rules())} rules" in out


def test_every_rule_declares_what_the_registry_needs() -> None:
    ids = [rule.id for rule in all_rules()]
    assert len(ids) == len(set(ids)), "rule ids must be unique"
    for rule in all_rules():
        assert rule.id.count(".") == 1 and rule.id == rule.id.lower()
        assert rule.title and rule.explanation, rule.id
        # node rules name the facts they read; cluster rules read the API's objects
        assert rule.needs or rule.scope == "cluster", rule.id


DEAD_KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- name: dead
  cluster: {server: "http://127.0.0.1:PORT"}
users:
- name: u
  user: {token: t}
contexts:
- name: c
  context: {cluster: dead, user: u}
current-context: c
"""


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@needs_root
@pytest.mark.parametrize(
    ("kubeconfig", "expected"),
    [
        ("dead", "connection refused"),
        ("garbage", "kubeconfig"),
        ("missing", "no such file"),
    ],
)
def test_a_broken_kubeconfig_is_one_line_and_the_nodes_are_still_judged(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, kubeconfig: str, expected: str
) -> None:
    path = tmp_path / "kubeconfig.yaml"
    if kubeconfig == "dead":
        path.write_text(DEAD_KUBECONFIG.replace("PORT", str(closed_port())))
    elif kubeconfig == "garbage":
        path.write_text("clusters: [unclosed\n")
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        "cluster: {pod_cidr: 10.42.0.0/16, "
        f"kubeconfig: {path}}}\nnodes:\n  - {{name: here, via: local}}\n"
    )
    status, out, err = run(capsys, "diagnose", "--inventory", str(inventory), "--format", "json")
    assert status in (0, 1) and "Traceback" not in err
    report = json.loads(out)
    (api,) = [f for f in report["findings"] if f["id"] == "kube.api-unavailable"]
    assert api["severity"] == "warning"
    (line,) = api["evidence"]
    assert expected in line.lower() and "\n" not in line
    assert report["nodes"][0]["collected"] is True


def test_every_rule_id_is_a_catalog_id_or_a_declared_addition() -> None:
    from cnidoctor.catalog import ADDED_IDS, KNOWN_IDS

    unknown = [r.id for r in all_rules() if r.id not in KNOWN_IDS + ADDED_IDS]
    assert unknown == [], "ids are a public contract: add new ones to catalog.ADDED_IDS"


def test_without_an_inventory_the_nodes_come_from_the_api(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The API lists two nodes; each is reached over ssh:// at its InternalIP (loopback here,
    where no sshd answers), so both are reported as not collected, with ssh's reason."""
    from cnidoctor.lab.apiserver import start_api

    def node(name: str, role: str | None) -> dict[str, object]:
        labels = {f"node-role.kubernetes.io/{role}": "true"} if role else {}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"podCIDR": "10.42.0.0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]},
        }

    with start_api([node("cp1", "control-plane"), node("w1", None)], "127.0.0.1:0") as api:
        status, out, err = run(
            capsys, "diagnose", "--kubeconfig", str(api.kubeconfig_path), "--format", "json"
        )
    report = json.loads(out)
    assert [n["name"] for n in report["nodes"]] == ["cp1", "w1"]
    assert all(not n["collected"] and "ssh://127.0.0.1" in n["error"] for n in report["nodes"])
    assert status == 2 and "no node could be collected" in err


def test_without_an_inventory_or_an_api_it_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, _, err = run(capsys, "diagnose", "--kubeconfig", str(tmp_path / "none.yaml"))
    assert status == 2
    assert err.startswith("cnidoctor: error: no --inventory, and no node list from the API:")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["rules"],  # printed through rich
        ["preflight", "--node", "netns:cnd-does-not-exist", "--format", "json"],  # print()
    ],
)
def test_a_reader_that_goes_away_is_not_a_traceback(argv: list[str]) -> None:
    """`cnidoctor ... | head -1`: stdout's reader is gone; no BrokenPipeError traceback."""
    import subprocess
    import sys

    closed_stdout = (
        "import os, sys\n"
        "r, w = os.pipe(); os.close(r); os.dup2(w, 1)\n"  # every write now fails with EPIPE
        f"sys.argv = ['cnidoctor', *{argv!r}]\n"
        "from cnidoctor.cli import entrypoint\n"
        "entrypoint()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", closed_stdout], capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
