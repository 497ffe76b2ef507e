"""Stand-ins for the kubelet, API server and etcd: listening sockets on each node's TCP ports.

A real node answers the matrix's TCP probes with a SYN-ACK; an empty lab node would answer
with a RST ("refused": the path works, nothing listens). Scenarios with `serve_ports` get
one process for the whole lab that opens, for every node, listening sockets on the TCP
ports that node must accept (analysis.ports.required_ports) at the node's address, inside
the node's network namespace, and accepts and closes whatever connects.

One process serves every namespace: a socket stays in the namespace it was created in, so
the process enters each node's namespace (setns) only while it creates that node's
sockets. `down` stops it by the recorded pid, after checking the pid is still ours.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cnidoctor.analysis.ports import required_ports
from cnidoctor.lab.model import Scenario
from cnidoctor.lab.state import LabState
from cnidoctor.lab.system import LabError, netns_path

START_TIMEOUT = 10.0
CLONE_NEWNET = 0x40000000
READY = "ready"
#: a marker in the process's argv, so `down` never signals a recycled pid
MODULE = "cnidoctor.lab.listeners"


def listener_spec(scenario: Scenario) -> list[dict[str, Any]]:
    """[{netns, address, ports}] for every node: the TCP ports its peers connect to."""
    cni = scenario.cluster.get("cni", "auto")
    spec = []
    for node in scenario.nodes:
        ports = sorted(
            {
                number
                for port in required_ports(node.role, cni, node.etcd)
                if port.proto == "tcp"
                for number in range(port.first, port.last + 1)
            }
        )
        spec.append({"netns": node.netns, "address": node.address, "ports": ports})
    return spec


def start_listeners(scenario: Scenario, state: LabState) -> None:
    """Start the listener process and wait until every socket is listening."""
    spec_path = state.directory / "listeners.json"
    spec_path.write_text(json.dumps(listener_spec(scenario)))
    out_path, err_path = state.directory / "listeners.out", state.directory / "listeners.err"
    argv = [sys.executable, "-m", MODULE, str(spec_path)]
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
        )
    state.listener_pid = proc.pid
    state.save()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if READY in out_path.read_text(errors="replace").split():
            return
        if proc.poll() is not None:
            detail = err_path.read_text(errors="replace").strip().splitlines()
            raise LabError(
                f"the lab's port listeners exited: {detail[-1] if detail else proc.returncode}"
            )
        time.sleep(0.02)
    raise LabError(f"the lab's port listeners were not ready within {START_TIMEOUT:.0f}s")


def stop_listeners(pid: int | None) -> str | None:
    """Stop the recorded listener process; returns a problem, or None when it is gone."""
    if pid is None or not _is_ours(pid):
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if not _alive(pid):
            return None
        time.sleep(0.02)
    return f"cannot stop the lab's port listeners (pid {pid})"


def _is_ours(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return MODULE.encode() in cmdline


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rpartition(")")[2].split()[0] == "Z":  # our own child, exited: reap it
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


# -- the listener process ------------------------------------------------------------------


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def _open_sockets(spec: list[dict[str, Any]]) -> list[socket.socket]:
    """Listening sockets in each node's namespace; back in our own namespace afterwards."""
    sockets = []
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        for entry in spec:
            fd = os.open(netns_path(str(entry["netns"])), os.O_RDONLY)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            for port in entry["ports"]:
                family = socket.AF_INET6 if ":" in entry["address"] else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((entry["address"], int(port)))
                sock.listen(256)
                sock.setblocking(False)
                sockets.append(sock)
            _setns(home)
    finally:
        os.close(home)
    return sockets


def serve(spec_path: str) -> None:
    """Listen on every node's ports; accept and close connections until killed."""
    spec = json.loads(Path(spec_path).read_text())
    sockets = _open_sockets(spec)
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
    print(READY, flush=True)
    while True:
        for key, _ in selector.select():
            listener: socket.socket = key.fileobj  # type: ignore[assignment]
            with contextlib.suppress(OSError):
                conn, _ = listener.accept()
                conn.close()


if __name__ == "__main__":
    try:
        serve(sys.argv[1])
    except OSError as exc:
        print(f"listeners: {exc}", file=sys.stderr)
        sys.exit(1)
