"""Kernel facts: sysctls read from /proc/sys, kernel release/cmdline/modules, NIC offloads.

/proc/sys/net is per network namespace, so these values are the node's own even when
the node is reached with nsenter; /sys/class/net is not (it follows the sysfs mount).
"""

from __future__ import annotations

from pydantic import Field

from cnidoctor.facts.base import FactModel


def sysctl_key(path: str) -> str:
    """`/proc/sys/net/ipv4/conf/flannel.1/rp_filter` -> `net.ipv4.conf.flannel/1.rp_filter`.

    The sysctl(8) convention: dots inside a component (an interface name) become slashes,
    so the key can be pasted into `sysctl -w` as it is.
    """
    relative = path.removeprefix("/proc/sys/").strip("/")
    return ".".join(part.replace(".", "/") for part in relative.split("/"))


def iface_of_key(key: str) -> str | None:
    """The interface name in a `net.ipv4.conf.IFACE.rp_filter` key, dots restored."""
    parts = key.split(".")
    if len(parts) == 5 and parts[:3] == ["net", "ipv4", "conf"]:
        return parts[3].replace("/", ".")
    return None


class Sysctls(FactModel):
    """The sysctls cnidoctor reads, and those that do not exist (that absence is evidence)."""

    values: dict[str, str] = Field(
        default_factory=dict, description="sysctl key (sysctl(8) spelling) -> value"
    )
    missing: dict[str, str] = Field(
        default_factory=dict,
        description="key -> why it could not be read ('does not exist', 'Permission denied')",
    )
    paths: dict[str, str] = Field(default_factory=dict, description="key -> /proc/sys path")

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def int_value(self, key: str) -> int | None:
        value = self.values.get(key)
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    def is_missing(self, key: str) -> bool:
        return key in self.missing

    def path(self, key: str) -> str:
        """The /proc/sys path of a key, as it was read (or reconstructed for a missing key)."""
        if key in self.paths:
            return self.paths[key]
        return "/proc/sys/" + "/".join(p.replace("/", ".") for p in key.split("."))

    @staticmethod
    def rp_filter_key(iface: str) -> str:
        return f"net.ipv4.conf.{iface.replace('.', '/')}.rp_filter"

    def rp_filter(self, iface: str) -> int | None:
        """Effective rp_filter of an interface: the kernel uses max(conf.all, conf.IFACE)."""
        keys = (self.rp_filter_key("all"), self.rp_filter_key(iface))
        values = [v for v in (self.int_value(k) for k in keys) if v is not None]
        return max(values) if values else None

    def rp_filter_interfaces(self) -> list[str]:
        """Interfaces with an rp_filter value (not `all` and `default`)."""
        out = []
        for key in self.values:
            iface = iface_of_key(key)
            if iface and iface not in ("all", "default") and key.endswith(".rp_filter"):
                out.append(iface)
        return out


class KernelInfo(FactModel):
    """Kernel release, boot command line, IPv6/IPVS presence and the loadable modules."""

    release: str
    cmdline: str
    ipv6_present: bool
    ip_vs_present: bool
    modules: list[str] | None = Field(
        default=None,
        description=(
            "names in /proc/modules; None when unreadable (kernel without module support). "
            "Built-in modules never appear here, so a name missing from this list proves nothing"
        ),
    )
    modules_reason: str | None = Field(default=None, description="why modules is None")

    @property
    def cmdline_params(self) -> dict[str, str]:
        """`key=value` and bare `key` (value "") parameters before a `--` separator."""
        params: dict[str, str] = {}
        for word in self.cmdline.split():
            if word == "--":
                break
            key, _, value = word.partition("=")
            params[key] = value
        return params

    @property
    def ipv6_disabled_by_cmdline(self) -> bool:
        return self.cmdline_params.get("ipv6.disable") == "1"

    def module_listed(self, name: str) -> bool | None:
        """Listed in /proc/modules; None when unreadable. False may still mean built in."""
        if self.modules is None:
            return None
        return name in self.modules


class KubeProxyMode(FactModel):
    """kube-proxy's proxy mode as a node file says it (k3s config or unit, kube-proxy config)."""

    mode: str = Field(description="ipvs, iptables, nftables, ...")
    source: str = Field(description="the file and line that set it")


class Feature(FactModel):
    state: str = Field(description="on or off")
    fixed: bool = Field(default=False, description="cannot be changed ([fixed])")
    requested: str | None = Field(default=None, description="'[requested on]': wanted but not on")


class Offloads(FactModel):
    """`ethtool -k DEV`: offload feature -> state."""

    device: str
    features: dict[str, Feature]

    def is_on(self, name: str) -> bool | None:
        feature = self.features.get(name)
        return None if feature is None else feature.state == "on"
