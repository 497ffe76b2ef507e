"""Links, addresses, routes and neighbours, as `ip -j` reports them (netlink, per namespace)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from pydantic import Field

from cnidoctor.facts.base import FactModel

#: devices a CNI or kube-proxy creates: their addresses and routes are the cluster's own
CNI_DEVICE_NAMES = frozenset(
    {
        "cni0",
        "tunl0",
        "vxlan.calico",
        "vxlan-v6.calico",
        "wireguard.cali",
        "wg-v6.cali",
        "egress.calico",
        "flannel-wg",
        "flannel-wg-v6",
        "kube-ipvs0",
        "kube-bridge",
        "kube-dummy-if",
        "nodelocaldns",
        "weave",
        "datapath",
    }
)
CNI_DEVICE_PREFIXES = ("flannel.", "flannel-v6.", "cali", "cilium_", "lxc", "veth", "vxlan_sys_")
#: bridges of local container engines and VMs: they hold addresses but never carry the overlay
CONTAINER_BRIDGE_PREFIXES = ("docker", "br-", "virbr", "lxcbr", "lxdbr", "podman", "cni-podman")


def is_cni_device(name: str | None) -> bool:
    """True for devices the CNI (or kube-proxy / node-local-dns) owns, by their fixed names."""
    if not name:
        return False
    return name in CNI_DEVICE_NAMES or name.startswith(CNI_DEVICE_PREFIXES)


def is_container_bridge(name: str | None) -> bool:
    """True for docker/libvirt/lxd/podman bridges: host-local networks, not uplinks."""
    return name is not None and name.startswith(CONTAINER_BRIDGE_PREFIXES)


@lru_cache(maxsize=1 << 16)
def _interface(local: str, prefixlen: int) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """Parsed once per address (ipaddress is slow): the links parser checks every address
    with it, the rules ask again. Room for a 2,000-node cluster's addresses, link-local
    ones included, so the rules still find them after all nodes are parsed."""
    return ipaddress.ip_interface(f"{local}/{prefixlen}")


@lru_cache(maxsize=1 << 14)
def _network(prefix: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """A route's destination, parsed once per distinct prefix; None when it is not one."""
    try:
        return ipaddress.ip_network(prefix, strict=False)
    except ValueError:
        return None


class Address(FactModel):
    family: str = Field(description="inet or inet6")
    local: str
    prefixlen: int
    scope: str = "global"
    #: a further address in the subnet of a primary one (keepalived VIPs usually are)
    secondary: bool = False

    @property
    def interface(self) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
        return _interface(self.local, self.prefixlen)

    @property
    def cidr(self) -> str:
        return f"{self.local}/{self.prefixlen}"


class VxlanInfo(FactModel):
    id: int | None = None
    local: str | None = Field(default=None, description="source address (local or local6)")
    port: int | None = Field(default=None, description="UDP destination port")
    link: str | None = Field(default=None, description="underlay device name, when pinned")
    learning: bool | None = None


class Link(FactModel):
    ifindex: int
    ifname: str
    flags: list[str] = Field(default_factory=list)
    mtu: int | None = None
    operstate: str | None = None
    address: str | None = Field(default=None, description="MAC address")
    link: str | None = Field(default=None, description="peer or parent device")
    kind: str | None = Field(default=None, description="linkinfo.info_kind: vxlan, bridge, veth...")
    master: str | None = None
    vxlan: VxlanInfo | None = None
    addresses: list[Address] = Field(default_factory=list)

    @property
    def is_up(self) -> bool:
        return "UP" in self.flags

    @property
    def has_carrier(self) -> bool:
        return "LOWER_UP" in self.flags

    def global_addresses(self, family: str = "inet") -> list[Address]:
        return [a for a in self.addresses if a.family == family and a.scope == "global"]


class Links(FactModel):
    links: list[Link]

    def by_name(self, name: str) -> Link | None:
        return next((link for link in self.links if link.ifname == name), None)


class Nexthop(FactModel):
    """One path of a multipath (ECMP) route: `ip -j route` puts these under `nexthops`."""

    gateway: str | None = None
    dev: str | None = None
    weight: int | None = None
    flags: list[str] = Field(default_factory=list)


class Route(FactModel):
    dst: str = Field(description='"default" or a prefix; a bare address is a host route')
    type: str = "unicast"
    table: str = "main"
    dev: str | None = None
    gateway: str | None = None
    protocol: str | None = None
    scope: str | None = None
    prefsrc: str | None = None
    metric: int = 0
    flags: list[str] = Field(default_factory=list)
    family: str = "inet"
    nexthops: list[Nexthop] = Field(default_factory=list, description="paths of a multipath route")

    @property
    def is_default(self) -> bool:
        return self.dst in ("default", "0.0.0.0/0", "::/0")

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
        if self.is_default:
            return _network("::/0" if self.family == "inet6" else "0.0.0.0/0")
        return _network(self.dst)

    @property
    def is_connected(self) -> bool:
        """A subnet reached directly on a device (the kernel's route for an address prefix)."""
        return (
            self.type == "unicast"
            and self.dev is not None
            and self.gateway is None
            and not self.nexthops
            and not self.is_default
        )

    @property
    def devices(self) -> list[str]:
        """Every device the route may leave through (all paths of a multipath route)."""
        devs = [self.dev] if self.dev else []
        return devs + [n.dev for n in self.nexthops if n.dev and n.dev not in devs]

    @property
    def is_linkdown(self) -> bool:
        return "linkdown" in self.flags

    def describe(self) -> str:
        parts = [self.dst]
        if self.gateway:
            parts += ["via", self.gateway]
        if self.dev:
            parts += ["dev", self.dev]
        for hop in self.nexthops:
            parts.append("nexthop")
            if hop.gateway:
                parts += ["via", hop.gateway]
            if hop.dev:
                parts += ["dev", hop.dev]
        if self.metric:
            parts += ["metric", str(self.metric)]
        if self.table != "main":
            parts += ["table", self.table]
        if "linkdown" in self.flags:
            parts.append("linkdown")
        return " ".join(parts)


class Routes(FactModel):
    routes: list[Route]

    def main_table(self, family: str = "inet") -> list[Route]:
        return [
            r
            for r in self.routes
            if r.table == "main" and r.family == family and r.type == "unicast"
        ]


class Neighbour(FactModel):
    dst: str
    dev: str | None = None
    lladdr: str | None = None
    state: list[str] = Field(default_factory=list)
    router: bool = False


class Neighbours(FactModel):
    entries: list[Neighbour]
