"""flannel's node state: subnet.env (its lease) and flannel.1 (its VXLAN device).

Incident 001: after a reboot `/run/flannel/subnet.env` (tmpfs) was not rewritten and
flannel.1 never came up while every node said Ready; pods stayed ContainerCreating.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Iterator

from cnidoctor.analysis.cni_detect import cni_in_use
from cnidoctor.collectors.cni import CniConfigCollector
from cnidoctor.collectors.flannel import SUBNET_ENV, FlannelSubnetEnvCollector
from cnidoctor.collectors.k3s import K3sConfigCollector
from cnidoctor.collectors.network import LinksCollector
from cnidoctor.facts.base import FactStatus
from cnidoctor.models import Severity
from cnidoctor.rules.base import Hit, NodeContext, Rule

VXLAN_DEVICE = "flannel.1"
#: IPv4 VXLAN encapsulation overhead (outer IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14)
VXLAN_OVERHEAD = 50


def runs_flannel(node: NodeContext) -> bool:
    """flannel per the cluster setting, else per the node's active CNI config or devices."""
    links = node.fact_or_none(LinksCollector)
    return cni_in_use(node.cluster.cni, node.fact_or_none(CniConfigCollector), links) == "flannel"


def flannel_backend(node: NodeContext) -> str:
    """The backend in use: inventory setting, k3s flag, else flannel's default vxlan."""
    if node.cluster.flannel_backend:
        return node.cluster.flannel_backend
    k3s = node.fact_or_none(K3sConfigCollector)
    return k3s.flannel_backend if k3s is not None else "vxlan"


def cluster_network(node: NodeContext) -> str | None:
    """The pod CIDR flannel should use: the cluster setting, else k3s's cluster-cidr."""
    if node.cluster.pod_cidr:
        return node.cluster.pod_cidr
    k3s = node.fact_or_none(K3sConfigCollector)
    return k3s.cluster_cidr if k3s is not None else None


def node_pod_cidr(node: NodeContext) -> str | None:
    """The node's IPv4 podCIDR as the API assigned it (None without the API)."""
    for cidr in node.kube.pod_cidrs if node.kube is not None else []:
        if ipaddress.ip_network(cidr, strict=False).version == 4:
            return cidr
    return None


def subnet_env_content(node: NodeContext) -> str | None:
    """subnet.env as flannel would write it, from the API's podCIDR and the cluster CIDR."""
    pod_cidr, network = node_pod_cidr(node), cluster_network(node)
    if pod_cidr is None or network is None:
        return None
    subnet = ipaddress.ip_network(pod_cidr, strict=False)
    gateway = f"{subnet.network_address + 1}/{subnet.prefixlen}"
    return (
        f"FLANNEL_NETWORK={network}\nFLANNEL_SUBNET={gateway}\n"
        f"FLANNEL_MTU={_overlay_mtu(node)}\nFLANNEL_IPMASQ=true\n"
    )


def _overlay_mtu(node: NodeContext) -> int:
    """Underlay MTU minus the VXLAN overhead; the underlay is the device holding the InternalIP."""
    links = node.fact_or_none(LinksCollector)
    if links is not None and node.address:
        for link in links.links:
            if link.mtu and any(a.local == node.address for a in link.addresses):
                return link.mtu - VXLAN_OVERHEAD
    return 1500 - VXLAN_OVERHEAD


def _restart_flannel(node: NodeContext) -> str:
    if node.fact_or_none(K3sConfigCollector) is not None:
        unit = "k3s" if node.role == "control-plane" else "k3s-agent"
        return f"systemctl restart {unit}   (k3s's embedded flannel re-reads the file)"
    return "kubectl -n kube-flannel delete pod -l app=flannel --field-selector " + shlex.quote(
        f"spec.nodeName={node.name}"
    )


class FlannelSubnetEnvMissing(Rule):
    id = "flannel.subnet-env-missing"
    severity = Severity.CRITICAL
    title = "/run/flannel/subnet.env is missing on a flannel node"
    explanation = (
        "The flannel CNI plugin reads the node's pod subnet from /run/flannel/subnet.env on "
        "every pod sandbox; /run is tmpfs, so a reboot wipes it and only a working flanneld "
        "writes it again. Without it every new pod on the node stays ContainerCreating "
        "('loadFlannelSubnetEnv failed'), while the node still reports Ready."
    )
    needs = (FlannelSubnetEnvCollector, CniConfigCollector, LinksCollector)
    fix = (
        "rebuild /run/flannel/subnet.env from the node's spec.podCIDR and the cluster CIDR "
        "(FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ)",
        "restart flannel (k3s: systemctl restart k3s or k3s-agent)",
    )
    causes = ("node.ready-but-cni-broken", "pods.stale-unknown", "flannel.vxlan-iface-missing")

    def check(self, node: NodeContext) -> Iterator[Hit]:
        envelope = node.fact_envelope(FlannelSubnetEnvCollector)
        if envelope is None or envelope.status is not FactStatus.ABSENT:
            return
        if not runs_flannel(node):
            return
        evidence = [f"{SUBNET_ENV} does not exist"]
        config = node.fact_or_none(CniConfigCollector)
        if config is not None and config.active is not None:
            evidence.append(f"active CNI config {config.active.path} uses flannel")
        links = node.fact(LinksCollector)
        device = links.by_name(VXLAN_DEVICE)
        evidence.append(f"{VXLAN_DEVICE}: {'present' if device else 'absent'}")
        content = subnet_env_content(node)
        if content is not None:
            evidence.append(f"API: node {node.name} spec.podCIDR {node_pod_cidr(node)}")
            # one line to paste: printf turns the \n escapes into the file's line breaks
            fix = [
                "mkdir -p /run/flannel && printf "
                + shlex.quote(content.replace("\n", "\\n"))
                + f" > {SUBNET_ENV}.tmp && mv {SUBNET_ENV}.tmp {SUBNET_ENV}",
                _restart_flannel(node),
                "make it survive reboots: back the file up once flannel wrote it (e.g. to "
                "/var/lib/rancher/k3s/flannel-subnet.env) and restore it before k3s starts",
            ]
        else:
            fix = [
                "read the node's pod subnet: kubectl get node "
                + shlex.quote(node.name)
                + " -o jsonpath='{.spec.podCIDR}'",
                f"write {SUBNET_ENV}: FLANNEL_NETWORK=<cluster CIDR>, FLANNEL_SUBNET=<first "
                "address of the podCIDR>/<its prefix>, FLANNEL_MTU=<underlay MTU - 50>, "
                "FLANNEL_IPMASQ=true",
                _restart_flannel(node),
            ]
        yield Hit(evidence=evidence, fix=fix)


class FlannelSubnetEnvMismatch(Rule):
    id = "flannel.subnet-env-mismatch"
    severity = Severity.CRITICAL
    title = "subnet.env does not match the node's podCIDR or the cluster CIDR"
    explanation = (
        "flannel hands out pod addresses from FLANNEL_SUBNET, while every other node routes "
        "the node's spec.podCIDR to it. When they differ (a hand-written or stale file, a "
        "re-registered node), pods get addresses that the rest of the cluster routes "
        "elsewhere, and cross-node traffic to them is lost."
    )
    needs = (FlannelSubnetEnvCollector,)
    fix = (
        "rewrite /run/flannel/subnet.env from the node's spec.podCIDR and the cluster CIDR, "
        "then restart flannel",
    )

    def check(self, node: NodeContext) -> Iterator[Hit]:
        env = node.fact(FlannelSubnetEnvCollector)
        evidence: list[str] = []
        pod_cidr = node_pod_cidr(node)
        subnet = env.subnet_network
        if pod_cidr and subnet is not None and subnet != ipaddress.ip_network(pod_cidr):
            evidence.append(
                f"FLANNEL_SUBNET={env.subnet} but the API gives node {node.name} "
                f"spec.podCIDR {pod_cidr}"
            )
        network = cluster_network(node)
        if (
            network
            and env.network
            and (ipaddress.ip_network(env.network, strict=False) != ipaddress.ip_network(network))
        ):
            evidence.append(f"FLANNEL_NETWORK={env.network} but the cluster CIDR is {network}")
        if not evidence:
            return
        content = subnet_env_content(node)
        fix = (
            [f"rewrite {SUBNET_ENV} with: " + content.replace("\n", " ").strip()]
            if content
            else [f"rewrite {SUBNET_ENV} from the node's spec.podCIDR and the cluster CIDR"]
        )
        fix.append(_restart_flannel(node))
        yield Hit(evidence=evidence, fix=fix)


class FlannelVxlanIfaceMissing(Rule):
    id = "flannel.vxlan-iface-missing"
    severity = Severity.CRITICAL
    title = "flannel uses VXLAN but flannel.1 is missing or down"
    explanation = (
        "With the vxlan backend every pod packet to another node is encapsulated by the "
        "flannel.1 device. Without it (flanneld did not initialise, or the device was deleted "
        "or left down) there is no cross-node pod traffic at all, though the node is Ready."
    )
    needs = (LinksCollector, CniConfigCollector)
    fix = ("restart flannel (k3s: systemctl restart k3s or k3s-agent); fix what stops it first",)

    def check(self, node: NodeContext) -> Iterator[Hit]:
        links = node.fact(LinksCollector)
        if not runs_flannel(node) or flannel_backend(node) != "vxlan":
            return
        device = links.by_name(VXLAN_DEVICE)
        if device is not None and device.is_up:
            return
        state = "absent" if device is None else f"present but down ({device.operstate})"
        evidence = [f"{VXLAN_DEVICE}: {state}", f"flannel backend: {flannel_backend(node)}"]
        fix = [_restart_flannel(node)]
        if device is not None:
            fix.insert(0, shlex.join(["ip", "link", "set", VXLAN_DEVICE, "up"]))
        yield Hit(evidence=evidence, fix=fix)


RULES: list[type[Rule]] = [
    FlannelSubnetEnvMissing,
    FlannelSubnetEnvMismatch,
    FlannelVxlanIfaceMissing,
]
