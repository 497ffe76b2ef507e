"""Runs the connectivity matrix: every node probes every other node, all at once.

Per source node, one shell through the node's Transport (so `netns:` and `ssh://` alike)
runs the prober (matrix_prober.py) with that node's probes as arguments: addresses are
validated here and passed as argv, never spliced into code. All sources start together
and each starts its UDP observer, then says READY; when every node is ready (or has
failed to start within `start_timeout`), each gets "GO" on its stdin and sends all its
probes at once. So every destination observes before any source sends, and the run takes
about one probe timeout whatever the number of pairs. A node that cannot be reached is a
result (its row unknown), never an exception.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import selectors
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from cnidoctor.analysis.ports import required_ports
from cnidoctor.errors import CnidoctorError, UsageError
from cnidoctor.models import ClusterConfig
from cnidoctor.probes.matrix_model import IcmpMessage, MatrixResult, Probe, SourceRun, Status
from cnidoctor.probes.matrix_ping import parse_ping
from cnidoctor.probes.matrix_prober import wrapper
from cnidoctor.transports import transport_for
from cnidoctor.transports.base import _kill_session

DEFAULT_TIMEOUT = 1.0
#: how long every node may take to start its prober and observer (ssh login included)
START_TIMEOUT = 10.0
#: after GO: the prober's own deadline plus this, then its session is killed
GRACE = 2.0
#: the matrix is N x N: beyond this many nodes, split the inventory
MAX_NODES = 128
#: TCP ports probed on every node, on control-plane nodes, and on etcd members
KUBELET, API, ETCD = (10250,), (6443,), (2379, 2380)


@dataclass(frozen=True)
class MatrixNode:
    """A node of the matrix: how to reach it and what it runs."""

    name: str
    spec: str
    address: str | None
    role: str = "worker"
    etcd: bool | None = None

    @property
    def is_etcd(self) -> bool:
        return self.etcd if self.etcd is not None else self.role == "control-plane"


def vxlan_port(cluster: ClusterConfig) -> int | None:
    """The overlay's UDP port for the cluster's CNI (8472 flannel/cilium, 4789 calico)."""
    for port in required_ports("worker", cluster.cni, False, cluster.flannel_backend):
        if port.proto == "udp" and "VXLAN" in port.purpose:
            return port.first
    return None


def plan(nodes: Sequence[MatrixNode], cluster: ClusterConfig) -> list[Probe]:
    """Every probe of the run: from each node to every other node that has an address."""
    udp = vxlan_port(cluster)
    probes: list[Probe] = []
    for source in nodes:
        for target in nodes:
            if target is source or not target.address:
                continue
            checks: list[tuple[str, int | None]] = [("icmp", None)]
            if target.role == "control-plane":
                checks += [("tcp", p) for p in API]
            checks += [("tcp", p) for p in KUBELET]
            if target.is_etcd:
                checks += [("tcp", p) for p in ETCD]
            if udp is not None:
                checks.append(("udp", udp))
            for proto, port in checks:
                probes.append(
                    Probe(
                        id=f"p{len(probes)}",
                        source=source.name,
                        target=target.name,
                        address=target.address,
                        proto=proto,
                        port=port,
                    )
                )
    return probes


def check_nodes(nodes: Sequence[MatrixNode]) -> None:
    """Refuse what cannot be probed, with one line: IPv6 or bad addresses, too many nodes."""
    if len(nodes) < 2:
        raise UsageError("the matrix needs at least two nodes")
    if len(nodes) > MAX_NODES:
        raise UsageError(f"the matrix probes at most {MAX_NODES} nodes at once")
    for node in nodes:
        if node.address is None:
            continue
        try:
            address = ipaddress.ip_address(node.address)
        except ValueError:
            raise UsageError(f"node {node.name}: {node.address!r} is not an IP address") from None
        if address.version != 4:
            raise UsageError(f"node {node.name}: the matrix probes IPv4 addresses only")
    if not any(n.address for n in nodes):
        raise UsageError("no node has an address to probe (inventory `address:`)")


@dataclass
class _Session:
    """One source node's shell while the matrix runs."""

    node: MatrixNode
    index: int
    probes: list[Probe]
    proc: subprocess.Popen[bytes] | None = None
    error: str | None = None
    ready: bool = False
    started: float = 0.0
    ended: float | None = None
    lines: list[str] = field(default_factory=list)
    partial: bytes = b""
    stderr: bytes = b""
    open_fds: int = 0


def run_matrix(
    nodes: Sequence[MatrixNode],
    cluster: ClusterConfig,
    timeout: float = DEFAULT_TIMEOUT,
    start_timeout: float = START_TIMEOUT,
    prober: str = "auto",
) -> MatrixResult:
    """Probe every pair; the result holds each probe's status and each source's run."""
    check_nodes(nodes)
    if not 0.1 <= timeout <= 30:
        raise UsageError("--timeout must be between 0.1 and 30 seconds")
    started = time.monotonic()
    probes = plan(nodes, cluster)
    udp = vxlan_port(cluster)
    token = secrets.token_hex(6)
    sessions = []
    for index, node in enumerate(nodes):
        mine = [p for p in probes if p.source == node.name]
        expected = [str(i) for i, other in enumerate(nodes) if other is not node and node.address]
        args = [
            f"{timeout:g}",
            token,
            str(index),
            str(udp if udp is not None and node.address else 0),
            ",".join(expected),
            *(f"{p.id},{p.proto},{p.address},{p.port or 0}" for p in mine),
        ]
        session = _Session(node=node, index=index, probes=mine)
        sessions.append(_start(session, wrapper(args, prober)))
    try:
        _drive(sessions, timeout, start_timeout)
    finally:
        for session in sessions:
            _stop(session)
    runs = [_judge_session(s) for s in sessions]
    _settle_udp(sessions, runs, udp)
    return MatrixResult(
        nodes=[n.name for n in nodes],
        addresses={n.name: n.address for n in nodes},
        runs=runs,
        probes=probes,
        timeout=timeout,
        duration_s=round(time.monotonic() - started, 3),
        vxlan_port=udp,
    )


def _start(session: _Session, script: str) -> _Session:
    session.started = time.monotonic()
    try:
        transport = transport_for(session.node.spec)
        reason = transport.preflight_error()
        if reason:
            session.error = f"{session.node.spec}: {reason}"
            return session
        session.proc = subprocess.Popen(
            transport.shell_argv(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except (CnidoctorError, OSError) as exc:
        session.error = str(exc)
        return session
    assert session.proc.stdin is not None
    try:
        session.proc.stdin.write(script.encode())
        session.proc.stdin.flush()
    except OSError as exc:
        session.error = f"{session.node.spec}: the shell did not start ({exc.strerror})"
    return session


def _drive(sessions: list[_Session], timeout: float, start_timeout: float) -> None:
    """Read every shell; GO to all once all are READY (or failed); stop at the deadlines."""
    selector = selectors.DefaultSelector()
    for session in sessions:
        proc = session.proc
        if proc is None or session.error:
            continue
        for stream in (proc.stdout, proc.stderr):
            assert stream is not None
            os.set_blocking(stream.fileno(), False)
            selector.register(stream, selectors.EVENT_READ, session)
            session.open_fds += 1
    start_deadline = time.monotonic() + start_timeout
    go_sent = False
    end_deadline = 0.0
    while selector.get_map():
        now = time.monotonic()
        if not go_sent:
            waiting = [s for s in sessions if _alive(s) and not s.ready]
            if not waiting or now >= start_deadline:
                for session in sessions:
                    if session.proc is not None and session.error is None and not session.ready:
                        session.error = _why_not_ready(session, start_timeout)
                        _stop(session)
                        _unregister(selector, session)
                _go(sessions)
                go_sent = True
                end_deadline = time.monotonic() + timeout + GRACE
                continue
            limit = start_deadline - now
        else:
            if now >= end_deadline:
                for session in sessions:
                    if _alive(session):
                        _stop(session)
                        _unregister(selector, session)
                break
            limit = end_deadline - now
        for key, _ in selector.select(timeout=limit):
            session = key.data
            stream = key.fileobj
            chunk = _read(stream)  # type: ignore[arg-type]
            if not chunk:
                selector.unregister(stream)
                session.open_fds -= 1
                if session.open_fds == 0:
                    session.ended = time.monotonic()
                continue
            if stream is session.proc.stderr:  # type: ignore[union-attr]
                session.stderr = (session.stderr + chunk)[-4096:]
                continue
            _take_lines(session, chunk)
    for session in sessions:
        if session.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                session.proc.wait(timeout=1)


def _read(stream: object) -> bytes:
    try:
        return os.read(stream.fileno(), 65536)  # type: ignore[attr-defined]
    except BlockingIOError:
        return b"\0"  # spurious wakeup: not EOF; a NUL never appears in the protocol
    except OSError:
        return b""


def _take_lines(session: _Session, chunk: bytes) -> None:
    data = session.partial + chunk.replace(b"\0", b"")
    *complete, session.partial = data.split(b"\n")
    for raw in complete:
        line = raw.decode(errors="replace").rstrip("\r")
        session.lines.append(line)
        if line == "READY":
            session.ready = True


def _alive(session: _Session) -> bool:
    return session.proc is not None and session.error is None and session.open_fds > 0


def _go(sessions: list[_Session]) -> None:
    for session in sessions:
        if session.proc is None or session.error is not None or not session.ready:
            continue
        assert session.proc.stdin is not None
        try:
            session.proc.stdin.write(b"GO\n")
            session.proc.stdin.close()
        except OSError:
            pass


def _unregister(selector: selectors.BaseSelector, session: _Session) -> None:
    for key in list(selector.get_map().values()):
        if key.data is session:
            selector.unregister(key.fileobj)
    session.open_fds = 0


def _stop(session: _Session) -> None:
    proc = session.proc
    if proc is None:
        return
    if proc.poll() is None or session.open_fds:
        _kill_session(proc)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=2)


def _why_not_ready(session: _Session, start_timeout: float) -> str:
    notes = [ln[2:] for ln in session.lines if ln.startswith("M ")]
    if "FATAL" in session.lines and notes:
        return f"cannot probe: {notes[-1]}"
    err = session.stderr.decode(errors="replace").strip().splitlines()
    if session.open_fds == 0 or (session.proc is not None and session.proc.poll() is not None):
        detail = err[-1] if err else (notes[-1] if notes else "the shell exited")
        return f"{session.node.spec}: {detail}"
    return f"{session.node.spec}: the prober did not start within {start_timeout:g}s" + (
        f" ({err[-1]})" if err else ""
    )


# -- reading what a source said --------------------------------------------------------------


def _judge_session(session: _Session) -> SourceRun:
    """Fill the session's probes from its protocol lines; the run's summary."""
    notes = [ln[2:].strip() for ln in session.lines if ln.startswith("M ")]
    duration = round((session.ended or time.monotonic()) - session.started, 3)
    mode = "python" if not any(n.startswith(("raw-socket", "python3")) for n in notes) else "bash"
    if session.error is not None or not session.ready:
        error = session.error or "the prober never became ready"
        for probe in session.probes:
            probe.status, probe.detail = Status.UNKNOWN, f"not probed: {error}"
        return SourceRun(
            name=session.node.name, spec=session.node.spec, ran=False, error=error, notes=notes
        )
    apply_lines(session.lines, session.probes)
    done = "DONE" in session.lines
    return SourceRun(
        name=session.node.name,
        spec=session.node.spec,
        ran=True,
        error=None if done else "the prober did not finish before the deadline",
        duration_s=duration,
        mode=mode,
        notes=notes,
        observing=not any(n.startswith("observer") for n in notes),
    )


def apply_lines(lines: Sequence[str], probes: Sequence[Probe]) -> None:
    """Set each probe's status, ICMP messages and path from the prober's output (pure)."""
    by_id = {p.id: p for p in probes}
    echo_to = {p.address: p for p in probes if p.proto == "icmp"}
    ping_lines: dict[str, list[str]] = {}
    ping_rc: dict[str, int | None] = {}
    sent: set[str] = set()
    reported: set[str] = set()
    for line in lines:
        kind, _, rest = line.partition(" ")
        pid, _, rest = rest.partition(" ")
        if kind == "X":  # about another packet to that address: evidence for its pair
            _other_message(echo_to.get(pid), pid, rest.split())
            continue
        probe = by_id.get(pid)
        if probe is None:
            continue
        if kind == "R":
            status, _, detail = rest.partition(" ")
            reported.add(pid)
            if status == "sent":
                sent.add(pid)
                continue
            if status == "time-exceeded":
                probe.status, probe.detail = Status.LOOP, f"time to live exceeded {detail}".strip()
                continue
            try:
                probe.status = Status(status)
            except ValueError:
                probe.status = Status.ERROR
            probe.detail = detail.strip()
        elif kind == "I":
            words = rest.split()
            if len(words) >= 2:
                probe.icmp.append(
                    IcmpMessage(kind=words[0], source=words[1], detail=" ".join(words[2:]))
                )
        elif kind == "H":
            words = rest.split()
            if len(words) >= 2 and words[0].isdigit():
                ttl = int(words[0])
                while len(probe.path) < ttl:
                    probe.path.append("*")
                probe.path[ttl - 1] = words[1]
        elif kind == "L":
            ping_lines.setdefault(pid, []).append(rest)
        elif kind == "E":
            ping_rc[pid] = int(rest) if rest.strip().lstrip("-").isdigit() else None
    for pid, text in ping_lines.items():
        probe = by_id[pid]
        outcome = parse_ping("\n".join(text), ping_rc.get(pid, 1))
        probe.status, probe.detail, probe.icmp = outcome.status, outcome.detail, outcome.icmp
        reported.add(pid)
    for probe in probes:
        if probe.proto == "udp":
            if probe.id in sent:
                probe.status, probe.detail = Status.UNKNOWN, "sent"
            continue
        if probe.id not in reported:
            probe.status, probe.detail = Status.TIMEOUT, "no answer before the deadline"
        elif probe.status is Status.TIMEOUT and not probe.detail:
            probe.detail = "no answer before the deadline"


def _other_message(probe: Probe | None, address: str, words: list[str]) -> None:
    if probe is None or len(words) < 2:
        return
    kind, source = words[0], words[1]
    detail = " ".join(words[2:])
    if kind == "redirect":
        text = f"From {source}: Redirect Host(New nexthop: {detail}) for a packet to {address}"
    else:
        text = f"From {source} Time to live exceeded for a packet to {address}"
    probe.icmp.append(IcmpMessage(kind=kind, source=source, detail=detail, text=text))


def arrivals(lines: Sequence[str]) -> set[str]:
    """The node indices whose UDP probes this node's observer saw (U lines)."""
    return {line.split()[1] for line in lines if line.startswith("U ") and len(line.split()) > 1}


def _settle_udp(sessions: list[_Session], runs: list[SourceRun], udp: int | None) -> None:
    """A UDP probe is open when its destination's observer saw it; else timeout or unknown."""
    if udp is None:
        return
    by_name = {s.node.name: (s, r) for s, r in zip(sessions, runs, strict=True)}
    for session in sessions:
        for probe in session.probes:
            if probe.proto != "udp" or probe.detail != "sent":
                continue
            target, run = by_name[probe.target]
            if not run.ran:
                probe.status = Status.UNKNOWN
                probe.detail = f"cannot observe at {probe.target}: {run.error}"
            elif not run.observing:
                probe.status = Status.UNKNOWN
                probe.detail = f"cannot observe at {probe.target}: " + "; ".join(run.notes)
            elif str(session.index) in arrivals(target.lines):
                probe.status, probe.detail = Status.OPEN, "seen arriving"
            else:
                probe.status = Status.TIMEOUT
                probe.detail = f"not seen arriving at {probe.target} within the timeout"
