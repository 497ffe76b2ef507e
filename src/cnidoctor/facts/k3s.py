"""k3s settings from its config files and systemd units: what flannel and the node were told.

k3s merges /etc/rancher/k3s/config.yaml, then config.yaml.d/*.yaml in lexical order
(a key ending in "+" appends), and command-line flags override both. The model keeps
each file (with its error, if any) and the merged result with where each value came from.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from cnidoctor.facts.base import FactModel


class K3sFile(FactModel):
    path: str
    error: str | None = Field(default=None, description="why the file could not be used")


class K3sUnit(FactModel):
    """One k3s systemd unit and the flags of its ExecStart."""

    path: str
    name: str = Field(description="unit file name, e.g. k3s.service")
    role: str | None = Field(default=None, description="server or agent (the subcommand)")
    argv: list[str] = Field(default_factory=list, description="ExecStart split into words")
    flags: dict[str, Any] = Field(default_factory=dict, description="flag name -> value(s)")


class K3sConfig(FactModel):
    files: list[K3sFile] = Field(default_factory=list, description="config files read")
    units: list[K3sUnit] = Field(default_factory=list)
    settings: dict[str, Any] = Field(
        default_factory=dict, description="effective settings (flags over config files)"
    )
    sources: dict[str, str] = Field(
        default_factory=dict, description="setting -> the file or unit it came from"
    )
    binary: str | None = Field(default=None, description="path of the k3s binary, if on PATH")
    data_dir: bool = Field(default=False, description="/var/lib/rancher/k3s exists")

    @property
    def role(self) -> str | None:
        unit = self.unit
        return unit.role if unit is not None else None

    @property
    def unit(self) -> K3sUnit | None:
        """The unit whose flags count: k3s.service, else k3s-agent.service, else the first."""
        for name in ("k3s.service", "k3s-agent.service"):
            for unit in self.units:
                if unit.name == name:
                    return unit
        return self.units[0] if self.units else None

    def get(self, key: str) -> Any:
        return self.settings.get(key)

    def describe(self, key: str) -> str:
        """`key=value (from SOURCE)`, for evidence."""
        value = self.settings.get(key)
        shown = ",".join(map(str, value)) if isinstance(value, list) else value
        return f"{key}={shown} (from {self.sources.get(key, 'k3s default')})"

    def _str(self, key: str) -> str | None:
        value = self.settings.get(key)
        if isinstance(value, list):
            value = value[-1] if value else None
        return None if value is None else str(value)

    @property
    def flannel_backend(self) -> str:
        """vxlan unless set; "none" means k3s runs no CNI and another must be installed."""
        return self._str("flannel-backend") or "vxlan"

    @property
    def flannel_enabled(self) -> bool:
        return self.flannel_backend != "none" and not _truthy(self.settings.get("no-flannel"))

    @property
    def flannel_iface(self) -> str | None:
        return self._str("flannel-iface")

    @property
    def flannel_external_ip(self) -> bool:
        return _truthy(self.settings.get("flannel-external-ip"))

    @property
    def cluster_cidr(self) -> str | None:
        return self._str("cluster-cidr")

    @property
    def service_cidr(self) -> str | None:
        return self._str("service-cidr")

    @property
    def node_ip(self) -> str | None:
        return self._str("node-ip")


def _truthy(value: Any) -> bool:
    if isinstance(value, list):
        value = value[-1] if value else None
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("true", "1", "yes") if value is not None else False
