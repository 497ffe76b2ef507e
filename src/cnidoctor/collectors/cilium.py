"""The cilium agent's status on the node: `cilium-dbg status` (1.15+), else `cilium status`.

Only the agent's own CLI prints the Masquerading line (`BPF [ens18, ens19] 10.42.0.0/16
[IPv4: Enabled, IPv6: Disabled]`); cilium-cli's `cilium status` (the one an operator
installs next to kubectl) does not, and is read only for it. No agent CLI on the node, or
no Masquerading line: absent, and the rules fall back to the cilium-config ConfigMap.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cnidoctor.collectors.base import Collector, FactAbsent
from cnidoctor.facts.cilium import CiliumStatus
from cnidoctor.transports.base import Command, CommandResult

_MASQ = re.compile(r"^\s*Masquerading:\s+(?P<rest>.+)$", re.MULTILINE)
_KPR = re.compile(r"^\s*KubeProxyReplacement:\s+\S+\s+\[(?P<devs>[^\]]*)\]", re.MULTILINE)


def parse_cilium_status(text: str, source: str) -> CiliumStatus:
    """The Masquerading and KubeProxyReplacement lines of the agent's status text."""
    found = _MASQ.search(text)
    if found is None:
        raise FactAbsent(f"{source}: no Masquerading line (not the cilium agent's status)")
    rest = found.group("rest").strip()
    mode = rest.split()[0] if rest else "?"
    devices: list[str] = []
    bracket = re.match(r"\S+\s+\[(?P<devs>[^\]]*)\]", rest)
    if mode == "BPF" and bracket and "IPv4:" not in bracket.group("devs"):
        devices = [d.strip() for d in bracket.group("devs").split(",") if d.strip()]
    ipv4 = re.search(r"IPv4:\s*(Enabled|Disabled)", rest)
    kpr = _KPR.search(text)
    attached = []
    if kpr:
        # "ens18 192.168.178.10 fe80::1 (Direct Routing), ens19 10.50.10.10": the first word
        attached = [part.split()[0] for part in kpr.group("devs").split(",") if part.split()]
    return CiliumStatus(
        masquerading=mode,
        masquerade_devices=devices,
        ipv4_masquerade=None if ipv4 is None else ipv4.group(1) == "Enabled",
        devices=attached,
        source=source,
        line=f"Masquerading: {rest}",
    )


class CiliumStatusCollector(Collector):
    name = "cilium_status"
    description = "the cilium agent's status on the node (masquerading mode and devices)"
    commands = (
        Command(("cilium-dbg", "status"), timeout=5.0),
        Command(("cilium", "status"), timeout=5.0),
    )
    optional_commands = frozenset({0, 1})

    @classmethod
    def parse(cls, results: Sequence[CommandResult]) -> CiliumStatus:
        if all(r.program_missing for r in results):
            raise FactAbsent("no cilium agent CLI on the node (cilium-dbg, cilium)")
        reasons = []
        for result in results:
            if result.program_missing or result.not_run is not None:
                continue
            try:
                return parse_cilium_status(result.stdout, result.display)
            except FactAbsent as exc:
                reasons.append(str(exc))
        raise FactAbsent("; ".join(reasons) or "the cilium CLI printed nothing usable")
