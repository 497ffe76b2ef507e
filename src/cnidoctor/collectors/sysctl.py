"""The sysctls pod networking depends on, read straight from /proc/sys in one grep.

`grep -H .` prints `PATH:VALUE` per file and one `grep: PATH: reason` line per file it
cannot read, so a sysctl that does not exist (br_netfilter not loaded, IPv6 disabled at
boot) is reported per key instead of failing the whole fact.
"""

from __future__ import annotations

from collections.abc import Sequence

from cnidoctor.collectors.base import Collector, FactParseError
from cnidoctor.facts.kernel import Sysctls, sysctl_key
from cnidoctor.transports.base import Command, CommandResult

SYSCTL_PATHS = (
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/net/ipv4/conf/*/rp_filter",
    "/proc/sys/net/bridge/bridge-nf-call-iptables",
    "/proc/sys/net/bridge/bridge-nf-call-ip6tables",
    "/proc/sys/net/ipv6/conf/all/forwarding",
)
#: constant script (globs need a shell); `; true` because grep exits 2 on a missing file
SYSCTL_SCRIPT = "grep -H . " + " ".join(SYSCTL_PATHS) + " 2>&1; true"

_GREP_ERROR = "grep: "


def parse_sysctls(text: str) -> Sysctls:
    """Pure: the combined stdout/stderr of SYSCTL_SCRIPT -> values and missing keys."""
    values: dict[str, str] = {}
    missing: dict[str, str] = {}
    paths: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith(_GREP_ERROR):
            path, sep, reason = line[len(_GREP_ERROR) :].partition(": ")
            if not sep or not path.startswith("/proc/sys/"):
                raise FactParseError(f"sysctls: unexpected grep message {line[:120]!r}")
            if "*" in path:  # an unmatched glob: no such directory at all
                continue
            key = sysctl_key(path)
            missing[key] = "does not exist" if reason == "No such file or directory" else reason
            paths[key] = path
            continue
        path, sep, value = line.partition(":")
        if not sep or not path.startswith("/proc/sys/") or path.endswith("/"):
            raise FactParseError(f"sysctls: unexpected line {line[:120]!r}")
        key = sysctl_key(path)
        values[key] = value.strip()
        paths[key] = path
    if not values and not missing:
        raise FactParseError("sysctls: empty output")
    if "net.ipv4.ip_forward" not in values and "net.ipv4.ip_forward" not in missing:
        raise FactParseError("sysctls: output truncated (no net.ipv4.ip_forward)")
    return Sysctls(values=values, missing=missing, paths=paths)


class SysctlCollector(Collector):
    name = "sysctls"
    description = "ip_forward, rp_filter per interface, bridge-nf-call-ip(6)tables from /proc/sys"
    commands = (Command(("sh", "-c", SYSCTL_SCRIPT)),)

    @classmethod
    def parse(cls, results: Sequence[CommandResult]) -> Sysctls:
        return parse_sysctls(results[0].stdout + results[0].stderr)
