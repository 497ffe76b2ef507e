"""How a node is reached: every transport runs a batch of argv commands in one shell.

Collecting a node is one round trip: the commands are written into one POSIX sh
script (every argument quoted with shlex.quote, every command under `timeout`), the
script is fed to one shell on the node, and the framed output is split back into one
result per command. Local, `ip netns` and SSH differ only in how that shell starts.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shlex
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel

from cnidoctor.errors import TransportError

#: exit status of `timeout` when the command ran out of time
TIMEOUT_RC = 124
#: exit status of a shell for a command it could not find
NOT_FOUND_RC = 127
_INT = re.compile(r"-?[0-9]+")


@dataclass(frozen=True)
class Command:
    """One program to run on a node, as an argv list (never a shell string built from data)."""

    argv: tuple[str, ...]
    timeout: float = 5.0

    def __post_init__(self) -> None:
        if not self.argv:
            raise ValueError("a command needs at least a program name")

    @property
    def display(self) -> str:
        return shlex.join(self.argv)


class CommandResult(BaseModel):
    """What one command did on the node. Raw text is kept so snapshots can be re-parsed."""

    argv: list[str]
    rc: int | None = None
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    #: set when the command never ran (the batch died or timed out before it)
    not_run: str | None = None

    @property
    def display(self) -> str:
        return shlex.join(self.argv)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out and self.not_run is None

    @property
    def program_missing(self) -> bool:
        return self.rc == NOT_FOUND_RC


@dataclass
class BatchOutcome:
    """The results of one batch, plus how long the round trip took."""

    results: list[CommandResult]
    duration_s: float
    #: why the batch as a whole failed or was cut short, if it was
    error: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def build_script(commands: Sequence[Command], boundary: str) -> str:
    """A sh script that runs each command under `timeout` and frames its output.

    Frame per command i:  B i OUT / stdout / B i RC n / stderr / B i END
    """
    lines = [
        "export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH",
        "E=$(mktemp 2>/dev/null || echo /tmp/cnidoctor.$$.err)",
        "trap 'rm -f \"$E\"' EXIT",
    ]
    b = shlex.quote(boundary)
    for i, command in enumerate(commands):
        argv = " ".join(shlex.quote(a) for a in command.argv)
        secs = max(1, round(command.timeout))
        lines += [
            f"printf '%s %d OUT\\n' {b} {i}",
            f'timeout -k 1 {secs} {argv} 2>"$E" </dev/null; rc=$?',
            f"printf '\\n%s %d RC %d\\n' {b} {i} \"$rc\"",
            'cat "$E"',
            f"printf '\\n%s %d END\\n' {b} {i}",
        ]
    return "\n".join(lines) + "\n"


def parse_framed_output(
    stdout: str, commands: Sequence[Command], boundary: str, cut_reason: str | None
) -> list[CommandResult]:
    """Split the framed script output back into results; commands never reached say why."""
    results: list[CommandResult] = []
    sections: dict[int, dict[str, str | int]] = {}
    current: int | None = None
    part = ""
    buf: list[str] = []
    for line in stdout.splitlines(keepends=True):
        if line.startswith(boundary + " "):
            words = line.split()
            try:
                index = int(words[1])
            except (IndexError, ValueError):
                buf.append(line)
                continue
            tag = words[2] if len(words) > 2 else ""
            if tag == "OUT":
                current, part, buf = index, "out", []
                sections[index] = {}
                continue
            if current == index and tag == "RC" and part == "out":
                rc = words[3] if len(words) > 3 else "-1"
                if not _INT.fullmatch(rc):  # not a frame line after all
                    buf.append(line)
                    continue
                sections[index]["stdout"] = _strip_frame_newline("".join(buf))
                sections[index]["rc"] = int(rc)
                part, buf = "err", []
                continue
            if current == index and tag == "END" and part == "err":
                sections[index]["stderr"] = _strip_frame_newline("".join(buf))
                current, part, buf = None, "", []
                continue
        buf.append(line)
    if current is not None and part == "out":
        sections[current]["stdout"] = "".join(buf)
        sections[current]["partial"] = 1
    elif current is not None and part == "err":  # cut while its stderr was copied
        sections[current]["stderr"] = "".join(buf)
    for i, command in enumerate(commands):
        section = sections.get(i)
        if section is None:
            results.append(
                CommandResult(
                    argv=list(command.argv), not_run=cut_reason or "the batch ended early"
                )
            )
            continue
        if "rc" not in section:
            results.append(
                CommandResult(
                    argv=list(command.argv),
                    stdout=str(section.get("stdout", "")),
                    timed_out=True,
                    not_run=cut_reason or "the batch ended while this command ran",
                )
            )
            continue
        rc = int(section["rc"])
        results.append(
            CommandResult(
                argv=list(command.argv),
                rc=rc,
                stdout=str(section.get("stdout", "")),
                stderr=str(section.get("stderr", "")),
                timed_out=rc == TIMEOUT_RC or rc == 137,
            )
        )
    return results


def _strip_frame_newline(text: str) -> str:
    return text[:-1] if text.endswith("\n") else text


class Transport(ABC):
    """Reaches one node. Subclasses only say how to start `sh -s` there."""

    #: the node SPEC this transport was made from, for messages
    spec: str

    @abstractmethod
    def shell_argv(self) -> list[str]:
        """argv of a local process whose stdin becomes the node's shell."""

    def preflight_error(self) -> str | None:
        """A reason the node cannot be reached at all, found without running anything."""
        return None

    def batch_timeout(self, commands: Sequence[Command]) -> float:
        """Wall-clock bound for a whole batch: commands run in sequence, plus start-up."""
        return sum(c.timeout + 1 for c in commands) + 10.0

    def run_batch(self, commands: Sequence[Command], timeout: float | None = None) -> BatchOutcome:
        """Run every command in one shell on the node; never raises for command failures."""
        reason = self.preflight_error()
        if reason:
            raise TransportError(f"{self.spec}: {reason}")
        boundary = "@@cnidoctor-" + secrets.token_hex(8)
        script = build_script(commands, boundary)
        limit = timeout if timeout is not None else self.batch_timeout(commands)
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                self.shell_argv(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            program = self.shell_argv()[0]
            raise TransportError(f"{self.spec}: cannot start {program}: {exc}") from exc
        cut: str | None = None
        try:
            out, err = proc.communicate(script.encode(), timeout=limit)
        except subprocess.TimeoutExpired:
            _kill_session(proc)
            out, err = _drain(proc)
            cut = f"the node did not finish within {limit:.0f}s"
        duration = time.monotonic() - started
        stdout = out.decode(errors="replace")
        stderr = err.decode(errors="replace").strip()
        if boundary not in stdout and cut is None:
            detail = stderr.splitlines()[-1] if stderr else f"exit status {proc.returncode}"
            raise TransportError(f"{self.spec}: {self.describe_failure(detail)}")
        results = parse_framed_output(stdout, commands, boundary, cut)
        if cut is None and any(r.not_run is not None for r in results):
            # the shell died mid-batch (killed, connection lost): say so, once, for the node
            detail = stderr.splitlines()[-1] if stderr else f"exit status {proc.returncode}"
            cut = f"the shell ended early ({detail})"
            results = parse_framed_output(stdout, commands, boundary, cut)
        return BatchOutcome(results=results, duration_s=duration, error=cut)

    def describe_failure(self, detail: str) -> str:
        return f"no shell could be started: {detail}"


#: how long to wait for the pipes to close once the batch's processes are killed
DRAIN_TIMEOUT = 5.0


def _kill_session(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the shell and everything it started.

    Killing the shell's process group is not enough: `timeout` puts each command in a
    process group of its own, and a command left alive keeps the output pipe open, so
    the batch would wait for it past its own deadline. Every process of the shell's
    session (the shell was started with a new one) is killed instead.
    """
    for pid in [proc.pid, *_session_members(proc.pid)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _session_members(sid: int) -> list[int]:
    """Local processes whose session id is `sid` (from /proc; empty where there is none)."""
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        # fields after "(comm)": state ppid pgrp session ...
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 3 and fields[3] == str(sid):
            members.append(int(entry))
    return members


def _drain(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """What the killed batch wrote; bounded, in case a process escaped into its own session."""
    try:
        return proc.communicate(timeout=DRAIN_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.wait()
        return bytes(exc.stdout or b""), bytes(exc.stderr or b"")
