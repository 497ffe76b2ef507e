"""Links, addresses, routes and neighbours, as `ip -j` reports them (netlink, per namespace)."""

from __future__ import annotations

import ipaddress

from pydantic import Field

from cnidoctor.facts.base import FactModel


class Address(FactModel):
    family: str = Field(description="inet or inet6")
    local: str
    prefixlen: int
    scope: str = "global"

    @property
    def interface(self) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
        return ipaddress.ip_interface(f"{self.local}/{self.prefixlen}")

    @property
    def cidr(self) -> str:
        return f"{self.local}/{self.prefixlen}"


class VxlanInfo(FactModel):
    id: int | None = None
    local: str | None = None
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

    @property
    def is_default(self) -> bool:
        return self.dst in ("default", "0.0.0.0/0", "::/0")

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
        if self.is_default:
            return ipaddress.ip_network("::/0" if self.family == "inet6" else "0.0.0.0/0")
        try:
            return ipaddress.ip_network(self.dst, strict=False)
        except ValueError:
            return None

    def describe(self) -> str:
        parts = [self.dst]
        if self.gateway:
            parts += ["via", self.gateway]
        if self.dev:
            parts += ["dev", self.dev]
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
        return [r for r in self.routes if r.table == "main" and r.family == family and r.type == "unicast"]


class Neighbour(FactModel):
    dst: str
    dev: str | None = None
    lladdr: str | None = None
    state: list[str] = Field(default_factory=list)
    router: bool = False


class Neighbours(FactModel):
    entries: list[Neighbour]
