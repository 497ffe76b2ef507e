"""seed-000: incident 000, the new GPU worker whose flannel pod crashloops.

The worker `donovan-xps-8930` has UFW enabled with its default INPUT DROP and no allow
for cluster ports, br_netfilter not loaded, a default route on Ethernet (enp4s0) and a
second one on WiFi (wlp2s0, another segment, higher metric), and a CNI bin dir without
the `flannel` plugin that 10-flannel.conflist names. The control-plane node is healthy.
"""

from __future__ import annotations

from cnidoctor.lab.model import ALL_PLUGINS, NodeSpec, Scenario, Segment, Uplink

SCENARIO = Scenario(
    name="seed-000",
    tag="s000",
    description="incident 000: UFW INPUT DROP, no br_netfilter, WiFi+Ethernet default "
    "routes, flannel CNI plugin missing on the new worker",
    incident="000_0f4ecf0a1dbb4aba.txt",
    segments=(
        Segment(name="lan", bridge="br-lan", gateway="192.168.1.1/24"),
        Segment(name="wifi", bridge="br-wifi", gateway="192.168.50.1/24"),
    ),
    nodes=(
        NodeSpec(
            name="donovan-optiplex-9020m",
            netns="cnd-s000-cp",
            role="control-plane",
            uplinks=(
                Uplink(
                    ifname="eno1",
                    segment="lan",
                    address="192.168.1.246/24",
                    default_metric=100,
                    proto="dhcp",
                ),
            ),
            pod_subnet="10.244.0.0/24",
        ),
        NodeSpec(
            name="donovan-xps-8930",
            netns="cnd-s000-w1",
            role="worker",
            uplinks=(
                Uplink(
                    ifname="enp4s0",
                    segment="lan",
                    address="192.168.1.34/24",
                    default_metric=100,
                    proto="dhcp",
                ),
                Uplink(
                    ifname="wlp2s0",
                    segment="wifi",
                    address="192.168.50.34/24",
                    default_metric=600,
                    proto="dhcp",
                ),
            ),
            pod_subnet="10.244.2.0/24",
            ufw_enabled=True,
            br_netfilter=False,
            cni_plugins=tuple(p for p in ALL_PLUGINS if p != "flannel"),
        ),
    ),
    cluster={
        "pod_cidr": "10.244.0.0/16",
        "service_cidr": "10.96.0.0/12",
        "cni": "flannel",
        "flannel_backend": "vxlan",
    },
)
