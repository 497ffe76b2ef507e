"""`cnidoctor guard flannel-subnet-env`: the units (checked by systemd-analyze where it is
installed), and the restore/backup script run for real on files in a temp dir."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cnidoctor.cli import main
from cnidoctor.errors import UsageError
from cnidoctor.remediation import guard

GOOD = (
    "FLANNEL_NETWORK=10.42.0.0/16\nFLANNEL_SUBNET=10.42.0.1/24\nFLANNEL_MTU=1450\n"
    "FLANNEL_IPMASQ=true\n"
)
OTHER_NODE = GOOD.replace("10.42.0.1/24", "10.42.1.1/24")


def settings(tmp_path: Path, **kwargs: object) -> guard.GuardSettings:
    values: dict[str, object] = {
        "pod_cidr": "10.42.0.0/24",
        "network": "10.42.0.0/16",
        "mtu": 1450,
        "live": str(tmp_path / "run" / "flannel" / "subnet.env"),
        "backup": str(tmp_path / "var" / "flannel-subnet.env"),
        "script_path": str(tmp_path / "cnidoctor-flannel-subnet-env"),
    }
    values.update(kwargs)
    return guard.GuardSettings(**values)  # type: ignore[arg-type]


def install(tmp_path: Path, conf: guard.GuardSettings) -> Path:
    """Write the script and units into tmp_path (never the host's /etc)."""
    for path, (text, mode) in guard.files(conf).items():
        target = tmp_path / Path(path).name
        target.write_text(text)
        target.chmod(mode)
    return tmp_path / Path(conf.script_path).name


def run(script: Path, verb: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(script), verb], capture_output=True, text=True, timeout=10)


def test_units_say_what_incident_001_asked_for(tmp_path: Path) -> None:
    units = guard.units(settings(tmp_path))
    restore = units[guard.RESTORE_UNIT]
    assert "Before=k3s.service k3s-agent.service kubelet.service" in restore
    assert "WantedBy=k3s.service k3s-agent.service kubelet.service" in restore
    assert "Type=oneshot" in restore and "restore\n" in restore
    path_unit = units[guard.BACKUP_PATH_UNIT]
    assert f"PathChanged={tmp_path}/run/flannel/subnet.env" in path_unit
    assert f"Unit={guard.BACKUP_UNIT}" in path_unit
    assert guard.files(settings(tmp_path))[str(tmp_path / "cnidoctor-flannel-subnet-env")][1] == (
        0o755
    )


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (apt-get install systemd)",
)
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    install(tmp_path, settings(tmp_path))
    units = [str(tmp_path / name) for name in guard.units(settings(tmp_path))]
    done = subprocess.run(
        ["systemd-analyze", "verify", *units], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    # verify reports parse problems as warnings with status 0: there must be none
    assert done.stdout.strip() == "" and done.stderr.strip() == "", done.stderr


def test_the_script_is_valid_sh_and_bakes_the_values_in(tmp_path: Path) -> None:
    script = install(tmp_path, settings(tmp_path))
    assert subprocess.run(["sh", "-n", str(script)], timeout=10).returncode == 0
    text = script.read_text()
    assert "EXPECT_SUBNET=10.42.0.1/24" in text and "EXPECT_NETWORK=10.42.0.0/16" in text


def test_restore_puts_the_persisted_copy_back_atomically(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    script = install(tmp_path, conf)
    Path(conf.backup).parent.mkdir(parents=True)
    Path(conf.backup).write_text(GOOD)
    done = run(script, "restore")
    assert done.returncode == 0, done.stderr
    live = Path(conf.live)
    assert live.read_text() == GOOD and oct(live.stat().st_mode)[-3:] == "644"
    assert os.listdir(live.parent) == ["subnet.env"], "no temp file left behind"
    stamp = (live.stat().st_ino, live.stat().st_mtime_ns)
    again = run(script, "restore")
    assert again.returncode == 0 and "nothing to do" in again.stderr
    assert (live.stat().st_ino, live.stat().st_mtime_ns) == stamp


def test_restore_rebuilds_from_the_podcidr_when_the_copy_is_another_nodes(
    tmp_path: Path,
) -> None:
    conf = settings(tmp_path)
    script = install(tmp_path, conf)
    Path(conf.backup).parent.mkdir(parents=True)
    Path(conf.backup).write_text(OTHER_NODE)
    done = run(script, "restore")
    assert done.returncode == 0 and "rebuilt" in done.stderr
    assert Path(conf.live).read_text() == GOOD


def test_restore_without_copy_or_podcidr_leaves_the_file_to_flannel(tmp_path: Path) -> None:
    conf = settings(tmp_path, pod_cidr=None, network=None)
    script = install(tmp_path, conf)
    done = run(script, "restore")
    assert done.returncode == 0 and "leaving" in done.stderr
    assert not Path(conf.live).exists()


def test_backup_persists_a_valid_file_once_and_refuses_a_wrong_one(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    script = install(tmp_path, conf)
    live, saved = Path(conf.live), Path(conf.backup)
    live.parent.mkdir(parents=True)
    live.write_text(OTHER_NODE)
    assert run(script, "backup").returncode == 0 and not saved.exists()
    live.write_text(GOOD)
    assert run(script, "backup").returncode == 0 and saved.read_text() == GOOD
    stamp = (saved.stat().st_ino, saved.stat().st_mtime_ns)
    assert run(script, "backup").returncode == 0
    assert (saved.stat().st_ino, saved.stat().st_mtime_ns) == stamp
    assert run(script, "bogus").returncode == 2


def test_print_systemd_and_nixos(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["guard", "flannel-subnet-env", "--pod-cidr", "10.42.2.0/24", "--cluster-cidr"]
    assert main([*argv, "10.42.0.0/16", "--print", "systemd"]) == 0
    out = capsys.readouterr().out
    assert "# ---- /etc/systemd/system/cnidoctor-flannel-restore.service (mode 0644)" in out
    assert "EXPECT_SUBNET=10.42.2.1/24" in out
    assert main([*argv, "10.42.0.0/16", "--print", "nixos"]) == 0
    nix = capsys.readouterr().out
    assert "systemd.services.cnidoctor-flannel-restore" in nix
    assert 'before = [ "k3s.service" "k3s-agent.service" "kubelet.service" ];' in nix
    assert 'ExecStart = "${guard} restore"' in nix
    # inside the Nix string, shell's ${...} and '' are escaped
    body = nix[nix.index("writeShellScript") : nix.index("tools = ")]
    assert "${" not in body.replace("''${", "")
    assert "''${1:-}" in body


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pod_cidr": "10.42.0.0/99"}, "pod CIDR '10.42.0.0/99' is not a CIDR"),
        ({"pod_cidr": "fd00::/64"}, "IPv4 flannel only"),
        ({"backup": "relative/path"}, "must be absolute"),
    ],
)
def test_bad_settings_are_one_clear_line(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("*", r"\*")):
        guard.GuardSettings(**kwargs)  # type: ignore[arg-type]


def test_guard_needs_a_node_or_print(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["guard", "flannel-subnet-env"]) == 2
    assert main(["guard", "flannel-subnet-env", "--node", "telnet://x"]) == 2
    assert "Traceback" not in capsys.readouterr().err
