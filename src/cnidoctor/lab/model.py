"""Scenario data: segments, nodes and their faults, as plain frozen dataclasses.

A scenario says *what* a lab looks like; lab/build.py turns it into namespaces. Keeping the
data separate lets tests and `lab list` read a scenario without root and without building it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

#: every network namespace the lab makes starts with this, so it never takes a foreign name
NETNS_PREFIX = "cnd-"
#: the plugins a flannel node's CNI bin dir normally holds (the containernetworking set + flannel)
ALL_PLUGINS: tuple[str, ...] = (
    "bandwidth",
    "bridge",
    "firewall",
    "flannel",
    "host-local",
    "loopback",
    "portmap",
)
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_NETNS = re.compile(r"^cnd-[a-z0-9-]{1,40}$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


@dataclass(frozen=True)
class Neighbour:
    """A permanent neighbour entry (`ip neigh replace IP lladdr MAC nud permanent`).

    The lab has no switch history: stale ARP entries an incident left behind are seeded
    this way, on the host's first uplink.
    """

    ip: str
    mac: str


@dataclass(frozen=True)
class Segment:
    """One L2 segment: a bridge in the scenario's switch namespace, with the router's address."""

    name: str
    bridge: str
    #: the router/gateway address on the segment, with prefix (e.g. 192.168.1.1/24)
    gateway: str

    @property
    def gateway_ip(self) -> str:
        return str(ipaddress.ip_interface(self.gateway).ip)


@dataclass(frozen=True)
class Uplink:
    """A node NIC: a veth whose peer sits on a segment bridge in the switch namespace."""

    ifname: str
    segment: str
    #: the node's address on the segment, with prefix
    address: str
    #: metric of a default route via the segment's gateway; None = no default route here
    default_metric: int | None = None
    #: how the default route was learned (`proto` column of `ip route`): dhcp on laptops
    proto: str = "static"
    mtu: int = 1500
    #: a fixed MAC (lower case), so scenarios can name it in neighbour entries; None = random
    mac: str | None = None

    @property
    def ip(self) -> str:
        return str(ipaddress.ip_interface(self.address).ip)


@dataclass(frozen=True)
class NodeSpec:
    """One Kubernetes node: a network namespace plus a node-private mount namespace."""

    name: str
    netns: str
    role: str
    uplinks: tuple[Uplink, ...]
    #: the node's podCIDR (flannel lease); cni0 gets its first address
    pod_subnet: str
    ufw_enabled: bool = False
    #: False = br_netfilter looks unloaded inside the node (/proc/sys/net/bridge masked)
    br_netfilter: bool = True
    ip_forward: bool = True
    #: rp_filter for all/default (Ubuntu's default is 2 = loose)
    rp_filter: int = 2
    cni_plugins: tuple[str, ...] = ALL_PLUGINS
    #: flannel's state as a running flanneld leaves it: subnet.env, flannel.1, cni0, FLANNEL-*
    flannel_running: bool = True
    flannel_mtu: int = 1450
    #: leave flannel.1's tx checksum offload on (flannel's default, nic.offload-bug); healthy
    #: nodes apply flannel's documented workaround (`ethtool -K flannel.1 tx-checksum-ip-generic
    #: off`)
    vxlan_tx_checksum: bool = False
    #: permanent (stale) neighbour entries on the first uplink
    neighbours: tuple[Neighbour, ...] = ()
    #: drop every inbound packet (iptables INPUT DROP): a node the others cannot reach
    drop_inbound: bool = False
    #: runs an etcd member; None = the inventory default (control-plane nodes do)
    etcd: bool | None = None
    #: flanneld masquerades pod traffic (--ip-masq, FLANNEL_IPMASQ); off = no FLANNEL-POSTRTG
    ip_masq: bool = True

    @property
    def address(self) -> str:
        """The InternalIP: the first uplink's address (flannel's public-ip and VXLAN local)."""
        return self.uplinks[0].ip

    @property
    def underlay(self) -> str:
        return self.uplinks[0].ifname

    @property
    def cni0_address(self) -> str:
        net = ipaddress.ip_network(self.pod_subnet)
        return f"{net.network_address + 1}/{net.prefixlen}"

    @property
    def vtep_address(self) -> str:
        """flannel.1's address: the network address of the node's subnet, as /32."""
        return f"{ipaddress.ip_network(self.pod_subnet).network_address}/32"

    @property
    def vtep_mac(self) -> str:
        """A stable, locally administered MAC for flannel.1, so peers' fdb entries match it."""
        digest = hashlib.sha256(self.netns.encode()).digest()
        return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


class ScenarioExtras(Protocol):
    """More of a scenario, built by its own code after the nodes and their mounts."""

    @property
    def netns(self) -> tuple[str, ...]:
        """The namespaces `build` makes (recorded in the lab state before it makes them)."""
        ...

    def build(self, scenario: Scenario, state: Any) -> None: ...


@dataclass(frozen=True)
class Router:
    """A non-Kubernetes router on a segment (its own namespace): forwarding on, optionally a
    seeded neighbour table. It goes under the inventory's `routers:`."""

    name: str
    netns: str
    segment: str
    #: its address on the segment, with the prefix it believes in (e.g. 10.0.0.1/8)
    address: str
    ifname: str = "eth0"
    mac: str | None = None
    forwarding: bool = True
    neighbours: tuple[Neighbour, ...] = ()

    @property
    def ip(self) -> str:
        return str(ipaddress.ip_interface(self.address).ip)


@dataclass(frozen=True)
class Scenario:
    """A replayable lab: its segments, nodes, and the cluster settings of its inventory."""

    name: str
    #: short tag used in namespace names (cnd-TAG-...)
    tag: str
    description: str
    #: the incident report this replays (file name under the shared incidents dir), if any
    incident: str | None
    segments: tuple[Segment, ...]
    nodes: tuple[NodeSpec, ...]
    cluster: dict[str, str] = field(default_factory=dict)
    #: Kubernetes objects the lab's API stand-in serves (None = the scenario has no API)
    api_objects: Callable[[], list[dict[str, Any]]] | None = None
    routers: tuple[Router, ...] = ()
    #: stand-in listeners on every node's cluster TCP ports (kubelet, API, etcd) while up,
    #: so probes find them open as on a running cluster (lab/listeners.py)
    serve_ports: bool = False
    #: what the plain model cannot say (pods, an upstream network, service NAT): built after
    #: the nodes, its namespaces removed with the scenario's (lab/podnet.py PodNetwork)
    extras: ScenarioExtras | None = None

    def __post_init__(self) -> None:
        _check_scenario(self)

    @property
    def switch_netns(self) -> str:
        return f"{NETNS_PREFIX}{self.tag}-sw"

    @property
    def netns_names(self) -> list[str]:
        """Every namespace the scenario makes, switch first (it must exist before the veths)."""
        return [
            self.switch_netns,
            *(n.netns for n in self.nodes),
            *(r.netns for r in self.routers),
            *(self.extras.netns if self.extras is not None else ()),
        ]

    def segment(self, name: str) -> Segment:
        for segment in self.segments:
            if segment.name == name:
                return segment
        raise KeyError(name)

    def switch_port(self, node: NodeSpec, uplink: Uplink) -> str:
        """The switch-side veth name: unique in the switch namespace, at most 15 characters."""
        index = self.nodes.index(node)
        return f"n{index}-{uplink.ifname}"[:15]

    def router_port(self, router: Router) -> str:
        """The switch-side veth name of a router (r<index>-<ifname>), at most 15 characters."""
        return f"r{self.routers.index(router)}-{router.ifname}"[:15]


def _check_scenario(scenario: Scenario) -> None:
    """Catch scenario typos at import time rather than halfway through `up`."""
    names = scenario.netns_names
    if len(set(names)) != len(names):
        raise ValueError(f"{scenario.name}: duplicate namespace names")
    for netns in names:
        if not _NETNS.match(netns):
            raise ValueError(f"{scenario.name}: namespace {netns!r} must match {_NETNS.pattern}")
    segment_names = {s.name for s in scenario.segments}
    for segment in scenario.segments:
        if not _IFNAME.match(segment.bridge):
            raise ValueError(f"{scenario.name}: bad bridge name {segment.bridge!r}")
    for node in scenario.nodes:
        if not node.uplinks:
            raise ValueError(f"{scenario.name}: node {node.name} has no uplink")
        for uplink in node.uplinks:
            if uplink.segment not in segment_names:
                raise ValueError(
                    f"{scenario.name}: {node.name} uses unknown segment {uplink.segment}"
                )
            for ifname in (uplink.ifname, scenario.switch_port(node, uplink)):
                if not _IFNAME.match(ifname):
                    raise ValueError(f"{scenario.name}: bad interface name {ifname!r}")
        ports = [scenario.switch_port(node, u) for u in node.uplinks]
        if len(set(ports)) != len(ports):
            raise ValueError(f"{scenario.name}: switch port names of {node.name} collide")
    for router in scenario.routers:
        if router.segment not in segment_names:
            raise ValueError(
                f"{scenario.name}: {router.name} uses unknown segment {router.segment}"
            )
        for ifname in (router.ifname, scenario.router_port(router)):
            if not _IFNAME.match(ifname):
                raise ValueError(f"{scenario.name}: bad interface name {ifname!r}")
    macs = [u.mac for n in scenario.nodes for u in n.uplinks] + [r.mac for r in scenario.routers]
    neighbours = [e for n in scenario.nodes for e in n.neighbours]
    neighbours += [e for r in scenario.routers for e in r.neighbours]
    for mac in [m for m in macs if m is not None] + [e.mac for e in neighbours]:
        if not _MAC.match(mac):
            raise ValueError(f"{scenario.name}: bad MAC address {mac!r} (lower-case hex)")
    for entry in neighbours:
        ipaddress.ip_address(entry.ip)
