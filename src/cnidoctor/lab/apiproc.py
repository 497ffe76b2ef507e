"""The API stand-in of a scenario, run as its own process for as long as the lab is up.

It listens on loopback: diagnosis runs on the host, and loopback is the one address the
lab may serve on without touching the host's networks. `down` stops it by the recorded
pid, after checking that the pid is still our server and not a recycled number.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cnidoctor.lab.model import Scenario
from cnidoctor.lab.state import LabState
from cnidoctor.lab.system import LabError

#: how long `lab api` may take to print its kubeconfig path
START_TIMEOUT = 15.0
LISTEN = "127.0.0.1:0"


def start_api(scenario: Scenario, state: LabState) -> Path:
    """Serve the scenario's objects; returns the kubeconfig that points at the server."""
    assert scenario.api_objects is not None
    objects = state.directory / "api-objects.json"
    document = {"apiVersion": "v1", "kind": "List", "items": scenario.api_objects()}
    objects.write_text(json.dumps(document, indent=1))
    out_path, err_path = state.directory / "api.out", state.directory / "api.err"
    argv = [sys.executable, "-m", "cnidoctor", "lab", "api"]
    argv += ["--objects", str(objects), "--listen", LISTEN]
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
        )
    state.api_pid = proc.pid
    state.save()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        lines = out_path.read_text(errors="replace").splitlines()
        if lines and Path(lines[-1].strip()).is_file():
            return Path(lines[-1].strip())
        if proc.poll() is not None:
            detail = err_path.read_text(errors="replace").strip().splitlines()
            raise LabError(
                f"the lab's API stand-in exited: {detail[-1] if detail else proc.returncode}"
            )
        time.sleep(0.05)
    raise LabError(f"the lab's API stand-in printed no kubeconfig within {START_TIMEOUT:.0f}s")


def stop_api(pid: int | None) -> str | None:
    """Stop the recorded server; returns a problem, or None when it is gone."""
    if pid is None or not _is_our_server(pid):
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not _alive(pid):
            return None
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.05)
    return None if not _alive(pid) else f"cannot stop the API stand-in (pid {pid})"


def _is_our_server(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"cnidoctor" in cmdline and b"api" in cmdline


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rpartition(")")[2].split()[0]
    if state == "Z":  # our own child, exited: reap it
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True
