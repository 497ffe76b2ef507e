"""flannel's node state (incident 001): subnet.env missing or wrong, flannel.1 missing."""

from __future__ import annotations

import json

from cnidoctor.collectors.cni import CniConfigCollector
from cnidoctor.collectors.flannel import FlannelSubnetEnvCollector
from cnidoctor.collectors.network import LinksCollector
from cnidoctor.models import ClusterConfig
from cnidoctor.rules.flannel import (
    FlannelSubnetEnvMismatch,
    FlannelSubnetEnvMissing,
    FlannelVxlanIfaceMissing,
)
from helpers import data, failed, findings, node

MISSING = failed(1, stderr=data("flannel/missing.stderr").split("\n", 1)[1])
LINKS = data("cni/links-flannel-clean.json")


def links_without(*names: str) -> str:
    """The real capture with some devices removed (as after a reboot that lost them)."""
    return json.dumps([link for link in json.loads(LINKS) if link["ifname"] not in names])


def links_with_flannel_down() -> str:
    links = json.loads(LINKS)
    for link in links:
        if link["ifname"] == "flannel.1":
            link["flags"] = [f for f in link["flags"] if f not in ("UP", "LOWER_UP")]
            link["operstate"] = "DOWN"
    return json.dumps(links)


def flannel_node(subnet_env: object, links: str, cluster: ClusterConfig | None = None):
    return node(
        {
            FlannelSubnetEnvCollector: [subnet_env],
            CniConfigCollector: [data("cni/kubeadm-flannel.txt")],
            LinksCollector: [links],
        },
        cluster=cluster or ClusterConfig(),
        name="boromir",
    )


def test_missing_subnet_env_on_a_flannel_node_is_the_first_domino() -> None:
    ctx = flannel_node(MISSING, links_without("flannel.1"))
    (finding,) = findings(FlannelSubnetEnvMissing, ctx)
    assert finding.nodes == ["boromir"]
    assert finding.evidence == [
        "/run/flannel/subnet.env does not exist",
        "active CNI config /etc/cni/net.d/10-flannel.conflist uses flannel",
        "flannel.1: absent",
    ]
    assert any("kubectl get node boromir -o jsonpath='{.spec.podCIDR}'" in f for f in finding.fix)


def test_present_subnet_env_or_another_cni_is_clean() -> None:
    assert findings(FlannelSubnetEnvMissing, flannel_node(data("flannel/k3s.txt"), LINKS)) == []
    cilium = flannel_node(MISSING, LINKS, ClusterConfig(cni="cilium"))
    assert findings(FlannelSubnetEnvMissing, cilium) == []


def test_flannel_1_missing_or_down_with_vxlan() -> None:
    (absent,) = findings(
        FlannelVxlanIfaceMissing, flannel_node(MISSING, links_without("flannel.1"))
    )
    assert absent.evidence[0] == "flannel.1: absent"
    (down,) = findings(FlannelVxlanIfaceMissing, flannel_node(MISSING, links_with_flannel_down()))
    assert down.evidence[0] == "flannel.1: present but down (DOWN)"
    assert down.fix[0] == "ip link set flannel.1 up"


def test_flannel_1_up_or_host_gw_backend_is_clean() -> None:
    assert findings(FlannelVxlanIfaceMissing, flannel_node(MISSING, LINKS)) == []
    host_gw = ClusterConfig(cni="flannel", flannel_backend="host-gw")
    assert (
        findings(
            FlannelVxlanIfaceMissing, flannel_node(MISSING, links_without("flannel.1"), host_gw)
        )
        == []
    )


def test_subnet_env_network_must_be_the_cluster_cidr() -> None:
    wrong = ClusterConfig(pod_cidr="10.244.0.0/16")
    (finding,) = findings(
        FlannelSubnetEnvMismatch, flannel_node(data("flannel/k3s.txt"), LINKS, wrong)
    )
    assert finding.evidence == [
        "FLANNEL_NETWORK=10.42.0.0/16 but the cluster CIDR is 10.244.0.0/16"
    ]
    right = ClusterConfig(pod_cidr="10.42.0.0/16")
    assert (
        findings(FlannelSubnetEnvMismatch, flannel_node(data("flannel/k3s.txt"), LINKS, right))
        == []
    )


def test_subnet_env_must_match_the_podcidr_the_api_assigned() -> None:
    from cnidoctor.facts.cluster import KubeNode

    ctx = flannel_node(data("flannel/k3s.txt"), LINKS, ClusterConfig(pod_cidr="10.42.0.0/16"))
    node_object = {"metadata": {"name": "boromir"}, "spec": {"podCIDR": "10.42.3.0/24"}}
    ctx.kube = KubeNode.from_object(node_object)
    (finding,) = findings(FlannelSubnetEnvMismatch, ctx)
    assert finding.evidence == [
        "FLANNEL_SUBNET=10.42.1.1/24 but the API gives node boromir spec.podCIDR 10.42.3.0/24"
    ]
    assert "FLANNEL_SUBNET=10.42.3.1/24" in finding.fix[0]
    ctx.kube = KubeNode.from_object({**node_object, "spec": {"podCIDR": "10.42.1.0/24"}})
    assert findings(FlannelSubnetEnvMismatch, ctx) == []
