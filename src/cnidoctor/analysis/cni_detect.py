"""Which CNI a node runs: configured, else read from its active CNI config and its devices.

Several rules must know the CNI in use to call something "stale" or "conflicting". The
cluster setting wins; with `auto`, the active config (what the runtime loads) is the
strongest evidence, then the agent-created devices (flannel.1, cilium_host, vxlan.calico).
"""

from __future__ import annotations

from cnidoctor.facts.cni import CniConfig
from cnidoctor.facts.network import Links

#: device name -> the CNI whose agent creates it
DEVICE_OWNERS: dict[str, str] = {
    "flannel.1": "flannel",
    "flannel-v6.1": "flannel",
    "flannel-wg": "flannel",
    "flannel-wg-v6": "flannel",
    "cilium_host": "cilium",
    "cilium_net": "cilium",
    "cilium_vxlan": "cilium",
    "cilium_geneve": "cilium",
    "cilium_wg0": "cilium",
    "vxlan.calico": "calico",
    "vxlan-v6.calico": "calico",
    "wireguard.cali": "calico",
    "wg-v6.cali": "calico",
    "weave": "weave",
    "datapath": "weave",
    "vxlan-6784": "weave",
    "kube-bridge": "kube-router",
    "kube-dummy-if": "kube-router",
}

#: CNIs the detector can name from a config (bridge configs are nobody's pod network)
KNOWN_CNIS = frozenset(DEVICE_OWNERS.values()) | {"antrea", "kube-ovn", "ovn-kubernetes"}


def device_owner(ifname: str) -> str | None:
    """The CNI an interface belongs to, for the infrastructure devices CNIs create."""
    if ifname in DEVICE_OWNERS:
        return DEVICE_OWNERS[ifname]
    if ifname.startswith("flannel.") and ifname[len("flannel.") :].isdigit():
        return "flannel"  # flannel.<VNI> with a non-default VNI
    return None


def cnis_from_devices(links: Links | None) -> list[str]:
    """The CNIs whose devices are present, in first-seen order."""
    found: list[str] = []
    for link in links.links if links is not None else []:
        owner = device_owner(link.ifname)
        if owner is not None and owner not in found:
            found.append(owner)
    return found


def cni_in_use(
    cluster_cni: str, cni_config_fact: CniConfig | None, links_fact: Links | None
) -> str | None:
    """The CNI this node runs, or None when the evidence does not name exactly one.

    `cluster_cni` is ClusterConfig.cni; pass `cni_config_fact=None` to decide from the
    devices alone (what runs, regardless of which config would be loaded).
    """
    if cluster_cni != "auto":
        return cluster_cni
    active = cni_config_fact.active if cni_config_fact is not None else None
    if active is not None and active.loadable and active.cni in KNOWN_CNIS:
        return active.cni
    found = cnis_from_devices(links_fact)
    return found[0] if len(found) == 1 else None
