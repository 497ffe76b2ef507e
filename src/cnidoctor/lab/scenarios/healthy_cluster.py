"""healthy-cluster: four consistent flannel nodes and a router, the multi-node baseline.

Same prefix everywhere, the router's neighbour table names each node's own MAC, every
node's cluster ports answer: no rule may report anything at warning or above, and the
connectivity matrix is green for every pair.
"""

from __future__ import annotations

from cnidoctor.lab.model import Neighbour, NodeSpec, Router, Scenario, Segment, Uplink

#: name, InternalIP, MAC, role, podCIDR
NODES = (
    ("k8s-cp-1", "10.10.0.11", "bc:24:11:10:00:11", "control-plane", "10.42.0.0/24"),
    ("k8s-cp-2", "10.10.0.12", "bc:24:11:10:00:12", "control-plane", "10.42.1.0/24"),
    ("k8s-cp-3", "10.10.0.13", "bc:24:11:10:00:13", "control-plane", "10.42.2.0/24"),
    ("k8s-w-1", "10.10.0.14", "bc:24:11:10:00:14", "worker", "10.42.3.0/24"),
)

SCENARIO = Scenario(
    name="healthy-cluster",
    tag="hc",
    description="four healthy flannel nodes (three servers with etcd, one agent) and a "
    "router with a correct neighbour table",
    incident=None,
    segments=(Segment(name="lan", bridge="br-lan", gateway="10.10.0.1/16"),),
    nodes=tuple(
        NodeSpec(
            name=name,
            netns=f"cnd-hc-{name.removeprefix('k8s-')}",
            role=role,
            uplinks=(
                Uplink(
                    ifname="eth0",
                    segment="lan",
                    address=f"{ip}/16",
                    default_metric=0,
                    mac=mac,
                ),
            ),
            pod_subnet=pod_subnet,
        )
        for name, ip, mac, role, pod_subnet in NODES
    ),
    routers=(
        Router(
            name="edge",
            netns="cnd-hc-edge",
            segment="lan",
            address="10.10.0.254/16",
            mac="9c:c9:eb:18:20:fe",
            neighbours=tuple(Neighbour(ip, mac) for _, ip, mac, _, _ in NODES),
        ),
    ),
    cluster={
        "pod_cidr": "10.42.0.0/16",
        "service_cidr": "10.43.0.0/16",
        "cni": "flannel",
        "flannel_backend": "vxlan",
    },
    serve_ports=True,
)
