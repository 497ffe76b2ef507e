"""cnidoctor's in-pod probe agent: run as `python3 -c SOURCE SPEC_JSON` inside a pod netns.

It runs on the node, in a pod's network namespace (`nsenter --net=...`), where nothing of
cnidoctor is installed: it imports only the standard library (Python 3.7+) and prints one
JSON document. Every probe has its own timeout and all run in parallel under one
deadline, so the agent ends within `deadline` seconds whatever the network does. It sends
traffic only to the targets in SPEC (the runner derives them from the inventory and the
user's flags) and creates nothing that outlives it.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import random
import re
import select
import socket
import ssl
import struct
import sys
import threading
import time
from urllib.parse import urlsplit

AGENT_VERSION = 1
_IPV4 = re.compile(r"(?<![0-9.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9.])")
_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
#: how Go's resolver (Flux, kubelet image pulls) words each outcome
_GO_WORDS = {"NXDOMAIN": "no such host", "SERVFAIL": "server misbehaving", "REFUSED": "refused"}


def _why(exc: BaseException, timeout: float) -> tuple[str, bool]:
    """(one line, timed out?) for a socket error."""
    # socket.timeout is only an alias of TimeoutError from 3.10 on: nodes may run 3.7
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"timed out after {timeout:g}s", True
    code = getattr(exc, "errno", None)
    words = {
        errno.ECONNREFUSED: "connection refused",
        errno.EHOSTUNREACH: "no route to host",
        errno.ENETUNREACH: "network unreachable",
        errno.ECONNRESET: "connection reset",
        errno.ETIMEDOUT: f"timed out after {timeout:g}s",
    }
    if code in words:
        return words[code], code == errno.ETIMEDOUT
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())[:200], False


def _result(probe: str, target: str, label: str | None = None, **fields: object) -> dict:
    out = {"probe": probe, "target": target, "label": label, "ok": None, "detail": ""}
    out.update(fields)
    return out


# --------------------------------------------------------------------------- DNS


def _dns_query(name: str, qid: int) -> bytes:
    labels = b"".join(
        bytes([len(part)]) + part.encode("idna") for part in name.rstrip(".").split(".") if part
    )
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\x00" + b"\x00\x01\x00\x01"


def _skip_name(data: bytes, pos: int) -> int:
    while pos < len(data):
        length = data[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:
            return pos + 2
        pos += 1 + length
    raise ValueError("truncated name")


def _dns_answer(data: bytes, qid: int) -> tuple[str, list[str]] | None:
    """(rcode, A records) of a reply to `qid`, or None when it is not one."""
    if len(data) < 12:
        return None
    rid, flags, qd, an, _, _ = struct.unpack(">HHHHHH", data[:12])
    if rid != qid or not flags & 0x8000:
        return None
    rcode = _RCODES.get(flags & 0x0F, f"RCODE{flags & 0x0F}")
    pos = 12
    for _ in range(qd):
        pos = _skip_name(data, pos) + 4
    addresses = []
    for _ in range(an):
        pos = _skip_name(data, pos)
        rtype, _, _, rdlen = struct.unpack(">HHIH", data[pos : pos + 10])
        pos += 10
        if rtype == 1 and rdlen == 4:
            addresses.append(socket.inet_ntoa(data[pos : pos + 4]))
        pos += rdlen
    return rcode, addresses


def resolve(server: str, port: int, name: str, timeout: float) -> dict:
    """One A query over UDP, as a pod's resolver sends it (no search list: the name as given)."""
    qid = random.randint(1, 0xFFFF)
    started = time.monotonic()
    out = _result("dns", name, server=f"{server}:{port}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.connect((server, port))
        out["source"] = sock.getsockname()[0]
        sock.send(_dns_query(name, qid))
        deadline = started + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()  # noqa: UP041 - Python 3.7 on the node
            sock.settimeout(left)
            parsed = _dns_answer(sock.recv(4096), qid)
            if parsed is not None:
                break
    except (OSError, ValueError) as exc:
        why, timed_out = _why(exc, timeout) if isinstance(exc, OSError) else (str(exc), False)
        if timed_out:
            why = f"no answer within {timeout:g}s (i/o timeout)"
        out.update(ok=False, timed_out=timed_out, detail=f"lookup {name} on {server}:{port}: {why}")
        return out
    finally:
        sock.close()
        out["elapsed_ms"] = int((time.monotonic() - started) * 1000)
    rcode, addresses = parsed
    out.update(rcode=rcode, answers=addresses)
    if rcode == "NOERROR" and addresses:
        out.update(ok=True, detail=f"{rcode}: {', '.join(addresses)}")
    else:
        words = _GO_WORDS.get(rcode, "no such host" if rcode == "NOERROR" else rcode)
        what = "NOERROR without an A record" if rcode == "NOERROR" else rcode
        out.update(ok=False, detail=f"lookup {name} on {server}:{port}: {what} ({words})")
    return out


# --------------------------------------------------------------------------- TCP, TLS, HTTP


def _connect(host: str, port: int, timeout: float) -> tuple[socket.socket | None, dict]:
    started = time.monotonic()
    info: dict = {}
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        why, timed_out = _why(exc, timeout)
        info.update(ok=False, timed_out=timed_out, detail=f"connect: {why}")
        return None, info
    finally:
        info["elapsed_ms"] = int((time.monotonic() - started) * 1000)
    info.update(ok=True, source=sock.getsockname()[0], detail="connected")
    return sock, info


def api(target: dict, timeout: float) -> list[dict]:
    """TCP to host:port, then a TLS handshake on the same connection (no verification: the
    question is whether the handshake finishes, as kubelet's "TLS handshake timeout")."""
    host, port, label = target["host"], int(target["port"]), target.get("label")
    where = f"{host}:{port}"
    sock, info = _connect(host, port, timeout)
    tcp = _result("api-tcp", where, label, **info)
    tls = _result("api-tls", where, label)
    if sock is None:
        tls["detail"] = "not run: TCP did not connect"
        return [tcp, tls]
    started = time.monotonic()
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sock.settimeout(timeout)
        wrapped = ctx.wrap_socket(sock, do_handshake_on_connect=False)
        wrapped.do_handshake()
        tls.update(
            ok=True, source=tcp.get("source"), detail=f"handshake done ({wrapped.version()})"
        )
        wrapped.close()
    except (OSError, ssl.SSLError) as exc:
        why, timed_out = _why(exc, timeout)
        if timed_out:
            why = f"handshake did not finish within {timeout:g}s"
        tls.update(ok=False, timed_out=timed_out, detail=f"TLS: {why}")
    finally:
        sock.close()
        tls["elapsed_ms"] = int((time.monotonic() - started) * 1000)
    return [tcp, tls]


def egress(url: str, timeout: float, dns: dict | None) -> dict:
    """GET `url` (a service that answers with the caller's address) and report what it saw."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    out = _result("egress", url)
    address = host
    if not _IPV4.fullmatch(host):
        if dns is None:
            out["detail"] = f"not run: {host} needs the cluster DNS, which is not known"
            return out
        looked = resolve(dns["server"], int(dns.get("port", 53)), host, timeout)
        if not looked["ok"]:
            out["detail"] = f"not run: {looked['detail']}"
            return out
        address = looked["answers"][0]
    started = time.monotonic()
    path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: cnidoctor-probe/1\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    )
    sock = None
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
        out["source"] = sock.getsockname()[0]
        if parts.scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        sock.sendall(request.encode("ascii"))
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read(4096).decode("utf-8", "replace")
    except (OSError, ssl.SSLError, http.client.HTTPException, UnicodeError) as exc:
        why, timed_out = _why(exc, timeout)
        out.update(ok=False, timed_out=timed_out, detail=f"{address}:{port}: {why}")
        return out
    finally:
        if sock is not None:
            sock.close()
        out["elapsed_ms"] = int((time.monotonic() - started) * 1000)
    found = _IPV4.search(body)
    if response.status >= 400:
        out.update(ok=False, detail=f"HTTP {response.status} {response.reason}")
    elif found:
        out.update(ok=True, seen=found.group(0), detail=f"the far end saw {found.group(0)}")
    else:
        out.update(ok=True, detail=f"HTTP {response.status}, no address in the answer")
    return out


# --------------------------------------------------------------------------- ICMP


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(target: dict, timeout: float, tries: int = 2) -> dict:
    """ICMP echo to a pod on another node: `tries` requests, `timeout` split between them."""
    ip = target["ip"]
    out = _result("pod", ip, target.get("node"))
    raw = True
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    except OSError:
        raw = False
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
        except OSError as exc:
            out["detail"] = f"not run: no ICMP socket ({_why(exc, timeout)[0]})"
            return out
    ident = (os.getpid() ^ random.randint(0, 0xFFFF)) & 0xFFFF
    started = time.monotonic()
    per_try = timeout / tries
    try:
        for seq in range(1, tries + 1):
            payload = b"cnidoctor-probe"
            header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq)
            sock.sendto(packet + payload, (ip, 0))
            deadline = time.monotonic() + per_try
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                ready, _, _ = select.select([sock], [], [], left)
                if not ready:
                    break
                data, peer = sock.recvfrom(2048)
                icmp = data[(data[0] & 0x0F) * 4 :] if raw else data
                if peer[0] != ip or len(icmp) < 8:
                    continue
                kind, _, _, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
                if kind == 0 and (rid == ident or not raw) and rseq == seq:
                    ms = int((time.monotonic() - started) * 1000)
                    out.update(ok=True, elapsed_ms=ms, detail=f"echo reply (seq {seq})")
                    return out
    except OSError as exc:
        why, _ = _why(exc, timeout)
        out.update(ok=False, detail=f"ping: {why}")
        return out
    finally:
        sock.close()
    out.update(
        ok=False, timed_out=True, detail=f"no echo reply to {tries} requests in {timeout:g}s"
    )
    out["elapsed_ms"] = int((time.monotonic() - started) * 1000)
    return out


# --------------------------------------------------------------------------- the run


def run(spec: dict) -> dict:
    timeout = float(spec.get("timeout", 3))
    deadline = float(spec.get("deadline", 8))
    dns = spec.get("dns")
    jobs: list[tuple[list[dict], object, tuple]] = []
    placeholders: list[list[dict]] = []

    def job(placeholder: list[dict], fn: object, *args: object) -> None:
        placeholders.append(placeholder)
        jobs.append((placeholder, fn, args))

    if spec.get("egress"):
        job([_result("egress", spec["egress"]["url"])], egress, spec["egress"]["url"], timeout, dns)
    if dns:
        for label, name in dns.get("names", []):
            holder = [_result("dns", name, label)]
            job(holder, resolve, dns["server"], int(dns.get("port", 53)), name, timeout)
    for target in spec.get("api", []):
        where = f"{target['host']}:{target['port']}"
        holder = [
            _result("api-tcp", where, target.get("label")),
            _result("api-tls", where, target.get("label")),
        ]
        job(holder, api, target, timeout)
    for target in spec.get("pods", []):
        job([_result("pod", target["ip"], target.get("node"))], ping, target, min(timeout, 2.0))

    def work(holder: list[dict], fn: object, args: tuple) -> None:
        try:
            got = fn(*args)  # type: ignore[operator]
        except Exception as exc:  # a probe bug must not lose the others' results
            for item in holder:
                item.update(ok=None, detail=f"not run: probe error: {exc!r}"[:200])
            return
        got = got if isinstance(got, list) else [got]
        for index, new in enumerate(got[: len(holder)]):
            label = holder[index].get("label")
            holder[index] = dict(new)
            if holder[index].get("label") is None:
                holder[index]["label"] = label

    threads = []
    for holder, fn, args in jobs:
        thread = threading.Thread(target=work, args=(holder, fn, args), daemon=True)
        thread.start()
        threads.append(thread)
    end = time.monotonic() + deadline
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    results = []
    for holder in placeholders:
        for item in holder:
            if item.get("ok") is None and not item.get("detail"):
                item["detail"] = f"no result within the {deadline:g}s deadline"
            results.append(dict(item))
    for skipped in spec.get("skipped", []):
        results.append(
            _result(
                skipped["probe"],
                skipped.get("target", "-"),
                skipped.get("label"),
                detail=f"not run: {skipped['why']}",
            )
        )
    return {"agent": AGENT_VERSION, "python": sys.version.split()[0], "results": results}


def main(argv: list[str]) -> int:
    try:
        spec = json.loads(argv[1])
    except (IndexError, ValueError) as exc:
        print(f"cnidoctor probe agent: bad spec: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(run(spec), sort_keys=True))
    sys.stdout.flush()
    os._exit(0)  # threads still blocked on a dead target must not delay the exit


if __name__ == "__main__":
    sys.exit(main(sys.argv))
