"""`cnidoctor fix` without root: plans from real lab snapshots, the shell helpers run in a
temp dir, the stale-rules step built from captured iptables-save output.

The snapshots under tests/data/remediation were taken from the lab scenarios seed-000 and
seed-001 (`cnidoctor snapshot --inventory $(cnidoctor lab up NAME | tail -1)`).
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from cnidoctor.cli import main
from cnidoctor.collectors.iptables import IptablesCollector
from cnidoctor.diagnose import analyse_full
from cnidoctor.models import ClusterConfig
from cnidoctor.remediation import Risk, build_plan
from cnidoctor.remediation.model import Action, Plan
from cnidoctor.remediation.render import render_markdown, render_script
from cnidoctor.remediation.shell import step_script
from cnidoctor.rules import all_rules
from cnidoctor.rules.iptables import StaleRules
from cnidoctor.snapshot import load_snapshot
from helpers import DATA, findings, node

SEED_000 = DATA / "remediation" / "seed-000.snapshot.json"
SEED_001 = DATA / "remediation" / "seed-001.snapshot.json"
WORKER = "donovan-xps-8930"


def plan_of(path: Path) -> Plan:
    snapshot = load_snapshot(path)
    targets = snapshot.target_list()
    analysis = analyse_full(
        snapshot.collections, targets, snapshot.cluster, all_rules(), snapshot.kube
    )
    return build_plan(analysis, targets)


def fix_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    status = main(["fix", *argv, "--format", "json"])
    return status, json.loads(capsys.readouterr().out)


# -- plans ------------------------------------------------------------------------------------


def test_seed_000_plan_is_ufw_then_br_netfilter_with_its_files_then_the_plugin(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, plan = fix_json(capsys, "--from", str(SEED_000))
    assert status == 1
    assert plan["schema"] == "cnidoctor/fix-v1" and plan["applied"] is False
    steps = [s for s in plan["steps"] if s["risk"] != "manual"]
    ufw, modules, plugin = steps
    assert [s["number"] for s in steps] == [1, 2, 3], "the runnable steps come first"
    assert ufw["risk"] == "disruptive" and ufw["node"] == WORKER
    assert ufw["fixes"] == [
        f"firewall.host-firewall-active@{WORKER}",
        f"firewall.input-drop-blocks-cluster-ports@{WORKER}",
    ]
    assert ufw["actions"][0]["run"] == "ufw disable"
    assert "ufw --force enable" in ufw["undo"][0]
    assert modules["risk"] == "safe" and modules["fixes"] == [
        f"kernel.br-netfilter-missing@{WORKER}"
    ]
    assert modules["actions"][0]["run"] == "modprobe br_netfilter"
    persist = [a["run"] for a in modules["persist"]]
    assert "cnd_ensure_line /etc/modules-load.d/k8s.conf br_netfilter" in persist
    assert (
        "cnd_ensure_sysctl /etc/sysctl.d/99-kubernetes.conf net.bridge.bridge-nf-call-iptables 1"
        in persist
    )
    assert plugin["risk"] == "safe" and plugin["fixes"] == [f"cni.binaries-missing@{WORKER}"]
    assert plugin["transfer"] == {
        "source_node": "donovan-optiplex-9020m",
        "source_spec": "netns:cnd-s000-cp",
        "source_path": "/opt/cni/bin/flannel",
        "dest_path": "/opt/cni/bin/flannel",
        "mode": "0755",
    }
    manual = {tuple(s["fixes"]) for s in plan["steps"] if s["risk"] == "manual"}
    assert (f"route.multiple-default@{WORKER}",) in manual


def test_the_ufw_step_removes_exactly_ufws_chains_and_never_flushes_wholesale() -> None:
    [ufw] = [s for s in plan_of(SEED_000).steps if s.key == "ufw"]
    runs = [a.run for a in ufw.actions]
    for run in runs[1:]:
        words = shlex.split(run)
        assert words[0] in ("cnd_ipt_delete", "cnd_ipt_flush_chain", "cnd_ipt_delete_chain")
        if words[0] == "cnd_ipt_delete":
            assert words[words.index("-j") + 1].startswith("ufw")  # a jump into ufw's chains
        else:
            assert words[3].startswith(("ufw-", "ufw6-"))  # one named chain of ufw's
    assert not any(" -F" in run or "--flush" in run for run in runs)
    assert any(w.startswith("ip6tables") for run in runs for w in shlex.split(run)[1:2])


def test_seed_001_plan_rebuilds_subnet_env_from_the_apis_podcidr_and_leaves_samwise() -> None:
    plan = plan_of(SEED_001)
    assert not [s for s in plan.steps if s.node == "samwise"]
    for name, subnet in (("boromir", "10.42.0.1/24"), ("theoden", "10.42.2.1/24")):
        write, keep, restart = [s for s in plan.steps if s.node == name][:3]
        assert write.risk is Risk.SAFE and write.fixes == [f"flannel.subnet-env-missing@{name}"]
        assert shlex.split(write.actions[0].run) == [
            "cnd_write",
            "/run/flannel/subnet.env",
            "0644",
            f"FLANNEL_NETWORK=10.42.0.0/16\nFLANNEL_SUBNET={subnet}\n"
            "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
        ]
        assert keep.key == "guard-subnet-env" and keep.risk is Risk.SAFE
        assert any(f"EXPECT_SUBNET={subnet}" in a.run for a in keep.actions)
        assert restart.risk is Risk.DISRUPTIVE
        assert restart.title.startswith(f"restart k3s on {name}")
        assert restart.actions[0].run == "systemctl restart k3s.service"
        assert restart.fixes == [f"flannel.vxlan-iface-missing@{name}"]
    api_side = [s for s in plan.steps if s.fixes and s.fixes[0].startswith("pods.stale-unknown")]
    assert api_side and all(s.risk is Risk.MANUAL for s in api_side)


def test_every_finding_of_the_report_has_a_step() -> None:
    for path in (SEED_000, SEED_001):
        plan = plan_of(path)
        assert {f.key for f in plan.findings} == {k for s in plan.steps for k in s.fixes}


# -- the command line --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--from", str(SEED_000), "--apply"],
        ["--from", str(SEED_000), "--allow-disruptive"],
        ["--from", str(SEED_000), "--yes"],
        ["--inventory", "/nonexistent/inventory.yaml"],
        ["--from", "/nonexistent/snap.json"],
    ],
)
def test_bad_fix_arguments_are_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fix", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_text_and_markdown_say_the_same_steps(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fix", "--from", str(SEED_001)]) == 1
    text = capsys.readouterr().out
    assert "restart k3s on boromir" in text and "FLANNEL_SUBNET=10.42.0.1/24" in text
    assert "more lines of this command" in text  # the guard's script is not printed whole
    markdown = render_markdown(plan_of(SEED_001))
    assert markdown.startswith("# Remediation plan for lab-seed-001: ")
    assert "## 3. restart k3s on boromir" in markdown


def test_script_format_is_valid_sh_with_node_sections_and_a_disruptive_gate(
    tmp_path: Path,
) -> None:
    for path in (SEED_000, SEED_001):
        script = render_script(plan_of(path))
        file = tmp_path / "fix.sh"
        file.write_text(script)
        checked = subprocess.run(["sh", "-n", str(file)], capture_output=True, timeout=10)
        assert checked.returncode == 0, checked.stderr
        assert "\nset -e\n" in script
    script = render_script(plan_of(SEED_000))
    assert f"# ==== {WORKER} (netns:cnd-s000-w1) ====" in script
    gate = script.index('if [ "$allow_disruptive" = 1 ]; then')
    assert gate < script.index("\nufw disable\n") < script.index("skipped step 1")
    assert "#    by hand: ip route del default via 192.168.50.1 dev wlp2s0 metric 600" in script


# -- the shell helpers, on real files in a temp dir ----------------------------------------------


def run_actions(*runs: str) -> subprocess.CompletedProcess[str]:
    script = step_script([Action(run=r) for r in runs])
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=10)


def test_cnd_write_is_atomic_and_does_nothing_when_the_file_is_right(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "subnet.env"
    line = shlex.join(["cnd_write", str(target), "0644", "A=1\nB=2\n"])
    first = run_actions(line)
    assert first.returncode == 0 and f"wrote {target}" in first.stdout
    assert target.read_text() == "A=1\nB=2\n" and oct(target.stat().st_mode)[-3:] == "644"
    before = target.stat()
    second = run_actions(line)
    assert second.returncode == 0 and f"unchanged {target}" in second.stdout
    after = target.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in target.parent.iterdir()) == ["subnet.env"], "no temp left"


def test_cnd_ensure_line_and_sysctl_append_once(tmp_path: Path) -> None:
    modules, sysctl = tmp_path / "k8s.conf", tmp_path / "99-kubernetes.conf"
    modules.write_text("overlay")  # no trailing newline: the new line must not glue on
    sysctl.write_text("net.bridge.bridge-nf-call-iptables=0\nnet.ipv4.ip_forward = 1\n")
    lines = [
        shlex.join(["cnd_ensure_line", str(modules), "br_netfilter"]),
        shlex.join(["cnd_ensure_sysctl", str(sysctl), "net.bridge.bridge-nf-call-iptables", "1"]),
        shlex.join(["cnd_ensure_sysctl", str(sysctl), "net.ipv4.ip_forward", "1"]),
    ]
    assert run_actions(*lines).returncode == 0
    assert modules.read_text() == "overlay\nbr_netfilter\n"
    assert sysctl.read_text() == (
        "net.bridge.bridge-nf-call-iptables=0\nnet.ipv4.ip_forward = 1\n"
        "net.bridge.bridge-nf-call-iptables = 1\n"
    )
    stamps = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in (modules, sysctl)]
    again = run_actions(*lines)
    assert again.returncode == 0 and "added" not in again.stdout
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in (modules, sysctl)] == stamps


def test_a_failing_action_stops_the_step_and_says_how_far_it_got(tmp_path: Path) -> None:
    done = run_actions("true", "false", f"touch {shlex.quote(str(tmp_path / 'never'))}")
    assert done.returncode != 0 and done.stdout.count("@@cnidoctor-step-done") == 1
    assert not (tmp_path / "never").exists()


# -- iptables.stale-rules: exactly the chains found ----------------------------------------------


def stale_plan(cluster: ClusterConfig) -> Plan:
    from cnidoctor.diagnose import Analysis
    from cnidoctor.models import ClusterSummary, Report
    from cnidoctor.rules.base import ClusterContext
    from test_firewall_rules import iptables

    context = node({IptablesCollector: iptables("stale-cni")}, cluster=cluster)
    found = findings(StaleRules, context)
    report = Report(cluster=ClusterSummary(cni=cluster.cni), nodes=[], findings=found)
    return build_plan(Analysis(report=report, context=ClusterContext([context], cluster)), [])


def test_stale_rules_step_deletes_only_the_other_cnis_jumps_and_chains() -> None:
    [step] = stale_plan(ClusterConfig(cni="flannel", pod_cidr="10.42.0.0/16")).steps
    assert step.risk is Risk.DISRUPTIVE
    words = [shlex.split(a.run) for a in step.actions]
    deleted_jumps = [w[w.index("-j") + 1] for w in words if w[0] == "cnd_ipt_delete"]
    assert sorted(deleted_jumps) == ["CILIUM_FORWARD", "CILIUM_INPUT", "cali-FORWARD", "cali-INPUT"]
    dropped = sorted(w[3] for w in words if w[0] == "cnd_ipt_delete_chain")
    assert dropped == [
        "CILIUM_FORWARD",
        "CILIUM_INPUT",
        "cali-FORWARD",
        "cali-INPUT",
        "cali-from-host-endpoint",
    ]
    assert not any("FLANNEL" in a.run for a in step.actions), "flannel's own chains stay"
    assert "iptables-nft -t filter -N CILIUM_FORWARD" in step.undo
    assert (
        "iptables-nft -t filter -I INPUT 1 -m comment --comment cali:Cz_u1IQiXIMmKD4c -j cali-INPUT"
        in step.undo
    )


def test_stale_rules_stay_manual_when_the_cni_is_not_configured() -> None:
    [step] = stale_plan(ClusterConfig()).steps
    assert step.risk is Risk.MANUAL and step.actions == []


def test_fix_exits_2_when_no_node_could_be_collected(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("nodes:\n  - {name: n, via: 'netns:cnd-i6-none'}\n")
    assert main(["fix", "--inventory", str(inventory), "--kubeconfig", "/dev/null"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnidoctor: error: no node could be collected")


def test_every_command_and_undo_line_of_the_plans_is_valid_sh(tmp_path: Path) -> None:
    for path in (SEED_000, SEED_001):
        for step in plan_of(path).steps:
            lines = [a.run for a in step.commands + step.verify] + [c.run for c in step.requires]
            file = tmp_path / f"step{step.number}.sh"
            file.write_text(step_script([Action(run=line) for line in lines + step.undo]))
            checked = subprocess.run(["sh", "-n", str(file)], capture_output=True, timeout=10)
            assert checked.returncode == 0, (step.title, checked.stderr)
