"""`cnidoctor explain` output: text names the failure mode and quotes the match, JSON follows the
contract, an unknown message is said to be unknown, and input errors are one clear line."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from cnidoctor.catalog import CATALOG, KNOWN_IDS
from cnidoctor.errors import UsageError
from cnidoctor.reports.explain import (
    UNKNOWN,
    describe,
    explain_json,
    read_explain_input,
    run_explain,
)
from cnidoctor.rules import all_rules
from cnidoctor.signatures import explain

BR_NETFILTER = (
    "Failed to check br_netfilter: stat /proc/sys/net/bridge/bridge-nf-call-iptables: "
    "no such file or directory"
)
ETCD_PROBER = (
    '{"level":"warn","ts":"2021-01-07T12:16:46.416+0800","caller":"rafthttp/probing_status.go:70",'
    '"msg":"prober detected unhealthy status","round-tripper-name":"ROUND_TRIPPER_RAFT_MESSAGE",'
    '"remote-peer-id":"65526dc322192643","rtt":"6.251985ms",'
    '"error":"dial tcp 192.168.1.192:2380: i/o timeout"}'
)
SUBNET_MANAGER = (
    "E0412 02:59:43.027648       1 main.go:232] Failed to create SubnetManager: error retrieving "
    "pod spec for 'kube-system/kube-flannel-ds-p4rmd': Get https://10.68.0.1:443/api/v1/"
    "namespaces/kube-system/pods/kube-flannel-ds-p4rmd: dial tcp 10.68.0.1:443: i/o timeout"
)


def run(text: str, fmt: str = "text") -> tuple[int, str]:
    console = Console(file=StringIO(), width=100, color_system=None)
    status = run_explain(text, fmt, console)
    return status, console.file.getvalue()  # type: ignore[attr-defined]


def rule_for(failure_id: str):
    return next(rule for rule in all_rules() if rule.id == failure_id)


# --- text --------------------------------------------------------------------------------------


def test_text_names_the_rule_backed_failure_mode() -> None:
    status, out = run(BR_NETFILTER)
    rule = rule_for("kernel.br-netfilter-missing")
    assert status == 1
    assert "kernel.br-netfilter-missing" in out
    assert rule.title in out
    assert "matched: " + BR_NETFILTER in out
    assert rule.severity.value in out
    assert "modprobe br_netfilter" in out
    assert UNKNOWN not in out


def test_text_falls_back_to_the_catalog_for_ids_without_a_rule() -> None:
    """etcd.peer-unreachable is judged by the matrix's probes, not by a registered rule."""
    assert "etcd.peer-unreachable" not in {rule.id for rule in all_rules()}
    status, out = run(ETCD_PROBER)
    info = describe("etcd.peer-unreachable")
    assert status == 0  # no rule severity: counted as a warning, below the default critical
    assert "etcd.peer-unreachable" in out
    assert info.title in out and info.fix[0] in out
    assert "matched: prober detected unhealthy status" in out


def test_unknown_message_is_said_to_be_unknown() -> None:
    status, out = run("kernel: EXT4-fs (sda1): mounted filesystem with ordered data mode")
    assert status == 0
    assert out.strip() == UNKNOWN


def test_input_is_never_read_as_markup() -> None:
    line = '[bold red]x[/bold red] failed to find plugin "flannel" in path [/opt/cni/bin]'
    status, out = run(line)
    assert status == 1
    assert 'failed to find plugin "flannel" in path [' in out


def test_several_failure_modes_best_first_in_text() -> None:
    status, out = run(f"{SUBNET_MANAGER}\n{BR_NETFILTER}\n")
    assert status == 1
    assert "Recognised 2 failure modes" in out
    first, second = (m.id for m in explain(f"{SUBNET_MANAGER}\n{BR_NETFILTER}\n"))
    assert {first, second} == {"kernel.br-netfilter-missing", "api.unreachable"}
    assert out.index(first) < out.index(second)


# --- JSON --------------------------------------------------------------------------------------


def test_json_follows_the_contract() -> None:
    status, out = run(f"{SUBNET_MANAGER}\n{BR_NETFILTER}\n", "json")
    doc = json.loads(out)
    assert status == 1
    assert set(doc) == {"matches"}
    assert sorted(m["id"] for m in doc["matches"]) == [
        "api.unreachable",
        "kernel.br-netfilter-missing",
    ]
    for m in doc["matches"]:
        assert set(m) == {"id", "score", "matched"}
        assert 0 <= m["score"] <= 1
    scores = [m["score"] for m in doc["matches"]]
    assert scores == sorted(scores, reverse=True)
    by_id = {m["id"]: m["matched"] for m in doc["matches"]}
    assert by_id["kernel.br-netfilter-missing"] == BR_NETFILTER


def test_json_is_empty_when_nothing_is_known() -> None:
    status, out = run("all good", "json")
    assert status == 0
    assert json.loads(out) == {"matches": []}


def test_explain_json_mirrors_the_matches() -> None:
    matches = explain(BR_NETFILTER)
    assert explain_json(matches) == {
        "matches": [{"id": m.id, "score": m.score, "matched": m.matched} for m in matches]
    }


def test_markdown() -> None:
    status, out = run(BR_NETFILTER, "markdown")
    assert status == 1
    assert out.startswith("## cnidoctor explain: 1 failure mode")
    assert "### `kernel.br-netfilter-missing` (critical)" in out
    assert "```sh\nmodprobe br_netfilter" in out
    assert run("nothing", "markdown") == (0, f"**{UNKNOWN}**\n")


# --- descriptions -----------------------------------------------------------------------------


def test_describe_prefers_the_rule() -> None:
    rule = rule_for("cni.binaries-missing")
    info = describe("cni.binaries-missing")
    assert (info.title, info.explanation, info.severity) == (
        rule.title,
        rule.explanation,
        rule.severity,
    )


def test_describe_without_rules_uses_the_catalog() -> None:
    for failure_id, entry in CATALOG.items():
        info = describe(failure_id, rules=[])
        assert (info.title, info.explanation, info.fix) == (
            entry.title,
            entry.explanation,
            entry.fix,
        )
        assert info.severity is None


def test_describe_unknown_id_does_not_crash() -> None:
    info = describe("no.such-id", rules=[])
    assert info.title == "no.such-id" and info.fix == ()


def test_catalog_is_consistent_with_the_contract() -> None:
    assert len(KNOWN_IDS) == len(set(KNOWN_IDS)) == 43
    for entry in CATALOG.values():
        assert entry.id in KNOWN_IDS
        assert entry.title and entry.explanation and entry.fix
        assert all(cause in KNOWN_IDS and cause != entry.id for cause in entry.causes)


# --- input --------------------------------------------------------------------------------------


def test_read_message() -> None:
    assert read_explain_input("a message", None) == "a message"


def test_read_file(tmp_path: Path) -> None:
    log = tmp_path / "kubelet.log"
    log.write_bytes(BR_NETFILTER.encode() + b"\n\xff\xfe binary junk\n")
    text = read_explain_input(None, str(log))
    assert BR_NETFILTER in text and "\ufffd" in text
    assert run(text)[0] == 1  # br_netfilter: critical


def test_read_stdin() -> None:
    assert read_explain_input(None, "-", stdin=StringIO(BR_NETFILTER)) == BR_NETFILTER


@pytest.mark.parametrize(
    ("message", "file", "says"),
    [
        (None, "/nonexistent/cnidoctor/log.txt", "no such file"),
        ("x", "-", "not both"),
        (None, None, "needs a MESSAGE"),
    ],
)
def test_bad_input_is_one_line(message: str | None, file: str | None, says: str) -> None:
    with pytest.raises(UsageError) as info:
        read_explain_input(message, file)
    assert says in str(info.value) and "\n" not in str(info.value)


def test_directory_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"cannot read .*: "):
        read_explain_input(None, str(tmp_path))


def test_exit_status_follows_fail_on_like_every_command() -> None:
    """1 when a recognised failure mode is at or above --fail-on, as `diagnose` does."""
    critical, warning_only = BR_NETFILTER, ETCD_PROBER  # etcd.peer-unreachable: no rule -> warning
    for text, fail_on, expected in [
        (critical, "critical", 1),
        (warning_only, "critical", 0),
        (warning_only, "warning", 1),
        (critical, "never", 0),
        ("nothing to see", "warning", 0),
    ]:
        console = Console(file=StringIO(), width=100, color_system=None)
        assert run_explain(text, "json", console, fail_on) == expected, (text, fail_on)
