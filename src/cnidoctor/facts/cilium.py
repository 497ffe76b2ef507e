"""What the cilium agent says of itself on the node (`cilium-dbg status`): where it
masquerades and which devices it runs on. The ConfigMap says what was asked for; this says
what the agent made of it (incident 003: `devices` unset, masquerade on the wrong NIC)."""

from __future__ import annotations

from pydantic import Field

from cnidoctor.facts.base import FactModel


class CiliumStatus(FactModel):
    masquerading: str = Field(description="BPF, IPTables or Disabled, as the agent reports it")
    #: the devices BPF masquerading runs on (empty for IPTables/Disabled)
    masquerade_devices: list[str] = Field(default_factory=list)
    ipv4_masquerade: bool | None = Field(default=None, description="IPv4: Enabled/Disabled")
    #: the devices the agent attached to (KubeProxyReplacement line), when shown
    devices: list[str] = Field(default_factory=list)
    source: str = Field(description="the command that printed it")
    line: str = Field(description="the Masquerading line, for evidence")
