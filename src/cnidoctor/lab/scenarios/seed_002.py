"""seed-002: incident 002, the routing loop while the nodes' prefix length was being changed.

Four k3s nodes share one bridged segment (10.10.0.2-5). nl-k8s-01 was already moved to
/8, the others are still on /16, and the router r5c (10.0.0.1/8, forwarding on) sits on
the same segment. The re-addressing left stale neighbour entries for 10.10.0.2 behind: on
nl-k8s-04 it names nl-k8s-02's MAC, on nl-k8s-02 and on r5c each other's. The lab has no
switch history, so those entries are seeded as permanent ones; from there the real
kernels do the rest: nl-k8s-02 forwards nl-k8s-04's packets for 10.10.0.2 to r5c with an
ICMP redirect ("Redirect Host(New nexthop: 10.10.0.2)"), r5c sends them back, and they
bounce until the TTL runs out ("Time to live exceeded"). etcd, kubelet and API traffic
to nl-k8s-01 from those two nodes dies with it.
"""

from __future__ import annotations

from cnidoctor.lab.model import Neighbour, NodeSpec, Router, Scenario, Segment, Uplink

#: name, InternalIP, MAC of its NIC, role (k3s servers run etcd), podCIDR
NODES = (
    ("nl-k8s-01", "10.10.0.2", "54:e1:ad:a5:1d:0f", "control-plane", "10.42.0.0/24"),
    ("nl-k8s-02", "10.10.0.4", "bc:24:11:5e:02:a4", "control-plane", "10.42.1.0/24"),
    ("nl-k8s-03", "10.10.0.5", "bc:24:11:7c:03:b5", "control-plane", "10.42.2.0/24"),
    ("nl-k8s-04", "10.10.0.3", "a8:a1:59:3c:04:c3", "worker", "10.42.3.0/24"),
)
ODD_NODE = "nl-k8s-01"
ROUTER_NAME, ROUTER_ADDRESS, ROUTER_MAC = "r5c", "10.0.0.1/8", "9c:c9:eb:18:20:01"
#: the Proxmox bridge address the VMs use as their gateway (the switch namespace holds it)
GATEWAY = "10.10.0.1/16"
CLUSTER = {
    "pod_cidr": "10.42.0.0/16",
    "service_cidr": "10.43.0.0/16",
    "cni": "flannel",
    "flannel_backend": "vxlan",
}


def mac_of(name: str) -> str:
    return next(mac for node, _, mac, _, _ in NODES if node == name)


def ip_of(name: str) -> str:
    return next(ip for node, ip, _, _, _ in NODES if node == name)


def lab_nodes(
    tag: str, prefixes: dict[str, int], neighbours: dict[str, tuple[Neighbour, ...]]
) -> tuple[NodeSpec, ...]:
    """The four nodes with the given prefix length each and seeded neighbour entries."""
    return tuple(
        NodeSpec(
            name=name,
            netns=f"cnd-{tag}-n{name[-1]}",
            role=role,
            uplinks=(
                Uplink(
                    ifname="ens18",
                    segment="lan",
                    address=f"{ip}/{prefixes[name]}",
                    default_metric=0,
                    mac=mac,
                ),
            ),
            pod_subnet=pod_subnet,
            neighbours=neighbours.get(name, ()),
        )
        for name, ip, mac, role, pod_subnet in NODES
    )


SCENARIO = Scenario(
    name="seed-002",
    tag="s002",
    description="incident 002: nl-k8s-01 on /8, the others on /16; stale neighbour entries "
    "bounce its traffic between nl-k8s-02 and the router r5c (ICMP redirects, TTL exceeded)",
    incident="002_c9577e575cdf5baf.txt",
    segments=(Segment(name="lan", bridge="br-lan", gateway=GATEWAY),),
    nodes=lab_nodes(
        "s002",
        {name: 8 if name == ODD_NODE else 16 for name, *_ in NODES},
        {
            "nl-k8s-04": (Neighbour(ip_of(ODD_NODE), mac_of("nl-k8s-02")),),
            "nl-k8s-02": (Neighbour(ip_of(ODD_NODE), ROUTER_MAC),),
        },
    ),
    routers=(
        Router(
            name=ROUTER_NAME,
            netns="cnd-s002-r5c",
            segment="lan",
            address=ROUTER_ADDRESS,
            mac=ROUTER_MAC,
            neighbours=(Neighbour(ip_of(ODD_NODE), mac_of("nl-k8s-02")),),
        ),
    ),
    cluster=CLUSTER,
    serve_ports=True,
)
