"""The only place the lab runs programs: argv lists, timeouts, one-line errors.

Every call goes through `run` so a failure names the command and the tool's own last
line, and so tests can inject a crash between two steps (see tests/test_lab.py).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cnidoctor.errors import CnidoctorError

NETNS_DIR = "/run/netns"
DEFAULT_TIMEOUT = 20.0


class LabError(CnidoctorError):
    """Building or removing a lab failed: one line naming the step and the tool's message."""


@dataclass(frozen=True)
class Ran:
    rc: int
    stdout: str
    stderr: str


class NodeRunner(Protocol):
    """Runs one program inside a node (see build._build_node_mounts)."""

    def __call__(self, *argv: str, data: bytes | None = None, check: bool = True) -> Ran: ...


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    input: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Ran:
    """Run one program (never through a shell); raise LabError on failure when `check`."""
    try:
        proc = subprocess.run(
            list(argv), input=input, capture_output=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise LabError(f"{argv[0]} is not installed (needed by the lab)") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{shlex.join(argv)}: no answer within {timeout:.0f}s") from exc
    out = proc.stdout.decode(errors="replace")
    err = proc.stderr.decode(errors="replace")
    if check and proc.returncode != 0:
        lines = [ln for ln in (err or out).splitlines() if ln.strip()]
        detail = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        raise LabError(f"{shlex.join(argv)}: {detail}")
    return Ran(proc.returncode, out, err)


def in_netns(netns: str, argv: Sequence[str]) -> list[str]:
    """argv that runs a program inside a network namespace only (host files)."""
    return ["nsenter", f"--net={netns_path(netns)}", *argv]


class NetnsRecord(Protocol):
    """Where the lab writes down a namespace before making it (lab/state.py LabState)."""

    def will_make_netns(self, name: str) -> None: ...


def add_netns(state: NetnsRecord, name: str, *sysctls: str) -> None:
    """A new network namespace with lo up. Written down before it exists, so `down` removes
    it even after a crash; `sysctls` are set before any link is added (new links copy
    conf/default)."""
    state.will_make_netns(name)
    run(["ip", "netns", "add", name])
    if sysctls:
        sysctl(name, *sysctls)
    run(["ip", "-n", name, "link", "set", "lo", "up"])


def sysctl(netns: str, *settings: str) -> None:
    """`sysctl -w KEY=VALUE...` inside a network namespace (per-namespace keys only)."""
    run(in_netns(netns, ["sysctl", "-q", "-w", *settings]))


def in_node(netns: str, mount_ns: str, argv: Sequence[str]) -> list[str]:
    """argv that runs a program inside a node: its network and its private mount namespace."""
    return ["nsenter", f"--net={netns_path(netns)}", f"--mount={mount_ns}", *argv]


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def netns_exists(name: str) -> bool:
    return os.path.exists(netns_path(name))


def mount_points() -> list[tuple[str, str]]:
    """(mount point, optional fields) of this mount namespace, from /proc/self/mountinfo.

    Optional fields carry the propagation (`shared:N`, `master:N`); empty = private.
    """
    points = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            left, _, _ = line.partition(" - ")
            fields = left.split()
            if len(fields) < 6:
                continue
            point = _unescape(fields[4])
            points.append((point, " ".join(fields[6:])))
    return points


def is_mounted(path: str) -> bool:
    return any(point == path for point, _ in mount_points())


def is_private_mount(path: str) -> bool:
    """True when the topmost mount at `path` exists and propagates nothing."""
    found = [opt for point, opt in mount_points() if point == path]
    return bool(found) and not any(tag in found[-1] for tag in ("shared:", "master:"))


def _unescape(text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        text = text.replace(code, char)
    return text


def missing_tools(tools: Sequence[str]) -> list[str]:
    return [tool for tool in tools if shutil.which(tool) is None]
