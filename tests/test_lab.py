"""The lab: scenario data (no root), and real namespaces built and torn down (root)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from cnidoctor import lab
from cnidoctor.errors import CnidoctorError, UsageError
from cnidoctor.inventory import load_inventory
from cnidoctor.lab import files, system
from cnidoctor.lab.model import NodeSpec, Scenario, Segment, Uplink
from cnidoctor.lab.scenarios import SCENARIOS
from cnidoctor.lab.state import LAB_DIR, MOUNT_DIR, scenarios_with_state
from cnidoctor.lab.system import LabError
from cnidoctor.transports import Command, transport_for
from conftest import LabSession, requires_root

SEED = SCENARIOS["seed-000"]
HEALTHY = SCENARIOS["healthy-node"]
WORKER = next(n for n in SEED.nodes if n.name == "donovan-xps-8930")
SEED_CP = next(n for n in SEED.nodes if n.role == "control-plane")
HOST_BRIDGE_SYSCTL = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")

# -- scenario data (no root) ---------------------------------------------------------------


def test_list_scenarios_names_descriptions_and_incidents() -> None:
    infos = {info.name: info for info in lab.list_scenarios()}
    assert set(infos) >= {"healthy-node", "seed-000", "seed-001"}
    for seed in ("000", "001"):
        incident = infos[f"seed-{seed}"].incident
        assert incident is not None and incident.startswith(f"{seed}_")
    assert infos["healthy-node"].incident is None
    for info in infos.values():
        assert info.description and "\n" not in info.description


@pytest.mark.parametrize("scenario", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_scenario_names_fit_the_kernel_and_never_collide(scenario: Scenario) -> None:
    assert all(name.startswith(f"cnd-{scenario.tag}-") for name in scenario.netns_names)
    for node in scenario.nodes:
        for uplink in node.uplinks:
            assert len(uplink.ifname) <= 15
            assert len(scenario.switch_port(node, uplink)) <= 15
    other = [s for s in SCENARIOS.values() if s is not scenario]
    for s in other:
        assert not set(s.netns_names) & set(scenario.netns_names)


def test_seed_000_worker_has_the_incident_faults() -> None:
    assert WORKER.address == "192.168.1.34" and SEED_CP.address == "192.168.1.246"
    assert WORKER.ufw_enabled and not WORKER.br_netfilter
    assert "flannel" not in WORKER.cni_plugins and "portmap" in WORKER.cni_plugins
    defaults = {u.ifname: u.default_metric for u in WORKER.uplinks}
    assert defaults == {"enp4s0": 100, "wlp2s0": 600}
    assert SEED.cluster["pod_cidr"] == "10.244.0.0/16"
    assert SEED.cluster["service_cidr"] == "10.96.0.0/12"
    assert not SEED_CP.ufw_enabled and SEED_CP.br_netfilter and "flannel" in SEED_CP.cni_plugins


def one_node_scenario(netns: str, ifname: str) -> Scenario:
    return Scenario(
        name="bad",
        tag="bad",
        description="x",
        incident=None,
        segments=(Segment(name="lan", bridge="br-lan", gateway="10.0.0.1/24"),),
        nodes=(
            NodeSpec(
                name="n",
                netns=netns,
                role="worker",
                uplinks=(Uplink(ifname=ifname, segment="lan", address="10.0.0.2/24"),),
                pod_subnet="10.42.0.0/24",
            ),
        ),
    )


def test_scenario_with_too_long_interface_name_is_refused() -> None:
    one_node_scenario("cnd-bad-n", "eth0")  # the same scenario, well named, is fine
    with pytest.raises(ValueError, match="bad interface name"):
        one_node_scenario("cnd-bad-n", "a-very-long-ifname")


def test_scenario_with_foreign_namespace_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="must match"):
        one_node_scenario("node1", "eth0")


def test_flannel_files_follow_the_real_formats() -> None:
    env = files.subnet_env(WORKER, "10.244.0.0/16")
    assert env.splitlines() == [
        "FLANNEL_NETWORK=10.244.0.0/16",
        "FLANNEL_SUBNET=10.244.2.1/24",
        "FLANNEL_MTU=1450",
        "FLANNEL_IPMASQ=true",
    ]
    conf = json.loads(files.conflist_text())
    assert conf["name"] == "cbr0"
    assert [p["type"] for p in conf["plugins"]] == ["flannel", "portmap"]
    assert conf["plugins"][0]["delegate"] == {"hairpinMode": True, "isDefaultGateway": True}
    rules = files.flannel_rules(WORKER, "10.244.0.0/16")
    assert "-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4" in rules
    assert rules.count("COMMIT") == 2


def test_vtep_mac_is_stable_and_locally_administered() -> None:
    assert WORKER.vtep_mac == WORKER.vtep_mac
    assert WORKER.vtep_mac != SEED_CP.vtep_mac
    assert re.fullmatch(r"02(:[0-9a-f]{2}){5}", WORKER.vtep_mac)


def test_ufw_sysctl_keeps_only_per_namespace_keys() -> None:
    text = "# c\nnet/ipv4/conf/all/accept_redirects=0\nkernel/panic=1\n\nnet.ipv4.x=1\nvm/x=2\n"
    kept = "# c\nnet/ipv4/conf/all/accept_redirects=0\n\nnet.ipv4.x=1\n"
    assert files.net_only_sysctl(text) == kept


def test_without_module_hides_one_module_from_lsmod() -> None:
    modules = (
        "br_netfilter 32768 0 - Live 0x0\nbridge 311296 1 br_netfilter, Live 0x0\n"
        "overlay 151552 0 - Live 0x0\n"
    )
    masked = files.without_module(modules, "br_netfilter")
    assert [ln.split()[0] for ln in masked.splitlines()] == ["bridge", "overlay"]


def test_tar_stream_holds_only_files_with_their_modes() -> None:
    blob = files.tar_stream({"opt/cni/bin/bridge": ("#!/bin/sh\n", 0o755), "/a/b": ("x", 0o644)})
    with tarfile.open(fileobj=io.BytesIO(blob)) as archive:
        members = {m.name: m for m in archive.getmembers()}
    assert set(members) == {"opt/cni/bin/bridge", "a/b"}
    assert all(m.isfile() and m.uid == 0 for m in members.values())
    assert members["opt/cni/bin/bridge"].mode == 0o755


def test_unknown_scenario_is_one_clear_usage_error() -> None:
    for call in (lab.up, lab.down, lab.inventory_path):
        with pytest.raises(UsageError, match="unknown lab scenario 'nope'"):
            call("nope")


# -- real namespaces (root) ------------------------------------------------------------------


def node_exec(node: NodeSpec, *argv: str, check: bool = True) -> str:
    """Run a program inside a lab node, the way the netns: transport enters it."""
    mnt = MOUNT_DIR / node.netns
    done = subprocess.run(
        ["nsenter", f"--net=/run/netns/{node.netns}", f"--mount={mnt}", *argv],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    if check:
        assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done.stdout


def leftovers(scenario: Scenario) -> list[str]:
    """Whatever of the scenario is still on the machine: namespaces, mounts, files, state."""
    found = [f"netns {n}" for n in scenario.netns_names if os.path.exists(f"/run/netns/{n}")]
    watched = {str(MOUNT_DIR / n) for n in scenario.netns_names}
    watched |= {f"/run/netns/{n}" for n in scenario.netns_names}
    with open("/proc/mounts") as handle:
        for line in handle:
            point = line.split()[1]
            if point in watched:
                found.append(f"mount {point}")
    found += [f"file {p}" for p in watched if os.path.exists(p)]
    if (LAB_DIR / scenario.name).exists():
        found.append(f"state {LAB_DIR / scenario.name}")
    return found


def host_snapshot() -> dict[str, str]:
    """The host state the lab must never change."""

    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout

    return {
        "input": out("iptables", "-S", "INPUT"),
        "routes": out("ip", "route", "show"),
        "links": out("ip", "-br", "link"),
        "forward": Path("/proc/sys/net/ipv4/ip_forward").read_text(),
        "ufw.conf": Path("/etc/ufw/ufw.conf").read_text() if Path("/etc/ufw").is_dir() else "",
        "default-ufw": Path("/etc/default/ufw").read_text()
        if Path("/etc/default/ufw").is_file()
        else "",
        "run": " ".join(
            p
            for p in ("/run/ufw.lock", "/run/xtables.lock", "/run/flannel/subnet.env")
            if os.path.exists(p)
        ),
        "rancher": str(Path("/var/lib/rancher").exists()),
        "cni-bin": " ".join(sorted(os.listdir("/opt/cni/bin")))
        if Path("/opt/cni/bin").is_dir()
        else "",
    }


@requires_root
@pytest.mark.parametrize("scenario", [HEALTHY, SEED], ids=["healthy-node", "seed-000"])
def test_up_then_down_leaves_nothing_and_never_touches_the_host(
    scenario: Scenario, lab_session: LabSession
) -> None:
    lab_session.release(scenario.name)
    assert leftovers(scenario) == []
    before = host_snapshot()
    path = lab.up(scenario.name)
    try:
        assert path == lab.inventory_path(scenario.name)
        assert [f"netns {n}" for n in scenario.netns_names] == [
            f for f in leftovers(scenario) if f.startswith("netns")
        ]
        assert host_snapshot() == before
        with pytest.raises(UsageError, match="already up"):
            lab.up(scenario.name)
    finally:
        lab.down(scenario.name)
    assert leftovers(scenario) == []
    assert host_snapshot() == before
    with pytest.raises(UsageError, match="not up"):
        lab.inventory_path(scenario.name)


@requires_root
def test_the_last_lab_down_unmounts_the_mount_root_whichever_made_it(
    lab_session: LabSession,
) -> None:
    """Labs come down in any order, and a crashed run may have left the root mounted."""
    for name in scenarios_with_state():  # labs this session holds up
        lab_session.release(name)
    assert scenarios_with_state() == [], "a lab this session does not hold is up"
    lab.up(HEALTHY.name)
    try:
        lab.up(SEED.name)
        try:
            assert system.is_mounted(str(MOUNT_DIR))
        finally:
            lab.down(HEALTHY.name)  # the maker goes first
        assert system.is_mounted(str(MOUNT_DIR)), "the root went while seed-000 was up"
    finally:
        lab.down(SEED.name)
        lab.down(HEALTHY.name)
    assert not system.is_mounted(str(MOUNT_DIR))
    assert leftovers(SEED) == [] and leftovers(HEALTHY) == []


@requires_root
def test_down_when_nothing_is_up_is_quiet(lab_session: LabSession) -> None:
    lab_session.release("healthy-node")
    lab.down("healthy-node")
    lab.down("healthy-node")
    assert leftovers(HEALTHY) == []


CRASH_SCRIPT = """
import os, signal, sys
from cnidoctor.lab import system
real, count, stop = system.run, [0], int(sys.argv[2])
def run(*args, **kwargs):
    count[0] += 1
    if count[0] == stop:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
system.run = run
from cnidoctor import lab
lab.up(sys.argv[1])
"""


@requires_root
@pytest.mark.parametrize("step", [2, 30, 60, 82])
def test_down_cleans_up_after_an_up_killed_midway(step: int, lab_session: LabSession) -> None:
    """SIGKILL during up (no chance to roll back): the recorded state lets down finish."""
    lab_session.release("seed-000")
    done = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, "seed-000", str(step)], timeout=60, check=False
    )
    assert done.returncode == -9
    try:
        assert leftovers(SEED), "the crash left nothing: the test did not interrupt anything"
        with pytest.raises(UsageError, match="partly up"):
            lab.inventory_path("seed-000")
        with pytest.raises(UsageError, match="partly up"):
            lab.up("seed-000")
    finally:
        lab.down("seed-000")
    assert leftovers(SEED) == []


@requires_root
def test_a_failing_up_rolls_back_by_itself(
    monkeypatch: pytest.MonkeyPatch, lab_session: LabSession
) -> None:
    lab_session.release("seed-000")
    real, count = system.run, [0]

    def failing_run(*args: object, **kwargs: object) -> system.Ran:
        count[0] += 1
        if count[0] == 50:
            raise LabError("injected failure")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(system, "run", failing_run)
    with pytest.raises(CnidoctorError, match="injected failure"):
        lab.up("seed-000")
    monkeypatch.undo()
    assert leftovers(SEED) == []


@requires_root
def test_up_refuses_a_namespace_the_lab_did_not_make(lab_session: LabSession) -> None:
    lab_session.release("healthy-node")
    foreign = HEALTHY.nodes[0].netns
    subprocess.run(["ip", "netns", "add", foreign], check=True, timeout=10)
    try:
        with pytest.raises(UsageError, match=f"{foreign} exists but was not made by the lab"):
            lab.up("healthy-node")
        assert os.path.exists(f"/run/netns/{foreign}"), "up removed a namespace it did not make"
        assert not (LAB_DIR / "healthy-node").exists()
    finally:
        subprocess.run(["ip", "netns", "delete", foreign], check=False, timeout=10)
    assert leftovers(HEALTHY) == []


@requires_root
def test_inventory_is_the_contract_format(lab_session: LabSession) -> None:
    inventory = load_inventory(lab_session.up("seed-000"))
    assert inventory.cluster.pod_cidr == "10.244.0.0/16"
    assert inventory.cluster.service_cidr == "10.96.0.0/12"
    assert inventory.cluster.cni == "flannel"
    nodes = {n.name: n for n in inventory.nodes}
    assert nodes["donovan-xps-8930"].via == "netns:cnd-s000-w1"
    assert nodes["donovan-xps-8930"].address == "192.168.1.34"
    assert nodes["donovan-xps-8930"].role == "worker"
    assert nodes["donovan-optiplex-9020m"].role == "control-plane"


@requires_root
def test_seed_000_worker_has_ufw_input_drop(lab_session: LabSession) -> None:
    lab_session.up("seed-000")
    rules = node_exec(WORKER, "iptables", "-S", "INPUT")
    assert "-P INPUT DROP" in rules.splitlines()
    assert "-A INPUT -j ufw-before-input" in rules
    assert "ENABLED=yes" in node_exec(WORKER, "cat", "/etc/ufw/ufw.conf")
    status = node_exec(WORKER, "ufw", "status", "verbose")
    assert "Status: active" in status and "deny (incoming)" in status
    assert "10250" not in status and "6443" not in status
    assert "ENABLED=yes" not in Path("/etc/ufw/ufw.conf").read_text(), "ufw leaked to the host"


@requires_root
def test_seed_000_worker_lacks_br_netfilter_but_the_host_has_it(lab_session: LabSession) -> None:
    lab_session.up("seed-000")
    assert HOST_BRIDGE_SYSCTL.exists(), "host must keep br_netfilter"
    probe = node_exec(WORKER, "cat", str(HOST_BRIDGE_SYSCTL), check=False)
    assert probe == ""
    assert node_exec(WORKER, "ls", "/proc/sys/net/bridge") == ""
    assert node_exec(SEED_CP, "cat", str(HOST_BRIDGE_SYSCTL)).strip() == "1"
    assert HOST_BRIDGE_SYSCTL.exists()


@requires_root
def test_seed_000_worker_has_two_default_routes(lab_session: LabSession) -> None:
    lab_session.up("seed-000")
    routes = json.loads(node_exec(WORKER, "ip", "-j", "route", "show", "default"))
    assert sorted((r["dev"], r["metric"], r["gateway"]) for r in routes) == [
        ("enp4s0", 100, "192.168.1.1"),
        ("wlp2s0", 600, "192.168.50.1"),
    ]
    cp_routes = json.loads(node_exec(SEED_CP, "ip", "-j", "route", "show", "default"))
    assert [r["dev"] for r in cp_routes] == ["eno1"]


@requires_root
def test_seed_000_worker_cni_bin_lacks_flannel(lab_session: LabSession) -> None:
    lab_session.up("seed-000")
    listing = node_exec(WORKER, "ls", "/opt/cni/bin").split()
    assert "flannel" not in listing
    assert {"bridge", "portmap", "host-local", "loopback"} <= set(listing)
    conf = json.loads(node_exec(WORKER, "cat", "/etc/cni/net.d/10-flannel.conflist"))
    assert conf["plugins"][0]["type"] == "flannel"
    assert "flannel" in node_exec(SEED_CP, "ls", "/opt/cni/bin").split()
    version = node_exec(SEED_CP, "env", "CNI_COMMAND=VERSION", "/opt/cni/bin/flannel")
    assert json.loads(version)["cniVersion"] == "1.0.0"


@requires_root
def test_seed_000_nodes_reach_each_other_over_the_segment(lab_session: LabSession) -> None:
    lab_session.up("seed-000")
    node_exec(SEED_CP, "ping", "-c", "1", "-W", "2", WORKER.address)
    fdb = node_exec(SEED_CP, "bridge", "fdb", "show", "dev", "flannel.1")
    assert f"{WORKER.vtep_mac} dst {WORKER.address}" in fdb
    link = json.loads(node_exec(WORKER, "ip", "-j", "-d", "link", "show", "flannel.1"))[0]
    vxlan = link["linkinfo"]["info_data"]
    assert (vxlan["id"], vxlan["port"], vxlan["local"], link["mtu"]) == (
        1,
        8472,
        WORKER.address,
        1450,
    )
    assert vxlan["learning"] is False
    assert json.loads(node_exec(WORKER, "ip", "-j", "link", "show", "enp4s0"))[0]["mtu"] == 1500


@requires_root
def test_healthy_node_forwards_and_has_flannel_state(lab_session: LabSession) -> None:
    lab_session.up("healthy-node")
    node = HEALTHY.nodes[0]
    sysctl = node_exec(
        node, "sysctl", "-n", "net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables"
    )
    assert sysctl.split() == ["1", "1"]
    assert "-P INPUT ACCEPT" in node_exec(node, "iptables", "-S", "INPUT")
    assert "ufw" not in node_exec(node, "iptables-save")
    assert "FLANNEL_SUBNET=10.42.0.1/24" in node_exec(node, "cat", "/run/flannel/subnet.env")
    addrs = json.loads(node_exec(node, "ip", "-j", "addr", "show", "cni0"))[0]["addr_info"]
    assert [(a["local"], a["prefixlen"]) for a in addrs if a["family"] == "inet"] == [
        ("10.42.0.1", 24)
    ]
    routes = json.loads(node_exec(node, "ip", "-j", "route", "show", "default"))
    assert [(r["dev"], r["gateway"]) for r in routes] == [("eth0", "10.10.0.1")]
    assert node_exec(node, "ls", "-A", "/var/lib/rancher") == ""
    offloads = node_exec(node, "ethtool", "-k", "flannel.1")
    assert "tx-checksum-ip-generic: off" in offloads, "healthy nodes apply flannel's workaround"
    assert not Path("/var/lib/rancher").exists() or Path("/var/lib/rancher").is_dir()


@requires_root
def test_the_netns_transport_sees_node_private_files(lab_session: LabSession) -> None:
    lab_session.up("seed-000")
    outcome = transport_for(f"netns:{WORKER.netns}").run_batch(
        [
            Command(("cat", "/run/flannel/subnet.env")),
            Command(("ls", "/opt/cni/bin")),
            Command(("ip", "-j", "route", "show", "default")),
        ]
    )
    env, plugins, routes = outcome.results
    assert env.ok and "FLANNEL_SUBNET=10.244.2.1/24" in env.stdout
    host_env = Path("/run/flannel/subnet.env")
    assert not host_env.exists() or "10.244.2.1/24" not in host_env.read_text()
    assert "flannel" not in plugins.stdout.split()
    assert len(json.loads(routes.stdout)) == 2
