"""The in-pod agent on its own, on loopback (no root): run exactly as on a node
(`python3 -c SOURCE SPEC`) against real local servers: a resolver, an echo service, a TLS
listener and one that never speaks TLS. Each probe passes, and fails the way it should."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cnidoctor.lab.apiserver import _self_signed
from cnidoctor.lab.farend import _question, _reply
from cnidoctor.probes.pod import AGENT_SOURCE


class Servers:
    """Loopback servers on ephemeral ports, stopped at the end of the test."""

    def __init__(self, tmp: Path) -> None:
        self.stop = threading.Event()
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.dns = self._bind(socket.SOCK_DGRAM)
        self.echo = self._bind(socket.SOCK_STREAM)
        self.tls = self._bind(socket.SOCK_STREAM)
        self.mute = self._bind(socket.SOCK_STREAM)
        self.context, _ = _self_signed("127.0.0.1", tmp)
        for sock, serve in (
            (self.dns, self._dns),
            (self.echo, self._echo),
            (self.tls, self._tls),
            (self.mute, self._mute),
        ):
            thread = threading.Thread(target=self._loop, args=(sock, serve), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _bind(self, kind: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, kind)
        sock.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            sock.listen(16)
        sock.settimeout(0.1)
        self.sockets.append(sock)
        return sock

    def port(self, sock: socket.socket) -> int:
        return int(sock.getsockname()[1])

    def _loop(self, sock: socket.socket, serve: Any) -> None:
        while not self.stop.is_set():
            try:
                serve(sock)
            except (TimeoutError, OSError):
                continue

    def _dns(self, sock: socket.socket) -> None:
        data, peer = sock.recvfrom(4096)
        question = _question(data)
        assert question is not None
        _, name, end = question
        if name == "drop.example":
            return  # a resolver whose upstream never answers, and which never answers either
        if name == "nx.example":
            sock.sendto(_reply(data, end, 3, []), peer)
        elif name == "fail.example":
            sock.sendto(_reply(data, end, 2, []), peer)
        else:
            sock.sendto(_reply(data, end, 0, ["10.43.0.1"]), peer)

    def _echo(self, sock: socket.socket) -> None:
        conn, peer = sock.accept()
        with conn:
            conn.recv(4096)
            body = f"{peer[0]}\n".encode()
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    def _tls(self, sock: socket.socket) -> None:
        conn, _ = sock.accept()
        conn.settimeout(2)
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError):
            conn.close()

    def _mute(self, sock: socket.socket) -> None:
        conn, _ = sock.accept()
        self.sockets.append(conn)  # held open, silent, until the end

    def close(self) -> None:
        self.stop.set()
        for sock in self.sockets:
            sock.close()
        for thread in self.threads:
            thread.join(2)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    running = Servers(tmp_path)
    try:
        yield running
    finally:
        running.close()


def agent(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-c", AGENT_SOURCE.read_text(), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return {(r["probe"], r["target"]): r for r in json.loads(done.stdout)["results"]}


def test_dns_answers_and_the_ways_it_fails(servers: Servers) -> None:
    port = servers.port(servers.dns)
    names = [["cluster", "kubernetes.default.svc.cluster.local"]]
    names += [["external", n] for n in ("nx.example", "fail.example", "drop.example")]
    spec = {
        "timeout": 1,
        "deadline": 5,
        "dns": {"server": "127.0.0.1", "port": port, "names": names},
    }
    got = agent(spec)
    ok = got[("dns", "kubernetes.default.svc.cluster.local")]
    assert ok["ok"] is True and ok["answers"] == ["10.43.0.1"] and ok["label"] == "cluster"
    nx = got[("dns", "nx.example")]
    assert nx["ok"] is False and nx["rcode"] == "NXDOMAIN" and "(no such host)" in nx["detail"]
    fail = got[("dns", "fail.example")]
    assert fail["rcode"] == "SERVFAIL" and "(server misbehaving)" in fail["detail"]
    drop = got[("dns", "drop.example")]
    assert drop["timed_out"] is True and "no answer within 1s (i/o timeout)" in drop["detail"]


def test_egress_reports_the_address_the_far_end_saw(servers: Servers) -> None:
    url = f"http://127.0.0.1:{servers.port(servers.echo)}/ip"
    result = agent({"timeout": 2, "deadline": 5, "egress": {"url": url}})[("egress", url)]
    assert result["ok"] is True and result["seen"] == "127.0.0.1"
    assert result["source"] == "127.0.0.1"


def test_api_tcp_and_tls_pass_and_a_mute_server_is_a_handshake_timeout(servers: Servers) -> None:
    tls, mute = servers.port(servers.tls), servers.port(servers.mute)
    started = time.monotonic()
    got = agent(
        {
            "timeout": 1,
            "deadline": 5,
            "api": [
                {"label": "API server", "host": "127.0.0.1", "port": tls},
                {"label": "API server", "host": "127.0.0.1", "port": mute},
            ],
        }
    )
    assert time.monotonic() - started < 5, "probes run in parallel, each bounded"
    assert got[("api-tls", f"127.0.0.1:{tls}")]["ok"] is True
    assert got[("api-tcp", f"127.0.0.1:{mute}")]["ok"] is True
    stuck = got[("api-tls", f"127.0.0.1:{mute}")]
    assert stuck["ok"] is False and stuck["timed_out"] is True


def test_the_deadline_bounds_the_whole_agent(servers: Servers) -> None:
    """Every probe still running at the deadline is reported as such, not waited for."""
    port = servers.port(servers.dns)
    names = [["external", "drop.example"]]
    spec = {
        "timeout": 30,
        "deadline": 1,
        "dns": {"server": "127.0.0.1", "port": port, "names": names},
    }
    started = time.monotonic()
    result = agent(spec)[("dns", "drop.example")]
    assert time.monotonic() - started < 10
    assert result["ok"] is None and "no result within the 1s deadline" in result["detail"]


def test_a_bad_spec_is_one_line_and_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-c", AGENT_SOURCE.read_text(), "{not json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
