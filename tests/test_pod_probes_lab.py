"""The pod probes against the lab (root): seed-003 and seed-003-fixed, real namespaces,
real sockets, the real agent. Each probe is checked on each node; the run must leave
nothing behind (no listener, no thread), also when interrupted by Ctrl-C or SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cnidoctor import lab
from cnidoctor.collect import NodeCollection
from cnidoctor.collectors.pod_probes import PodProbesCollector, agent_command, discovery_command
from cnidoctor.diagnose import collect, targets_from_inventory
from cnidoctor.facts.probes import PodProbes
from cnidoctor.inventory import load_inventory
from cnidoctor.lab.farend import _in_netns, _tcp_listener
from cnidoctor.lab.podnet import far_end_for_inventory
from cnidoctor.lab.scenarios import SCENARIOS
from cnidoctor.lab.state import LAB_DIR, MOUNT_DIR
from cnidoctor.probes import pod as pod_probes
from cnidoctor.probes.pod import AGENT_SOURCE, PodProbeOptions, run_pod_probes
from cnidoctor.rules.egress import EgressNoSnat
from cnidoctor.transports import transport_for
from conftest import LabSession, requires_root
from helpers import lab_run

CP, W1, W2 = "pve-k3s-cp", "pve-k3s-w1", "pve-k3s-w2"
UPSTREAM = "cnd-s003-up"

pytestmark = requires_root


def probe(inventory: Path) -> dict[str, PodProbes]:
    """One probe run as `cnidoctor probe` does it; the parsed fact per node."""
    loaded = load_inventory(inventory)
    targets = targets_from_inventory(loaded)
    collections: list[NodeCollection] = collect(targets, [EgressNoSnat])
    far = far_end_for_inventory(inventory)
    assert far is not None, "a lab inventory brings the lab's far end"
    run_pod_probes(targets, loaded.cluster, collections, PodProbeOptions(far_end=far))
    out = {}
    for c in collections:
        fact = PodProbesCollector.judge(c.results[PodProbesCollector.name])
        assert fact.ok, fact.describe()
        out[c.name] = fact.value
    return out


def listening(netns: str) -> str:
    """`ss -ltnu` inside a namespace: what still listens there."""
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "ss", "-Hltnu"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout


@pytest.fixture(scope="module")
def seed_003(lab_session: LabSession) -> Iterator[Path]:
    yield lab_session.up("seed-003")


@pytest.fixture(scope="module")
def results(seed_003: Path) -> dict[str, PodProbes]:
    return probe(seed_003)


def test_discovery_finds_each_node_s_pod_through_its_own_transport(seed_003: Path) -> None:
    from cnidoctor.collectors.pod_probes import parse_discovery

    outcome = transport_for("netns:cnd-s003-w2").run_batch([discovery_command()])
    [sandbox] = parse_discovery(outcome.results[0].stdout)
    assert sandbox.ip == "10.42.2.12" and sandbox.netns.startswith("/run/netns/cni-")


def test_egress_probe_sees_the_source_the_far_end_saw(results: dict[str, PodProbes]) -> None:
    [cp] = results[CP].of("egress")
    assert cp.ok and cp.seen == "10.50.10.10"  # masqueraded on ens19
    for worker, pod_ip in ((W1, "10.42.1.12"), (W2, "10.42.2.12")):
        [egress] = results[worker].of("egress")
        assert egress.ok is False and egress.timed_out
        assert results[worker].egress_source()[0] == pod_ip  # the upstream's capture


def test_dns_probe_cluster_name_everywhere_external_only_on_the_control_plane(
    results: dict[str, PodProbes],
) -> None:
    for name, probes in results.items():
        by_label = {r.label: r for r in probes.of("dns")}
        assert by_label["cluster"].ok and by_label["cluster"].answers == ["10.43.0.1"]
        external = by_label["external"]
        if name == CP:
            assert external.ok and external.answers == ["203.0.113.10"]
        else:
            assert external.ok is False and external.rcode == "SERVFAIL"
            assert probes.far_end is not None
            assert any("no answer within" in line for line in probes.far_end.dns_log)


def test_api_probes_tcp_and_tls_to_the_service_ip_and_the_server(
    results: dict[str, PodProbes],
) -> None:
    for probes in results.values():
        targets = {(r.probe, r.target): r.ok for r in probes.results if r.probe.startswith("api")}
        assert targets == {
            ("api-tcp", "10.43.0.1:443"): True,
            ("api-tls", "10.43.0.1:443"): True,
            ("api-tcp", "10.50.10.10:6443"): True,
            ("api-tls", "10.50.10.10:6443"): True,
        }


def test_pod_to_pod_probe_reaches_a_pod_on_every_other_node(
    results: dict[str, PodProbes],
) -> None:
    for name, probes in results.items():
        reached = {r.label for r in probes.of("pod") if r.ok}
        assert reached == {CP, W1, W2} - {name}


def test_the_run_leaves_no_listener_and_no_thread(seed_003: Path) -> None:
    before = threading.active_count()
    probe(seed_003)
    assert listening(UPSTREAM) == ""
    assert ":6443" not in listening("cnd-s003-cp")
    assert threading.active_count() == before


def test_failures_against_the_lab(seed_003: Path, results: dict[str, PodProbes]) -> None:
    """TLS that never answers, a closed port, a dead address, DNS without an endpoint."""
    mute = _in_netns("cnd-s003-cp", _tcp_listener(6444))
    held: list[socket.socket] = []
    stop = threading.Event()

    def hold() -> None:
        while not stop.is_set():
            try:
                held.append(mute.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    holder = threading.Thread(target=hold)
    holder.start()
    spec = {
        "timeout": 1.5,
        "deadline": 5,
        "dns": {"server": "10.43.0.99", "port": 53, "names": [["cluster", "kubernetes.x"]]},
        "api": [
            {"label": "API server", "host": "10.50.10.10", "port": 6444},
            {"label": "API server", "host": "10.50.10.10", "port": 6445},
        ],
    }
    try:
        command = agent_command(results[W1].pod.netns, AGENT_SOURCE.read_text(), spec, 9)
        outcome = transport_for("netns:cnd-s003-w1").run_batch([command])
    finally:
        stop.set()
        mute.close()
        holder.join(5)
        for conn in held:
            conn.close()
    got = {(r["probe"], r["target"]): r for r in json.loads(outcome.results[0].stdout)["results"]}
    assert got[("api-tcp", "10.50.10.10:6444")]["ok"] is True
    tls = got[("api-tls", "10.50.10.10:6444")]
    assert tls["ok"] is False and tls["timed_out"] is True
    assert got[("api-tcp", "10.50.10.10:6445")]["detail"] == "connect: connection refused"
    dns = got[("dns", "kubernetes.x")]
    assert dns["ok"] is False and dns["timed_out"] is True


def _raise_on_agents(original):  # type: ignore[no-untyped-def]
    def run_one(spec: str, command):  # type: ignore[no-untyped-def]
        if command.argv[0] == "nsenter":
            raise KeyboardInterrupt
        return original(spec, command)

    return run_one


def test_ctrl_c_stops_the_far_end(seed_003: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pod_probes, "_run_one", _raise_on_agents(pod_probes._run_one))
    with pytest.raises(KeyboardInterrupt):
        probe(seed_003)
    assert listening(UPSTREAM) == ""


def test_sigterm_ends_the_run_like_ctrl_c(seed_003: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = pod_probes._run_one

    def slow_agents(spec: str, command):  # type: ignore[no-untyped-def]
        if command.argv[0] == "nsenter":
            os.kill(os.getpid(), signal.SIGTERM)
        return original(spec, command)

    monkeypatch.setattr(pod_probes, "_run_one", slow_agents)
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        probe(seed_003)
    assert signal.getsignal(signal.SIGTERM) is previous
    assert listening(UPSTREAM) == ""


# --- the scenario's own lifecycle: pods and upstream go with it, also after a crash ----------

CRASH_SCRIPT = """
import os, signal, sys
from cnidoctor.lab import podnet, system
real, count, stop = system.run, [0], int(sys.argv[2])
def run(*args, **kwargs):
    count[0] += 1
    if count[0] == stop:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
build = podnet.PodNetwork.build
def counted(self, scenario, state):
    system.run = run  # count only the extras' steps: pods, upstream, NAT
    build(self, scenario, state)
podnet.PodNetwork.build = counted
from cnidoctor import lab
lab.up(sys.argv[1])
"""


def leftovers(name: str) -> list[str]:
    scenario = SCENARIOS[name]
    found = [n for n in scenario.netns_names if os.path.exists(f"/run/netns/{n}")]
    return found + [
        str(p) for p in (LAB_DIR / name, MOUNT_DIR / scenario.nodes[0].netns) if p.exists()
    ]


@pytest.mark.parametrize("step", [12, 50])
def test_down_cleans_up_after_an_up_killed_while_building_pods(
    step: int, lab_session: LabSession
) -> None:
    """SIGKILL while the pods, the upstream and the NAT rules are being made (step N of the
    extras): the recorded state lets `down` remove them too."""
    lab_session.release("seed-003")
    done = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, "seed-003", str(step)], timeout=60, check=False
    )
    assert done.returncode == -9
    try:
        assert any(n.endswith(("-up", "-app", "-dns")) for n in leftovers("seed-003"))
    finally:
        lab.down("seed-003")
    assert leftovers("seed-003") == []


# --- end to end (each builds and removes its scenario itself) -------------------------------


def test_lab_run_seed_003_probe_names_the_missing_snat_on_the_workers(
    lab_session: LabSession, capsys: pytest.CaptureFixture[str]
) -> None:
    lab_session.release("seed-003")
    status, report = lab_run(capsys, "seed-003", "--probe")
    findings = report["findings"]
    assert isinstance(findings, list)
    by_key = {(f["id"], tuple(f["nodes"])): f for f in findings}
    for worker, pod_ip in ((W1, "10.42.1.12"), (W2, "10.42.2.12")):
        snat = by_key[("egress.no-snat", (worker,))]
        assert snat["severity"] == "critical"
        assert snat["root_cause"] is True and snat["caused_by"] == []
        assert f"the far end saw {pod_ip}" in snat["evidence"][0]
        dns = by_key[("dns.failure", (worker,))]
        assert dns["caused_by"] == [f"egress.no-snat@{worker}"]
        assert "ghcr.io" in " ".join(dns["evidence"])
        for other in ("route.multiple-default", "iface.multi-nic-ambiguous"):
            assert (other, (worker,)) in by_key
    failing_on_cp = [
        f["id"]
        for f in findings
        if f["nodes"] == [CP] and f["id"] in ("egress.no-snat", "dns.failure", "api.unreachable")
    ]
    assert failing_on_cp == []
    summary = by_key[("probe.summary", (CP, W1, W2))]
    cp_line = next(line for line in summary["evidence"] if line.startswith(CP))
    assert "FAILED" not in cp_line and "passed 9" in cp_line
    assert status == 1
    left = [n for n in SCENARIOS["seed-003"].netns_names if os.path.exists(f"/run/netns/{n}")]
    assert left == []


def test_lab_run_seed_003_fixed_is_clean(
    lab_session: LabSession, capsys: pytest.CaptureFixture[str]
) -> None:
    lab_session.release("seed-003-fixed")
    status, report = lab_run(capsys, "seed-003-fixed", "--probe")
    findings = report["findings"]
    assert isinstance(findings, list)
    loud = [(f["id"], f["nodes"]) for f in findings if f["severity"] in ("critical", "warning")]
    assert loud == []
    [summary] = [f for f in findings if f["id"] == "probe.summary"]
    assert summary["title"] == "pod probes passed on every probed node (3)"
    assert status == 0
