"""healthy-node: one k3s-style control-plane node with everything a flannel node needs.

The baseline every rule must stay quiet on (nothing at warning or above).
"""

from __future__ import annotations

from cnidoctor.lab.model import NodeSpec, Scenario, Segment, Uplink

SCENARIO = Scenario(
    name="healthy-node",
    tag="hn",
    description="one healthy flannel control-plane node (k3s defaults, no host firewall)",
    incident=None,
    segments=(Segment(name="lan", bridge="br-lan", gateway="10.10.0.1/24"),),
    nodes=(
        NodeSpec(
            name="lab-cp-1",
            netns="cnd-hn-cp",
            role="control-plane",
            uplinks=(
                Uplink(ifname="eth0", segment="lan", address="10.10.0.2/24", default_metric=0),
            ),
            pod_subnet="10.42.0.0/24",
        ),
    ),
    cluster={
        "pod_cidr": "10.42.0.0/16",
        "service_cidr": "10.43.0.0/16",
        "cni": "flannel",
        "flannel_backend": "vxlan",
    },
)
