"""seed-002-mac: incident 002's second outage, the router learning one MAC for every node.

Every node was moved to /8 (consistent now, but 10.0.0.0/8 swallows the 10.42.0.0/16 pod
range), k3s was restarted, and the router r5c's neighbour cache then held nl-k8s-01's
MAC (54:e1:ad:a5:1d:0f) for all four node IPs. Node to node traffic stays on the segment
and works; anything the router forwards to a node lands on nl-k8s-01. The poisoned cache
is seeded as permanent entries in the router's namespace.
"""

from __future__ import annotations

from cnidoctor.lab.model import Neighbour, Router, Scenario, Segment
from cnidoctor.lab.scenarios.seed_002 import (
    CLUSTER,
    GATEWAY,
    NODES,
    ODD_NODE,
    ROUTER_ADDRESS,
    ROUTER_MAC,
    ROUTER_NAME,
    lab_nodes,
    mac_of,
)

SCENARIO = Scenario(
    name="seed-002-mac",
    tag="s002m",
    description="incident 002, second outage: every node on /8 and the router r5c's "
    "neighbour table holding one MAC for all node IPs",
    incident="002_c9577e575cdf5baf.txt",
    segments=(Segment(name="lan", bridge="br-lan", gateway=GATEWAY),),
    nodes=lab_nodes("s002m", {name: 8 for name, *_ in NODES}, {}),
    routers=(
        Router(
            name=ROUTER_NAME,
            netns="cnd-s002m-r5c",
            segment="lan",
            address=ROUTER_ADDRESS,
            mac=ROUTER_MAC,
            neighbours=tuple(Neighbour(ip, mac_of(ODD_NODE)) for _, ip, *_ in NODES),
        ),
    ),
    cluster=CLUSTER,
    serve_ports=True,
)
