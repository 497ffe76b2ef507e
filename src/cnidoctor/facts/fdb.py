"""The forwarding database of a VXLAN device (`bridge -j fdb show dev flannel.1`).

flannel programs one entry per peer: the peer's VtepMAC with `dst` = the peer's public IP.
An entry whose `dst` or MAC is no longer the peer's sends that peer's pod traffic into the
void (flannel.vxlan-fdb-stale).
"""

from __future__ import annotations

from pydantic import Field

from cnidoctor.facts.base import FactModel

#: the all-zeros MAC: a VXLAN "default destination" (flooding) entry, not a peer's VTEP
ZERO_MAC = "00:00:00:00:00:00"


class FdbEntry(FactModel):
    mac: str
    dst: str | None = Field(default=None, description="remote VTEP address (VXLAN devices)")
    vni: int | None = None
    port: int | None = None
    flags: list[str] = Field(default_factory=list, description="self, master, extern_learn...")
    state: str | None = Field(default=None, description="permanent, static, or None (learned)")

    @property
    def is_default_destination(self) -> bool:
        return self.mac == ZERO_MAC


class Fdb(FactModel):
    device: str
    entries: list[FdbEntry]

    def by_mac(self) -> dict[str, list[FdbEntry]]:
        out: dict[str, list[FdbEntry]] = {}
        for entry in self.entries:
            out.setdefault(entry.mac.lower(), []).append(entry)
        return out
