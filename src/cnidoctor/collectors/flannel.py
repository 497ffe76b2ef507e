"""flannel's `/run/flannel/subnet.env`: the lease flanneld wrote for the CNI plugin.

The file lives on tmpfs; when flanneld (or k3s's embedded flannel) did not rewrite it
after a reboot, every pod sandbox on the node fails. Its absence is therefore a fact
that rules read, not a collection error.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from cnidoctor.collectors.base import (
    Collector,
    FactAbsent,
    FactParseError,
    describe_failure,
    is_missing_file,
)
from cnidoctor.facts.cni import FlannelSubnetEnv
from cnidoctor.transports.base import Command, CommandResult

SUBNET_ENV = "/run/flannel/subnet.env"


def parse_subnet_env(text: str) -> FlannelSubnetEnv:
    """KEY=VALUE lines (flannel writes no quotes or comments; both are tolerated)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key or not key.replace("_", "").isalnum():
            raise FactParseError(f"{SUBNET_ENV} line {number}: not KEY=VALUE: {line[:60]!r}")
        values[key] = value.strip().strip("\"'")
    if not values:
        raise FactParseError(f"{SUBNET_ENV} is empty")
    for key in ("FLANNEL_NETWORK", "FLANNEL_IPV6_NETWORK"):
        if key in values:
            _check(key, values[key], network=True)
    for key in ("FLANNEL_SUBNET", "FLANNEL_IPV6_SUBNET"):
        if key in values:
            _check(key, values[key], network=False)
    mtu = values.get("FLANNEL_MTU")
    if mtu is not None and not mtu.isdigit():
        raise FactParseError(f"{SUBNET_ENV}: FLANNEL_MTU={mtu!r} is not a number")
    masq = values.get("FLANNEL_IPMASQ")
    if masq is not None and masq.lower() not in ("true", "false"):
        raise FactParseError(f"{SUBNET_ENV}: FLANNEL_IPMASQ={masq!r} is not true/false")
    return FlannelSubnetEnv(
        values=values,
        network=values.get("FLANNEL_NETWORK"),
        subnet=values.get("FLANNEL_SUBNET"),
        mtu=int(mtu) if mtu is not None else None,
        ipmasq=masq.lower() == "true" if masq is not None else None,
        ipv6_network=values.get("FLANNEL_IPV6_NETWORK"),
        ipv6_subnet=values.get("FLANNEL_IPV6_SUBNET"),
    )


def _check(key: str, value: str, network: bool) -> None:
    """A truncated or hand-edited file shows up here: "10.42.0" is not a prefix."""
    try:
        if "/" not in value:
            raise ValueError("no prefix length")
        if network:
            ipaddress.ip_network(value, strict=False)
        else:
            ipaddress.ip_interface(value)
    except ValueError as exc:
        raise FactParseError(f"{SUBNET_ENV}: {key}={value!r} is not a CIDR ({exc})") from exc


class FlannelSubnetEnvCollector(Collector):
    name = "flannel_subnet_env"
    description = "flannel's lease for this node: /run/flannel/subnet.env"
    commands = (Command(("cat", SUBNET_ENV)),)
    optional_commands = frozenset({0})  # a missing file is the fact

    @classmethod
    def parse(cls, results: Sequence[CommandResult]) -> FlannelSubnetEnv:
        result = results[0]
        if is_missing_file(result):
            raise FactAbsent(f"file {SUBNET_ENV} does not exist")
        problem = describe_failure(result)
        if problem is not None:
            raise FactParseError(problem[1])
        return parse_subnet_env(result.stdout)
