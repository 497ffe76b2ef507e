"""The lab's far end for the pod probes: what answers, and what it saw, while a probe runs.

Started by the probe run and stopped when it ends (also on Ctrl-C): threads of the probe
process itself, each serving sockets that were created inside a lab namespace (a socket
stays in the namespace it was made in; a throwaway thread enters the namespace only to
make it). Nothing outlives the run.

* the upstream (the internet): an HTTP echo service that answers with the caller's
  address as it saw it, a resolver that answers every name, and a capture (raw sockets,
  the lab's `tcpdump -ni eth0`) of the TCP SYNs and DNS queries that arrive, with their
  source: a pod address there is the incident's `10.42.1.12 -> 1.1.1.1:443`;
* per node, the cluster DNS pod's server: it answers kubernetes.default.svc.cluster.local
  itself (NXDOMAIN for other cluster names) and forwards every other name to the upstream
  resolver from the DNS pod's own address, as CoreDNS's `forward` does; when no answer
  comes back within FORWARD_TIMEOUT it answers SERVFAIL, as CoreDNS does. So external
  names fail exactly when the DNS pod's egress is not SNATed: the upstream cannot route
  its answer back to 10.42.x.x. (Go programs such as Flux report this as "lookup ghcr.io
  on 10.43.0.10:53: server misbehaving" or, after their search-list walk, "no such
  host", incident 003's words.)
* the API server's TLS listener on the control-plane node (a fresh self-signed
  certificate): the kubernetes service and the API server address lead there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from cnidoctor.facts.probes import FarEnd, Sighting
from cnidoctor.lab.system import LabError, netns_path

if TYPE_CHECKING:
    from cnidoctor.lab.model import Scenario
    from cnidoctor.lab.podnet import LabPod, PodNetwork

T = TypeVar("T")
#: how long the cluster DNS waits for the upstream resolver (CoreDNS: a few seconds)
FORWARD_TIMEOUT = 1.0
#: how often serving loops look at the stop flag
TICK = 0.2
TTL = 30


def _in_netns(netns: str, make: Callable[[], T]) -> T:
    """Run `make` (which creates a socket) inside network namespace `netns`."""
    from cnidoctor.lab.apiserver import _setns_net

    out: dict[str, object] = {}

    def enter() -> None:
        try:
            fd = os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns_net(fd)
            finally:
                os.close(fd)
            out["value"] = make()
        except BaseException as exc:  # reported in the caller's thread
            out["error"] = exc

    worker = threading.Thread(target=enter, name=f"netns-{netns}")
    worker.start()
    worker.join()
    if "error" in out:
        raise LabError(f"lab far end: in {netns}: {out['error']}")
    return out["value"]  # type: ignore[return-value]


def _udp(port: int) -> Callable[[], socket.socket]:
    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", port))
        sock.settimeout(TICK)
        return sock

    return make


def _tcp_listener(port: int) -> Callable[[], socket.socket]:
    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        sock.listen(64)
        sock.settimeout(TICK)
        return sock

    return make


def _raw(proto: int) -> Callable[[], socket.socket]:
    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
        sock.settimeout(TICK)
        return sock

    return make


# --------------------------------------------------------------------------- DNS messages


def _question(data: bytes) -> tuple[int, str, int] | None:
    """(id, name, end of the question) of a standard query, or None."""
    if len(data) < 17:
        return None
    qid, flags, qdcount = struct.unpack(">HHH", data[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    labels, pos = [], 12
    while pos < len(data) and data[pos]:
        length = data[pos]
        if length & 0xC0:
            return None
        labels.append(data[pos + 1 : pos + 1 + length].decode("ascii", "replace"))
        pos += 1 + length
    end = pos + 5
    return (qid, ".".join(labels).lower(), end) if end <= len(data) else None


def _reply(query: bytes, end: int, rcode: int, addresses: list[str]) -> bytes:
    qid = struct.unpack(">H", query[:2])[0]
    qtype = struct.unpack(">H", query[end - 4 : end - 2])[0]
    answers = addresses if qtype == 1 else []
    header = struct.pack(">HHHHHH", qid, 0x8180 | rcode, 1, len(answers), 0, 0)
    body = query[12:end]
    for address in answers:
        body += struct.pack(">HHHIH", 0xC00C, 1, 1, TTL, 4) + socket.inet_aton(address)
    return header + body


class LabFarEnd:
    """The responders of one lab scenario's probe run (see the module docstring)."""

    def __init__(self, scenario: Scenario, net: PodNetwork, directory: Path) -> None:
        self.scenario = scenario
        self.net = net
        self.directory = directory
        upstream = net.upstream
        self.egress_url = upstream.echo_url if upstream else ""
        self.external_names: tuple[str, ...] = upstream.external_names if upstream else ()
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._seen: Counter[tuple[str, str, int]] = Counter()
        self._dns_log: dict[str, list[str]] = {}
        self._tls_dir: str | None = None
        #: accepted TLS connections still in their handshake thread (closed by stop)
        self._conns: list[socket.socket] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Open every socket in its namespace and serve; LabError (after cleanup) on failure."""
        try:
            up = self.net.upstream
            if up is not None:
                self._serve(up.netns, _tcp_listener(up.echo_port), self._echo)
                self._serve(up.netns, _udp(53), self._resolver)
                self._serve(up.netns, _raw(socket.IPPROTO_TCP), self._capture)
                self._serve(up.netns, _raw(socket.IPPROTO_UDP), self._capture)
            for pod in self.net.pods:
                if pod.role == "dns":
                    upstream_sock = _in_netns(pod.netns, _udp(0))
                    self._sockets.append(upstream_sock)
                    self._dns_log[pod.node] = []
                    self._serve(
                        pod.netns,
                        _udp(53),
                        lambda s, pod=pod, f=upstream_sock: self._cluster_dns(s, f, pod),
                    )
            api = next(n for n in self.scenario.nodes if n.name == self.net.api_node)
            self._tls_dir = tempfile.mkdtemp(prefix="cnidoctor-lab-tls-")
            from cnidoctor.lab.apiserver import _self_signed

            context, _ = _self_signed(api.address, Path(self._tls_dir))
            self._serve(
                api.netns, _tcp_listener(self.net.api_port), lambda s: self._tls(s, context)
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Close every socket and wait for the serving threads (bounded); idempotent."""
        self._stop.set()
        with self._lock:
            open_now = [*self._sockets, *self._conns]
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(timeout=2 * TICK + FORWARD_TIMEOUT)
        self._sockets.clear()
        self._threads.clear()
        self._conns.clear()
        if self._tls_dir is not None:
            shutil.rmtree(self._tls_dir, ignore_errors=True)
            self._tls_dir = None

    def far_end(self, node: str) -> FarEnd | None:
        """What the upstream captured (every source: the parser picks the node's own) and
        what the node's DNS pod did with its forwards."""
        up = self.net.upstream
        if up is None:
            return None
        dns = self.net.pod(node, "dns")
        with self._lock:
            sightings = [
                Sighting(proto=proto, src=src, dport=dport, count=count)
                for (proto, src, dport), count in sorted(self._seen.items())
            ]
            log = list(self._dns_log.get(node, []))
        return FarEnd(
            upstream=up.ip, sightings=sightings, dns_pod=dns.ip if dns else None, dns_log=log
        )

    def _serve(
        self, netns: str, make: Callable[[], socket.socket], loop: Callable[[socket.socket], None]
    ) -> None:
        sock = _in_netns(netns, make)
        self._sockets.append(sock)
        thread = threading.Thread(target=self._guard, args=(loop, sock), daemon=True)
        thread.start()
        self._threads.append(thread)

    def _guard(self, loop: Callable[[socket.socket], None], sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                loop(sock)
            except (TimeoutError, InterruptedError):
                continue
            except OSError:
                if self._stop.is_set():
                    return
                time.sleep(TICK)  # a transient error (a reply to an unroutable address)

    # -- servers (one unit of work per call; _guard loops) ---------------------------------

    def _echo(self, sock: socket.socket) -> None:
        conn, peer = sock.accept()
        with conn:
            conn.settimeout(2.0)
            with contextlib.suppress(OSError):
                conn.recv(4096)
                body = f"{peer[0]}\n".encode()
                conn.sendall(
                    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )

    def _resolver(self, sock: socket.socket) -> None:
        data, peer = sock.recvfrom(4096)
        question = _question(data)
        up = self.net.upstream
        if question is None or up is None:
            return
        sock.sendto(_reply(data, question[2], 0, [up.ip]), peer)

    def _capture(self, sock: socket.socket) -> None:
        packet = sock.recv(65535)
        if len(packet) < 20:
            return
        ihl = (packet[0] & 0x0F) * 4
        proto, src = packet[9], socket.inet_ntoa(packet[12:16])
        l4 = packet[ihl:]
        if proto == socket.IPPROTO_TCP and len(l4) >= 14:
            dport, flags = struct.unpack(">H", l4[2:4])[0], l4[13]
            up = self.net.upstream
            if up is not None and dport == up.echo_port and flags & 0x02 and not flags & 0x10:
                with self._lock:
                    self._seen[("tcp", src, dport)] += 1
        elif proto == socket.IPPROTO_UDP and len(l4) >= 8:
            dport = struct.unpack(">H", l4[2:4])[0]
            if dport == 53:
                with self._lock:
                    self._seen[("udp", src, dport)] += 1

    def _cluster_dns(self, sock: socket.socket, forward: socket.socket, pod: LabPod) -> None:
        data, peer = sock.recvfrom(4096)
        question = _question(data)
        if question is None:
            return
        qid, name, end = question
        domain = self.net.cluster_domain
        if name == f"kubernetes.default.svc.{domain}":
            sock.sendto(_reply(data, end, 0, [self.net.service_ip]), peer)
            return
        if name == domain or name.endswith("." + domain):
            sock.sendto(_reply(data, end, 3, []), peer)
            return
        up = self.net.upstream
        pod_ip, node = pod.ip, pod.node
        if up is None:
            sock.sendto(_reply(data, end, 2, []), peer)
            return
        answer = self._forward(forward, data, qid, up.ip)
        if answer is not None:
            sock.sendto(answer, peer)
            outcome = "answered"
        else:
            sock.sendto(_reply(data, end, 2, []), peer)
            outcome = f"no answer within {FORWARD_TIMEOUT:g}s: answered SERVFAIL"
        with self._lock:
            self._dns_log.setdefault(node, []).append(
                f"cluster DNS pod {pod_ip}: {name} forwarded to {up.ip}:53 from {pod_ip}: {outcome}"
            )

    def _forward(
        self, forward: socket.socket, query: bytes, qid: int, upstream: str
    ) -> bytes | None:
        with contextlib.suppress(OSError):
            forward.sendto(query, (upstream, 53))
        deadline = time.monotonic() + FORWARD_TIMEOUT
        while (left := deadline - time.monotonic()) > 0 and not self._stop.is_set():
            forward.settimeout(min(left, TICK))
            try:
                data, peer = forward.recvfrom(4096)
            except (TimeoutError, InterruptedError):
                continue
            except OSError:
                return None
            if peer[0] == upstream and data[:2] == struct.pack(">H", qid):
                return data
        return None

    def _tls(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        conn, _ = sock.accept()
        with self._lock:
            self._conns.append(conn)

        def handshake() -> None:
            with contextlib.suppress(OSError, ssl.SSLError):
                conn.settimeout(3.0)
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            with contextlib.suppress(OSError):
                conn.close()
            with self._lock, contextlib.suppress(ValueError):
                self._conns.remove(conn)

        threading.Thread(target=handshake, daemon=True).start()
