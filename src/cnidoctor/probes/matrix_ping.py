"""A pure parser of `ping -n -c 1` output (iputils and busybox): reply, ICMP messages, why not.

The bash prober runs the node's own ping, so its output is judged here: a reply, the
redirects and TTL-exceeded lines of a routing loop (incident 002 shows both: "From
10.10.0.3 icmp_seq=1 Time to live exceeded", "From 10.10.0.4: icmp_seq=2 Redirect
Host(New nexthop: 10.10.0.2)"), unreachable codes, and local errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cnidoctor.probes.matrix_model import IcmpMessage, Status

_REPLY = re.compile(r"^\d+ bytes from \S+")
_FROM = re.compile(
    r"^From (?P<src>[^\s:()]+)(?: \((?P<ip>[^)]+)\))?:? (?:icmp_seq|seq)=\d+ (?P<msg>.+)$"
)
_NEXTHOP = re.compile(r"New nexthop: (?P<gw>[^)\s]+)")
_SUMMARY = re.compile(r"(?P<sent>\d+) packets transmitted, (?P<received>\d+) (?:packets )?received")
_LOCAL = re.compile(r"^ping: (?P<what>[\w ]+): (?P<why>.+)$")
_UNREACHABLE_WORDS = ("Unreachable", "Prohibited", "filtered", "Frag needed")


@dataclass
class PingOutcome:
    status: Status
    detail: str = ""
    icmp: list[IcmpMessage] = field(default_factory=list)


def parse_ping(text: str, rc: int | None) -> PingOutcome:
    """Judge one `ping -c 1` run from its combined stdout/stderr and exit status."""
    icmp: list[IcmpMessage] = []
    replied = False
    local: str | None = None
    received: int | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if _REPLY.match(line):
            replied = True
            continue
        match = _FROM.match(line)
        if match:
            icmp.append(_message(match, line))
            continue
        summary = _SUMMARY.search(line)
        if summary:
            received = int(summary["received"])
            continue
        problem = _LOCAL.match(line)
        if problem:
            local = f"{problem['what']}: {problem['why']}"
    if replied or received:
        return PingOutcome(Status.OPEN, "echo reply", icmp)
    if any(m.kind == "time-exceeded" for m in icmp):
        return PingOutcome(Status.LOOP, "time to live exceeded", icmp)
    unreachable = [m for m in icmp if m.kind == "unreachable"]
    if unreachable:
        return PingOutcome(Status.UNREACHABLE, unreachable[0].detail, icmp)
    if local is not None:
        status = Status.UNREACHABLE if "unreachable" in local.lower() else Status.ERROR
        return PingOutcome(status, local, icmp)
    if received == 0 or rc == 1:
        return PingOutcome(Status.TIMEOUT, "no echo reply", icmp)
    last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")
    return PingOutcome(Status.ERROR, last or f"ping exit status {rc}", icmp)


def _message(match: re.Match[str], line: str) -> IcmpMessage:
    source = match["ip"] or match["src"]
    msg = match["msg"].strip()
    if msg.startswith("Redirect"):
        gw = _NEXTHOP.search(msg)
        return IcmpMessage(kind="redirect", source=source, detail=gw["gw"] if gw else "", text=line)
    if "Time to live exceeded" in msg:
        return IcmpMessage(kind="time-exceeded", source=source, text=line)
    if any(word in msg for word in _UNREACHABLE_WORDS):
        return IcmpMessage(kind="unreachable", source=source, detail=msg, text=line)
    return IcmpMessage(kind="other", source=source, detail=msg, text=line)
