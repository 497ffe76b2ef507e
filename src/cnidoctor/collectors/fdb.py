"""flannel.1's forwarding database: `bridge -j fdb show dev flannel.1`.

Only read where flannel.1 exists: on other nodes (cilium, calico, no CNI yet) `bridge`
says `Cannot find device "flannel.1"`, which makes the fact absent, not an error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from cnidoctor.collectors.base import (
    Collector,
    FactAbsent,
    FactParseError,
    describe_failure,
)
from cnidoctor.collectors.network import is_address, json_entries
from cnidoctor.facts.fdb import Fdb, FdbEntry
from cnidoctor.transports.base import Command, CommandResult

FLANNEL_VXLAN_DEVICE = "flannel.1"
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


#: entry text -> built entry (see network.json_entries): every node's fdb names the peers
_FDB_SEEN: dict[str, FdbEntry] = {}


def parse_bridge_fdb(text: str, device: str = FLANNEL_VXLAN_DEVICE) -> Fdb:
    """`bridge -j fdb show dev DEV`: a JSON array of {mac, dst?, flags, state?}."""
    return Fdb(device=device, entries=json_entries(text, "bridge -j fdb", _entry, _FDB_SEEN))


def _entry(raw: dict[str, Any]) -> FdbEntry:
    mac = raw.get("mac")
    if not isinstance(mac, str) or not _MAC.match(mac):
        raise FactParseError(f"mac {mac!r} is not a MAC address")
    dst = raw.get("dst")
    if dst is not None:
        if not isinstance(dst, str):
            raise FactParseError("dst is not a string")
        if not is_address(dst):
            raise FactParseError(f"dst {dst!r} is not an address")
    raw["mac"] = mac.lower()
    return FdbEntry.model_validate(raw, strict=True)


class FdbCollector(Collector):
    name = "vxlan_fdb"
    description = "flannel.1's forwarding database (peer VTEP MAC -> peer address)"
    commands = (Command(("bridge", "-j", "fdb", "show", "dev", FLANNEL_VXLAN_DEVICE)),)
    optional_commands = frozenset({0})  # no flannel.1 is the fact, not a failure

    @classmethod
    def parse(cls, results: Sequence[CommandResult]) -> Fdb:
        result = results[0]
        if result.program_missing:
            raise FactAbsent("bridge (iproute2) is not installed")
        if result.rc != 0 and "Cannot find device" in result.stderr:
            raise FactAbsent(f"{FLANNEL_VXLAN_DEVICE} does not exist")
        problem = describe_failure(result)
        if problem is not None:
            raise FactParseError(problem[1])
        return parse_bridge_fdb(result.stdout)
