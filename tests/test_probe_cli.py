"""`cnidoctor probe` and `--probe`: one-line errors, partial results, what the JSON says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnidoctor.cli import build_parser, main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(
        "cluster: {pod_cidr: 10.42.0.0/16, service_cidr: 10.43.0.0/16}\n"
        "nodes:\n"
        "  - {name: gone, via: 'netns:cnd-probe-does-not-exist'}\n"
    )
    return path


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--egress-url", "ftp://example.org/", "give an http:// or https:// URL with a host"),
        ("--egress-url", "http://h:99999/", "--egress-url"),
        ("--dns-name", "a..b", "not a DNS name"),
    ],
)
def test_bad_probe_targets_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], inventory: Path, flag: str, value: str, words: str
) -> None:
    status, out, err = run(capsys, "probe", "--inventory", str(inventory), flag, value)
    assert status == 2 and out == ""
    [line] = err.strip().splitlines()
    assert line.startswith("cnidoctor: error: ") and words in line


def test_probe_on_an_unreachable_node_is_a_result_not_a_crash(
    capsys: pytest.CaptureFixture[str], inventory: Path
) -> None:
    status, out, err = run(capsys, "probe", "--inventory", str(inventory), "--format", "json")
    assert status == 2
    report = json.loads(out)
    assert report["schema"] == "cnidoctor/v1"
    assert [n["collected"] for n in report["nodes"]] == [False]
    assert "Traceback" not in err


def test_probe_flags_on_diagnose_and_lab_run() -> None:
    parser = build_parser()
    args = parser.parse_args(["diagnose", "--inventory", "x", "--probe", "--dns-name", "ghcr.io"])
    assert args.probe and args.dns_name == ["ghcr.io"] and args.egress_url is None
    args = parser.parse_args(["lab", "run", "seed-003", "--probe", "--egress-url", "http://e/"])
    assert args.probe and args.egress_url == "http://e/"
    assert parser.parse_args(["probe"]).probe is True
    assert parser.parse_args(["diagnose"]).probe is False


def test_probe_on_a_snapshot_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "diagnose", "--from", "snap.json", "--probe")
    assert status == 2
    assert err.strip() == (
        "cnidoctor: error: --probe needs live nodes: it cannot run on a snapshot (--from)"
    )
