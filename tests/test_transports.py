"""Transports against real shells, namespaces and a real sshd; the framing parser on bad input.

Namespace and SSH tests need root; they build everything in scratch namespaces named
`cndt-tr-*` (removed afterwards, also on failure) and never touch the root namespace.
sshd runs in a private mount namespace so its privilege-separation dir (/run/sshd) is
a tmpfs of its own, not a directory on the host.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnidoctor.errors import TransportError, UsageError
from cnidoctor.lab.sshd import (
    SERVER_ADDR,
    SERVER_DEV,
    SSH_PORT,
    NetnsSshTransport,
    SshPair,
    ssh_pair,
)
from cnidoctor.lab.system import LabError
from cnidoctor.transports import Command, transport_for
from cnidoctor.transports.base import build_script, parse_framed_output
from cnidoctor.transports.local import LocalTransport
from cnidoctor.transports.ssh import SshTarget, SshTransport

F = TypeVar("F", bound=Callable[..., Any])
B = "@@cnidoctor-00112233aabbccdd"
IS_ROOT = os.geteuid() == 0
_skip_unless_root = pytest.mark.skipif(not IS_ROOT, reason="needs root to build network namespaces")


def needs_root(test: F) -> F:
    """Marked `root` (deselect with -m 'not root') and skipped with a reason when not root."""
    return pytest.mark.root(_skip_unless_root(test))


SILENT_ADDR = "192.0.2.3"  # on the link, but no host answers for it


def frame(index: int, stdout: str, rc: int, stderr: str = "") -> str:
    """What the batch script prints for one command (see build_script)."""
    return f"{B} {index} OUT\n{stdout}\n{B} {index} RC {rc}\n{stderr}\n{B} {index} END\n"


def cmds(count: int) -> list[Command]:
    return [Command(("echo", str(i))) for i in range(count)]


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def scratch_name(tag: str) -> str:
    return f"cndt-tr-{os.getpid()}-{secrets.token_hex(2)}-{tag}"


# --- build_script / parse_framed_output --------------------------------------------------


def test_build_script_quotes_every_argument() -> None:
    script = build_script([Command(("echo", "$(reboot)", "a'b", "; rm -rf /"), timeout=2.4)], B)
    assert "timeout -k 1 2 echo '$(reboot)' 'a'\"'\"'b' '; rm -rf /' 2>\"$E\" </dev/null" in script
    assert f"printf '%s %d OUT\\n' {B} 0" in script


def test_parse_complete_frames() -> None:
    out = frame(0, "a\nb\n", 0) + frame(1, "", 3, "boom")
    results = parse_framed_output(out, cmds(2), B, None)
    assert [(r.stdout, r.rc, r.stderr, r.ok) for r in results] == [
        ("a\nb\n", 0, "", True),
        ("", 3, "boom", False),
    ]


def test_parse_truncated_output_marks_the_rest_not_run() -> None:
    out = frame(0, "done", 0) + f"{B} 1 OUT\nhalf of the out"
    results = parse_framed_output(out, cmds(3), B, "the node did not finish within 9s")
    assert results[0].ok and results[0].stdout == "done"
    assert results[1].rc is None and results[1].timed_out
    assert results[1].stdout == "half of the out"
    assert results[1].not_run == "the node did not finish within 9s"
    assert results[2].not_run == "the node did not finish within 9s" and not results[2].ok


def test_parse_truncated_in_stderr_keeps_the_exit_status() -> None:
    out = f"{B} 0 OUT\nx\n{B} 0 RC 2\npartial err"
    (result,) = parse_framed_output(out, cmds(1), B, "cut")
    assert (result.rc, result.stdout, result.stderr) == (2, "x", "partial err")


def test_parse_missing_rc_line_spoils_only_that_command() -> None:
    broken = f"{B} 0 OUT\nno rc follows\n{B} 0 END\n"
    results = parse_framed_output(broken + frame(1, "fine", 0), cmds(2), B, None)
    assert not results[0].ok and results[0].rc is None
    assert results[0].not_run == "the batch ended while this command ran"
    assert results[1].ok and results[1].stdout == "fine"


def test_parse_ignores_garbage_between_frames() -> None:
    out = "motd: welcome\n" + frame(0, "zero", 0) + "stray\n\x00junk\n" + frame(1, "one", 0)
    results = parse_framed_output(out, cmds(2), B, None)
    assert [r.stdout for r in results] == ["zero", "one"]
    assert all(r.ok for r in results)


@pytest.mark.parametrize(
    "tricky",
    [
        f"{B} 0 RC banana",  # the real boundary, but no exit status
        f"{B} 0 RC --5",
        f"{B} x OUT",
        f"{B} 9 END",
        f"{B}-other 0 RC 0",
        "@@cnidoctor-ffffffffffffffff 0 RC 0",  # another batch's boundary
        f"  {B} 0 END",
    ],
)
def test_parse_frame_like_text_in_output_is_just_output(tricky: str) -> None:
    stdout = f"before\n{tricky}\nafter"
    (result,) = parse_framed_output(frame(0, stdout, 0), cmds(1), B, None)
    assert result.ok and result.stdout == stdout


def test_parse_nothing_at_all() -> None:
    results = parse_framed_output("", cmds(2), B, None)
    assert [r.not_run for r in results] == ["the batch ended early"] * 2


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)


@settings(max_examples=150, deadline=None)
@given(outputs=st.lists(st.tuples(_text, st.integers(0, 255), _text), min_size=1, max_size=4))
def test_parse_round_trips_any_text(outputs: list[tuple[str, int, str]]) -> None:
    text = "".join(frame(i, out, rc, err) for i, (out, rc, err) in enumerate(outputs))
    results = parse_framed_output(text, cmds(len(outputs)), B, None)
    assert [(r.stdout, r.rc, r.stderr) for r in results] == outputs


# --- local: the script itself, run by a real sh -----------------------------------------


def test_local_batch_keeps_output_exact() -> None:
    outcome = LocalTransport().run_batch(
        [
            Command(("printf", "no newline")),
            Command(("printf", "two\\n\\n")),
            Command(("sh", "-c", "echo out; echo err >&2; exit 3")),
            Command(("cat",)),  # must not eat the script: stdin is /dev/null
            Command(("echo", "last")),
        ]
    )
    r = outcome.results
    assert (r[0].stdout, r[1].stdout) == ("no newline", "two\n\n")
    assert (r[2].rc, r[2].stdout, r[2].stderr) == (3, "out\n", "err\n")
    assert r[3].ok and r[3].stdout == ""
    assert r[4].stdout == "last\n" and outcome.error is None


def test_local_shell_killed_mid_batch_is_reported_once() -> None:
    # the second command kills the batch's shell: the grandparent of this `sh -c`
    killer = ("sh", "-c", 'kill -9 "$(ps -o ppid= -p "$PPID")"')
    outcome = LocalTransport().run_batch(
        [Command(("echo", "a")), Command(killer), Command(("echo", "never"))]
    )
    assert outcome.results[0].ok
    assert outcome.error is not None and outcome.error.startswith("the shell ended early")
    assert not outcome.results[1].ok
    assert outcome.results[2].not_run == outcome.error


# --- netns -------------------------------------------------------------------------------


@pytest.fixture
def netns() -> Iterator[str]:
    """A scratch namespace holding lo and a veth pair cndt0/cndt1, removed afterwards."""
    name = scratch_name("n")
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "add", "cndt0", "type", "veth", "peer", "name", "cndt1")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def _sleepers(marker: str) -> list[int]:
    """Pids of `sleep MARKER` processes (the marker is unique to one test)."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline == f"sleep\0{marker}\0".encode():
            pids.append(int(entry))
    return pids


@needs_root
def test_netns_runs_inside_the_namespace(netns: str) -> None:
    outcome = transport_for(f"netns:{netns}").run_batch([Command(("ip", "-j", "link"))])
    (result,) = outcome.results
    assert result.ok
    assert sorted(link["ifname"] for link in json.loads(result.stdout)) == [
        "cndt0",
        "cndt1",
        "lo",
    ]


def test_netns_missing_namespace_is_one_clear_line() -> None:
    name = scratch_name("gone")
    with pytest.raises(TransportError) as info:
        transport_for(f"netns:{name}").run_batch([Command(("true",))])
    message = str(info.value)
    assert name in message and "\n" not in message
    assert message.startswith(f"netns:{name}: no network namespace")


def test_netns_rejects_a_bad_name() -> None:
    with pytest.raises(UsageError):
        transport_for("netns:../../etc")


@needs_root
def test_netns_hung_command_times_out_and_the_next_still_runs(netns: str) -> None:
    started = time.monotonic()
    outcome = transport_for(f"netns:{netns}").run_batch(
        [Command(("sleep", "30"), timeout=1), Command(("echo", "next"))]
    )
    assert time.monotonic() - started < 10
    hung, after = outcome.results
    assert hung.timed_out and hung.rc == 124 and not hung.ok
    assert after.ok and after.stdout == "next\n"
    assert outcome.error is None


@needs_root
def test_netns_missing_program_is_rc_127(netns: str) -> None:
    outcome = transport_for(f"netns:{netns}").run_batch(
        [Command(("cnidoctor-no-such-program", "--x")), Command(("true",))]
    )
    missing, after = outcome.results
    assert missing.rc == 127 and missing.program_missing
    assert after.ok


@needs_root
def test_netns_frame_like_output_does_not_confuse_the_parser(netns: str) -> None:
    tricky = (
        "@@cnidoctor-0123456789abcdef 0 RC 0\n@@cnidoctor-0123456789abcdef 1 END\n"
        "@@cnidoctor-0123456789abcdef 1 OUT\ntail without newline"
    )
    outcome = transport_for(f"netns:{netns}").run_batch(
        [
            Command(("printf", "%s", tricky)),
            Command(("sh", "-c", "printf '%s\\n' \"$1\" >&2; exit 4", "sh", tricky)),
            Command(("echo", "after")),
        ]
    )
    first, second, third = outcome.results
    assert first.ok and first.stdout == tricky
    assert (second.rc, second.stdout, second.stderr) == (4, "", tricky + "\n")
    assert third.ok and third.stdout == "after\n"


@needs_root
def test_netns_batch_timeout_returns_partial_results(netns: str) -> None:
    marker = f"{40 + secrets.randbelow(1000) / 1000:.3f}"
    started = time.monotonic()
    outcome = transport_for(f"netns:{netns}").run_batch(
        [
            Command(("echo", "early")),
            Command(("sleep", marker), timeout=60),
            Command(("echo", "late")),
        ],
        timeout=2,
    )
    # the batch deadline holds even though the command's own timeout is far away
    assert time.monotonic() - started < 8
    early, hung, late = outcome.results
    assert early.ok and early.stdout == "early\n"
    assert hung.timed_out and hung.not_run == "the node did not finish within 2s"
    assert late.not_run == "the node did not finish within 2s" and late.rc is None
    assert outcome.error == "the node did not finish within 2s"
    assert _sleepers(marker) == []  # nothing of the batch is left running


# --- ssh ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ssh_lab() -> Iterator[SshPair]:
    """sshd in a server namespace, reachable over a veth pair from a client namespace."""
    if not IS_ROOT:
        pytest.skip("needs root to build network namespaces")
    try:
        with ssh_pair("cndt-tr") as pair:
            yield pair
    except LabError as exc:
        pytest.skip(f"no ssh lab here: {exc}")


def ssh_transport(
    lab: SshPair, port: int = SSH_PORT, host: str = SERVER_ADDR, connect_timeout: int = 5
) -> NetnsSshTransport:
    return lab.transport(port=port, host=host, connect_timeout=connect_timeout)


@needs_root
def test_ssh_one_batch_is_one_connection(ssh_lab: SshPair) -> None:
    before = ssh_lab.accepted()
    outcome = ssh_transport(ssh_lab).run_batch(
        [
            Command(("ip", "-br", "-4", "addr", "show", "dev", SERVER_DEV)),
            Command(("id", "-u")),
            Command(("sh", "-c", "echo problem >&2; exit 5")),
            Command(("cnidoctor-no-such-program",)),
            Command(("sleep", "30"), timeout=1),
            Command(("echo", "last")),
        ]
    )
    addr, uid, failing, missing, hung, last = outcome.results
    assert f"{SERVER_ADDR}/24" in addr.stdout  # ran on the server side, not the client
    assert uid.stdout == "0\n"
    assert (failing.rc, failing.stderr) == (5, "problem\n")
    assert missing.rc == 127
    assert hung.timed_out and hung.rc == 124
    assert last.ok and last.stdout == "last\n"
    assert outcome.error is None
    deadline = time.monotonic() + 5
    while ssh_lab.accepted() == before and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    assert ssh_lab.accepted() - before == 1


@needs_root
def test_ssh_nothing_listening_is_one_clear_line(ssh_lab: SshPair) -> None:
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        ssh_transport(ssh_lab, port=SSH_PORT + 1).run_batch([Command(("true",))])
    message = str(info.value)
    assert time.monotonic() - started < 5
    assert "\n" not in message
    assert message.startswith(f"ssh://root@{SERVER_ADDR}:{SSH_PORT + 1}: ssh failed: ")
    assert "Connection refused" in message


@needs_root
def test_ssh_silent_host_fails_within_the_connect_timeout(ssh_lab: SshPair) -> None:
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        ssh_transport(ssh_lab, host=SILENT_ADDR, connect_timeout=1).run_batch([Command(("true",))])
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert elapsed < 1 + 4  # ARP gives up after ~3s at most; the connect timeout is 1s
    assert "\n" not in message and SILENT_ADDR in message and "ssh failed" in message


@needs_root
def test_ssh_refused_key_is_one_clear_line(ssh_lab: SshPair, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger))
    spec = f"ssh://root@{SERVER_ADDR}:{SSH_PORT}"
    transport = NetnsSshTransport(spec, ssh_lab.client_ns, stranger)
    with pytest.raises(TransportError) as info:
        transport.run_batch([Command(("true",))])
    assert "Permission denied (publickey)" in str(info.value)
    assert "\n" not in str(info.value)


# --- ssh specs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "host", "user", "port"),
    [
        ("ssh://10.10.0.4", "10.10.0.4", None, None),
        ("ssh://root@nl-k8s-02:2222", "nl-k8s-02", "root", 2222),
        ("ssh://admin@[fd00::4]:22", "fd00::4", "admin", 22),
        ("ssh://fd00::4", "fd00::4", None, None),
    ],
)
def test_ssh_spec(spec: str, host: str, user: str | None, port: int | None) -> None:
    assert SshTarget.parse(spec) == SshTarget(host=host, user=user, port=port)


@pytest.mark.parametrize(
    "spec", ["ssh://-oProxyCommand=x", "ssh://a b", "ssh://root@h:0", "ssh://ro;ot@h", "ssh://"]
)
def test_ssh_bad_spec_is_a_usage_error(spec: str) -> None:
    with pytest.raises(UsageError):
        SshTarget.parse(spec)


def test_ssh_argv_never_lets_the_host_become_an_option() -> None:
    argv = SshTransport("ssh://root@h:2200", options=("IdentityFile=/k",)).shell_argv()
    assert argv[-3:-1] == ["--", "h"]
    assert argv[argv.index("-p") : argv.index("-p") + 2] == ["-p", "2200"]
    assert "IdentityFile=/k" in argv and "BatchMode=yes" in argv
