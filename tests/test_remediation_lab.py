"""`cnidoctor fix --apply` and `guard` against the lab (root): what a plan fixes, the risk
gates, a second run that changes nothing, runs that stop midway, the guard installed
through a node's transport. Every test builds its own scenario and takes it down again.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from cnidoctor import lab
from cnidoctor.cli import main
from cnidoctor.diagnose import Target, analyse_full, collect_all, targets_from_inventory
from cnidoctor.inventory import load_inventory
from cnidoctor.lab.scenarios import SCENARIOS
from cnidoctor.remediation import StepState, build_plan, guard
from cnidoctor.remediation.apply import Applier, ApplyOptions
from cnidoctor.remediation.command import FixInput, install_guard, run_fix
from cnidoctor.rules import all_rules
from conftest import LabSession, requires_root

pytestmark = requires_root

WORKER = "donovan-xps-8930"
#: what `fix` can clear on seed-000 (route.multiple-default and the NIC choice are manual)
SEED_000_FIXABLE = {
    f"firewall.host-firewall-active@{WORKER}",
    f"firewall.input-drop-blocks-cluster-ports@{WORKER}",
    f"kernel.br-netfilter-missing@{WORKER}",
    f"cni.binaries-missing@{WORKER}",
}
#: what a step may change on a node: rulesets (without packet counters), routes, sysctls,
#: the files fix writes
FINGERPRINT = (
    "{ iptables-save; ip6tables-save; } | grep -v '^#' | sed 's/\\[[0-9]*:[0-9]*\\]$//'; "
    "ip route; "
    "cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>&1; "
    "ls -liR --time-style=full-iso /etc/modules-load.d /etc/sysctl.d /opt/cni/bin /etc/ufw "
    "/run/flannel /etc/systemd/system /usr/local/sbin 2>&1; "
    "cat /etc/modules-load.d/* /etc/sysctl.d/* /etc/ufw/ufw.conf /run/flannel/* 2>&1; true"
)


def netns(scenario: str, node: str) -> str:
    return next(n.netns for n in SCENARIOS[scenario].nodes if n.name == node)


def in_node(scenario: str, node: str, script: str, data: str | None = None) -> str:
    ns = netns(scenario, node)
    argv = ["nsenter", f"--net=/run/netns/{ns}", f"--mount=/run/cnidoctor/mnt/{ns}"]
    done = subprocess.run(
        [*argv, "sh", "-c", script], input=data, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def fresh(session: LabSession, name: str) -> Iterator[Path]:
    session.release(name)
    lab.down(name)
    inventory = lab.up(name)
    try:
        yield inventory
    finally:
        lab.down(name)


@pytest.fixture
def seed_000(lab_session: LabSession) -> Iterator[Path]:
    yield from fresh(lab_session, "seed-000")


@pytest.fixture
def seed_001(lab_session: LabSession) -> Iterator[Path]:
    yield from fresh(lab_session, "seed-001")


def args(**kwargs: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "apply": True,
        "allow_disruptive": False,
        "yes": False,
        "format": "json",
        "fail_on": "critical",
        "quiet": True,
    }
    values.update(kwargs)
    return argparse.Namespace(**values)


def fix(
    inventory: Path,
    capsys: pytest.CaptureFixture[str],
    confirm: object = None,
    **kwargs: object,
) -> tuple[int, dict]:
    """`fix --apply` on a lab inventory without its (absent) API, as JSON."""
    loaded = load_inventory(inventory)
    source = FixInput(targets_from_inventory(loaded), loaded.cluster)
    capsys.readouterr()
    status = run_fix(source, args(**kwargs), Console(file=io.StringIO()), confirm)  # type: ignore[arg-type]
    return status, json.loads(capsys.readouterr().out)


def states(plan: dict) -> dict[str, str]:
    return {s["title"]: s["state"] for s in plan["steps"]}


def test_seed_000_apply_clears_what_the_plan_can_and_a_second_run_changes_nothing(
    seed_000: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host_files = sorted(p.name for p in Path("/etc/modules-load.d").iterdir())
    status, plan = fix(seed_000, capsys, allow_disruptive=True, yes=True)
    done = [s for s in plan["steps"] if s["state"] == "done"]
    assert [s["number"] for s in done] == [1, 2, 3]
    assert {k for s in done for k in s["fixes"]} == SEED_000_FIXABLE
    remaining = {f["id"] + "@" + ",".join(f["nodes"]) for f in plan["remaining"]}
    assert not remaining & SEED_000_FIXABLE
    assert f"route.multiple-default@{WORKER}" in remaining, "a manual step's finding stays"
    assert {f["severity"] for f in plan["remaining"]} <= {"warning", "info"}
    assert status == 0, "only warnings remain, below --fail-on critical"
    # manual steps never run: both default routes are still there
    assert in_node("seed-000", WORKER, "ip route show default").count("default") == 2
    assert in_node("seed-000", WORKER, "cat /etc/modules-load.d/k8s.conf") == "br_netfilter\n"
    assert sorted(p.name for p in Path("/etc/modules-load.d").iterdir()) == host_files

    before = {n: in_node("seed-000", n, FINGERPRINT) for n in (WORKER, "donovan-optiplex-9020m")}
    status, again = fix(seed_000, capsys, allow_disruptive=True, yes=True)
    assert status == 0
    assert {s["risk"] for s in again["steps"]} == {"manual"}
    assert {s["state"] for s in again["steps"]} == {"manual"}
    after = {n: in_node("seed-000", n, FINGERPRINT) for n in before}
    assert after == before


def test_disruptive_steps_need_the_flag_and_a_confirmation(
    seed_000: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, plan = fix(seed_000, capsys)
    ufw = plan["steps"][0]
    assert ufw["risk"] == "disruptive" and ufw["state"] == "refused"
    assert "--allow-disruptive" in ufw["detail"]
    assert [s["state"] for s in plan["steps"][1:3]] == ["done", "done"]
    assert {s["state"] for s in plan["steps"][3:]} == {"manual"}
    assert "ENABLED=yes" in in_node("seed-000", WORKER, "cat /etc/ufw/ufw.conf")
    assert status == 1, "the firewall's critical finding remains"

    asked: list[tuple[str, list[int]]] = []

    def no(node: str, steps: list) -> bool:  # type: ignore[type-arg]
        asked.append((node, [s.number for s in steps]))
        return False

    status, plan = fix(seed_000, capsys, confirm=no, allow_disruptive=True)
    assert asked == [(WORKER, [1])], "asked once for the node, listing its disruptive steps"
    assert plan["steps"][0]["state"] == "declined"
    assert "ENABLED=yes" in in_node("seed-000", WORKER, "cat /etc/ufw/ufw.conf")
    assert status == 1

    # without --yes and without a terminal to ask on, nothing disruptive runs either
    status, plan = fix(seed_000, capsys, allow_disruptive=True)
    assert plan["steps"][0]["state"] == "declined"
    assert "ENABLED=yes" in in_node("seed-000", WORKER, "cat /etc/ufw/ufw.conf")


def test_a_command_that_fails_stops_the_run_and_prints_the_state(
    seed_000: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    in_node("seed-000", WORKER, "mount -o remount,ro /etc/modules-load.d")
    monkeypatch.setenv("HOME", "/nonexistent")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    status = main(
        ["fix", "--inventory", str(seed_000), "--apply", "--allow-disruptive", "--yes", "-q"]
    )
    out = capsys.readouterr().out
    assert status == 2
    assert "Stopped at step 2: donovan-xps-8930: stopped at `cnd_ensure_line " in out
    assert "2 of 5 commands done" in out
    assert "not run: the run stopped at step 2" in out  # the plugin step
    undo = out[out.index("To undo what was done") :]
    assert "step 1: ufw --force enable" in undo
    assert not in_node("seed-000", WORKER, "ls /opt/cni/bin").count("flannel")


def test_a_node_that_is_gone_stops_the_run(
    seed_000: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loaded = load_inventory(seed_000)
    targets = targets_from_inventory(loaded)
    rules = all_rules()
    collections, kube = collect_all(targets, rules)
    plan = build_plan(analyse_full(collections, targets, loaded.cluster, rules, kube), targets)
    gone = [
        Target(t.name, "netns:cnd-i6-gone", t.address, t.role) if t.name == WORKER else t
        for t in targets
    ]
    outcome = Applier(plan, gone, loaded.cluster, rules, collections, kube, ApplyOptions()).run()
    assert outcome.failed and outcome.stopped_at == 2
    step = plan.steps[1]
    assert step.state is StepState.FAILED
    assert "no network namespace 'cnd-i6-gone'" in (step.detail or "")
    assert plan.steps[2].state is StepState.PENDING


def test_seed_001_apply_rebuilds_subnet_env_on_the_rebooted_nodes_and_says_what_remains(
    seed_001: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samwise = in_node("seed-001", "samwise", FINGERPRINT)
    status = main(
        ["fix", "--inventory", str(seed_001), "--apply", "--allow-disruptive", "--yes", "-q"]
    )
    out = capsys.readouterr().out
    assert status == 1
    for name, subnet in (("boromir", "10.42.0.1/24"), ("theoden", "10.42.2.1/24")):
        assert in_node("seed-001", name, "cat /run/flannel/subnet.env") == (
            f"FLANNEL_NETWORK=10.42.0.0/16\nFLANNEL_SUBNET={subnet}\n"
            "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
        )
        assert in_node("seed-001", name, "stat -c %a /run/flannel/subnet.env") == "644\n"
    assert in_node("seed-001", "samwise", FINGERPRINT) == samwise
    remains = out[out.index("What remains:") :]
    assert "restart k3s on boromir" in remains and "restart k3s on theoden" in remains
    assert "flannel.subnet-env-missing" not in out[out.index("Still reported") :]

    status = main(["fix", "--inventory", str(seed_001), "--apply", "--format", "json"])
    plan = json.loads(capsys.readouterr().out)
    assert status == 1
    assert not [s for s in plan["steps"] if s["state"] == "done"], "nothing left to change"


FAKE_SYSTEMCTL = r"""#!/bin/sh
# test stand-in for systemctl inside a lab node: logs calls, keeps unit state in /run
echo "$*" >> /run/fake-systemctl.log
state=/run/fake-systemd
mkdir -p "$state"
verb=$1
shift
rc=0
for u in "$@"; do
  case "$u" in -*) continue ;; esac
  case "$verb" in
    is-enabled) [ -e "$state/enabled.$u" ] || rc=1 ;;
    enable) touch "$state/enabled.$u" ;;
    is-active) [ -e "$state/active.$u" ] || rc=1 ;;
    start) touch "$state/active.$u" ;;
  esac
done
exit $rc
"""


def test_guard_installs_through_the_transport_once_and_restores_after_a_reboot(
    seed_001: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = "samwise"
    in_node(
        "seed-001",
        node,
        "mkdir -p /run/systemd/system && cat > /usr/local/sbin/systemctl "
        "&& chmod 755 /usr/local/sbin/systemctl",
        data=FAKE_SYSTEMCTL,
    )
    spec = f"netns:{netns('seed-001', node)}"
    live = in_node("seed-001", node, "cat /run/flannel/subnet.env")
    assert install_guard(spec, guard.GuardSettings()) == 0
    out = capsys.readouterr().out
    assert f"guard flannel-subnet-env installed on {spec}" in out
    assert "expects FLANNEL_SUBNET=10.42.1.1/24, FLANNEL_NETWORK=10.42.0.0/16" in out
    modes = in_node(
        "seed-001",
        node,
        "stat -c '%a %n' /usr/local/sbin/cnidoctor-flannel-subnet-env "
        "/etc/systemd/system/cnidoctor-flannel-*",
    )
    assert modes.splitlines() == [
        "755 /usr/local/sbin/cnidoctor-flannel-subnet-env",
        "644 /etc/systemd/system/cnidoctor-flannel-backup.path",
        "644 /etc/systemd/system/cnidoctor-flannel-backup.service",
        "644 /etc/systemd/system/cnidoctor-flannel-restore.service",
    ]
    assert not list(Path("/etc/systemd/system").glob("cnidoctor-*")), "the host is untouched"
    assert in_node("seed-001", node, "cat /var/lib/rancher/k3s/flannel-subnet.env") == live
    log = in_node("seed-001", node, "cat /run/fake-systemctl.log").splitlines()
    assert "daemon-reload" in log
    assert "enable --quiet cnidoctor-flannel-restore.service" in log
    assert "start cnidoctor-flannel-backup.path" in log

    assert install_guard(spec, guard.GuardSettings()) == 0
    assert "already in place" in capsys.readouterr().out
    again = in_node("seed-001", node, "cat /run/fake-systemctl.log").splitlines()
    assert [c for c in again[len(log) :] if not c.startswith("is-")] == []

    # a reboot empties /run: the restore unit's script puts the file back
    in_node("seed-001", node, "rm /run/flannel/subnet.env")
    in_node("seed-001", node, "/usr/local/sbin/cnidoctor-flannel-subnet-env restore")
    assert in_node("seed-001", node, "cat /run/flannel/subnet.env") == live


def test_stale_rules_step_removes_exactly_those_rules_and_its_undo_puts_them_back() -> None:
    """In a scratch namespace: the captured stale-cni ruleset, the step, then its undo."""
    import os

    from cnidoctor.models import ClusterConfig
    from cnidoctor.remediation.model import Action
    from cnidoctor.remediation.shell import step_script
    from cnidoctor.transports import Command, transport_for
    from helpers import DATA
    from test_remediation import stale_plan

    name = f"cnd-i6-ipt-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:

        def in_ns(*argv: str, data: str | None = None) -> str:
            done = subprocess.run(
                ["nsenter", f"--net=/run/netns/{name}", *argv],
                input=data,
                capture_output=True,
                text=True,
                timeout=20,
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        def rules() -> list[str]:
            text = in_ns("iptables-nft-save", "-t", "filter")
            return [ln for ln in text.splitlines() if not ln.startswith("#")]

        in_ns("iptables-nft-restore", data=(DATA / "iptables/stale-cni.nft-save.txt").read_text())
        before = rules()
        [step] = stale_plan(ClusterConfig(cni="flannel", pod_cidr="10.42.0.0/16")).steps
        transport = transport_for(f"netns:{name}")
        script = step_script(step.actions)
        assert transport.run_batch([Command(("sh", "-c", script), 60)]).results[0].ok
        after = rules()
        stale = ("cali", "CILIUM")
        assert after == [ln for ln in before if not any(word in ln for word in stale)]
        assert '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD' in after
        # a second run finds nothing to delete and changes nothing
        assert transport.run_batch([Command(("sh", "-c", script), 60)]).results[0].ok
        assert rules() == after
        undo = step_script([Action(run=line) for line in step.undo])
        assert transport.run_batch([Command(("sh", "-c", undo), 60)]).results[0].ok
        assert rules() == before
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, timeout=10)
