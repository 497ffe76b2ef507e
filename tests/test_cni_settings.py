"""Where a CNI's interface is pinned (cilium devices, calico autodetection, k3s and
kube-flannel flags) and how iface.multi-nic-ambiguous names it; the API collection of the
CNI DaemonSets and calico's Installation, over real HTTP against the lab's stand-in."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cnidoctor.analysis.cni_settings import (
    calico_autodetection,
    cilium_masquerade,
    interface_setting,
    k3s_flannel_iface,
)
from cnidoctor.collectors.cilium import CiliumStatusCollector, parse_cilium_status
from cnidoctor.collectors.network import LinksCollector, RoutesCollector
from cnidoctor.facts.base import FactStatus
from cnidoctor.facts.cluster import ClusterFacts, KubeDaemonSet, KubeNode
from cnidoctor.kube.access import KubeAccess
from cnidoctor.kube.client import collect_cluster
from cnidoctor.lab.apiserver import start_api
from cnidoctor.models import ClusterConfig
from cnidoctor.rules.addressing import MultiNicAmbiguous
from helpers import data, failed, findings, node

#: `cilium-dbg status` as the agent prints it (shape of cilium's docs and issue reports: no
#: cilium agent on the capture host, so this one is written, not captured)
CILIUM_STATUS = (
    "KVStore:                 Disabled\n"
    "Kubernetes:              Ok   1.34 (v1.34.2+k3s1) [linux/amd64]\n"
    "KubeProxyReplacement:    True   [ens18   192.168.178.11 fe80::be24:11ff:fe2d:9c01, "
    "ens19   10.50.10.11 fe80::be24:11ff:fe6a:4410 (Direct Routing)]\n"
    """Host firewall:           Disabled
Cilium:                  Ok   1.18.5 (v1.18.5-f2e4a6b1)
Masquerading:            BPF   [ens18]   10.42.0.0/16 [IPv4: Enabled, IPv6: Disabled]
Controller Status:       47/47 healthy
"""
)


def calico_node(env: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"namespace": "kube-system", "name": "calico-node"},
        "spec": {
            "selector": {"matchLabels": {"k8s-app": "calico-node"}},
            "template": {
                "spec": {
                    "initContainers": [
                        {"name": "install-cni", "env": [{"name": "X", "value": "1"}]}
                    ],
                    "containers": [{"name": "calico-node", "image": "calico/node", "env": env}],
                }
            },
        },
    }


KUBE_FLANNEL = {
    "apiVersion": "apps/v1",
    "kind": "DaemonSet",
    "metadata": {"namespace": "kube-flannel", "name": "kube-flannel-ds"},
    "spec": {
        "selector": {"matchLabels": {"app": "flannel"}},
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "kube-flannel",
                        "command": ["/opt/bin/flanneld"],
                        "args": ["--ip-masq", "--kube-subnet-mgr", "--iface=ens19"],
                    }
                ]
            }
        },
    },
}


def two_nic_node(cni: str, api: ClusterFacts | None = None, kube: KubeNode | None = None):
    ctx = node(
        {
            RoutesCollector: [
                data("snat/two-uplinks.route4.json"),
                data("snat/two-uplinks.route6.json"),
            ],
            LinksCollector: [data("snat/two-uplinks.addr.json")],
        },
        cluster=ClusterConfig(cni=cni, pod_cidr="10.42.0.0/16"),
        address="10.50.10.11",
    )
    ctx.api, ctx.kube = api, kube
    return ctx


# --- parsers -------------------------------------------------------------------------------


def test_daemonset_template_keeps_env_values_args_and_where_secrets_come_from() -> None:
    ds = KubeDaemonSet.from_object(
        calico_node(
            [
                {"name": "IP_AUTODETECTION_METHOD", "value": "interface=ens19"},
                {"name": "CALICO_IPV4POOL_CIDR", "value": "10.42.0.0/16"},
                {"name": "ETCD_KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            ]
        )
    )
    assert ds.env("IP_AUTODETECTION_METHOD") == "interface=ens19"
    assert ds.env("ETCD_KEY") == "<from secretKeyRef>"
    assert ds.env("MISSING") is None
    flannel = KubeDaemonSet.from_object(KUBE_FLANNEL)
    assert flannel.flag("iface") == "ens19" and flannel.flag("iface-regex") is None


def test_cilium_agent_status_masquerade_devices() -> None:
    status = parse_cilium_status(CILIUM_STATUS, "cilium-dbg status")
    assert status.masquerading == "BPF"
    assert status.masquerade_devices == ["ens18"]
    assert status.devices == ["ens18", "ens19"]
    assert status.ipv4_masquerade is True
    iptables = parse_cilium_status(
        "Masquerading:   IPTables [IPv4: Enabled, IPv6: Disabled]\n", "x"
    )
    assert (iptables.masquerading, iptables.masquerade_devices) == ("IPTables", [])


def test_cilium_status_absent_without_the_agent_cli() -> None:
    missing = [failed(127, "sh: cilium-dbg: not found"), failed(127, "sh: cilium: not found")]
    fact = CiliumStatusCollector.judge(
        [
            r.model_copy(update={"argv": list(c.argv)})
            for r, c in zip(missing, CiliumStatusCollector.commands, strict=True)
        ]
    )
    assert fact.status is FactStatus.ABSENT
    assert "no cilium agent CLI" in (fact.reason or "")


def test_cilium_masquerade_status_wins_over_the_configmap() -> None:
    api = ClusterFacts(
        reachable=True,
        config_maps={
            "kube-system/cilium-config": {
                "enable-ipv4-masquerade": "true",
                "enable-bpf-masquerade": "true",
            }
        },
    )
    masq = cilium_masquerade(api, parse_cilium_status(CILIUM_STATUS, "cilium-dbg status"))
    assert (masq.enabled, masq.bpf, masq.devices) == (True, True, ("ens18",))
    assert masq.evidence[0].startswith("kube-system/cilium-config: enable-ipv4-masquerade='true'")


# --- where the interface is pinned ----------------------------------------------------------


def test_k3s_node_args_annotation() -> None:
    def kube(args: list[str]) -> KubeNode:
        return KubeNode(name="w1", annotations={"k3s.io/node-args": json.dumps(args)})

    pinned = k3s_flannel_iface(kube(["agent", "--flannel-iface", "ens19"]))
    assert pinned is not None and pinned.pins and pinned.value == "ens19"
    loose = k3s_flannel_iface(kube(["agent"]))
    assert loose is not None and not loose.pins
    assert "annotation k3s.io/node-args" in loose.describe()
    assert k3s_flannel_iface(KubeNode(name="w1")) is None


@pytest.mark.parametrize(
    ("env", "pins", "shown"),
    [
        ([], False, "IP_AUTODETECTION_METHOD not set"),
        ([{"name": "IP_AUTODETECTION_METHOD", "value": "first-found"}], False, "= first-found"),
        ([{"name": "IP_AUTODETECTION_METHOD", "value": "interface=ens19"}], True, "interface="),
        ([{"name": "IP_AUTODETECTION_METHOD", "value": "can-reach=10.50.10.1"}], True, "can-r"),
        ([{"name": "IP", "value": "10.50.10.11"}], True, "calico IP = 10.50.10.11"),
    ],
)
def test_calico_daemonset_autodetection(env: list[dict[str, Any]], pins: bool, shown: str) -> None:
    ds = KubeDaemonSet.from_object(calico_node(env))
    setting = calico_autodetection(
        ClusterFacts(reachable=True, daemonsets={"kube-system/calico-node": ds})
    )
    assert setting is not None and setting.pins is pins
    assert shown in setting.describe()


def test_calico_installation_wins_over_the_daemonset() -> None:
    api = ClusterFacts(
        reachable=True,
        calico_installation={"nodeAddressAutodetectionV4": {"firstFound": True}},
    )
    setting = calico_autodetection(api)
    assert setting is not None and not setting.pins
    assert "Installation default" in setting.source
    api.calico_installation = {"nodeAddressAutodetectionV4": {"interface": "ens19"}}
    pinned = calico_autodetection(api)
    assert pinned is not None and pinned.pins


def test_multi_nic_ambiguous_names_cilium_devices_unset() -> None:
    api = ClusterFacts(
        reachable=True,
        config_maps={"kube-system/cilium-config": {"enable-ipv4-masquerade": "true"}},
    )
    [finding] = findings(MultiNicAmbiguous, two_nic_node("cilium", api))
    text = "\n".join(finding.evidence)
    assert "cilium devices not set (API: ConfigMap kube-system/cilium-config)" in text
    assert "not visible on the node" not in text  # the generic line is replaced
    assert "--set devices=ens19" in finding.fix[-1]
    api.config_maps["kube-system/cilium-config"]["devices"] = "ens19"
    assert findings(MultiNicAmbiguous, two_nic_node("cilium", api)) == []


def test_multi_nic_ambiguous_names_calico_first_found_and_is_quiet_when_pinned() -> None:
    loose = KubeDaemonSet.from_object(calico_node([]))
    api = ClusterFacts(reachable=True, daemonsets={"kube-system/calico-node": loose})
    [finding] = findings(MultiNicAmbiguous, two_nic_node("calico", api))
    assert any("IP_AUTODETECTION_METHOD not set" in e for e in finding.evidence)
    pinned = KubeDaemonSet.from_object(
        calico_node([{"name": "IP_AUTODETECTION_METHOD", "value": "interface=ens19"}])
    )
    api = ClusterFacts(reachable=True, daemonsets={"kube-system/calico-node": pinned})
    assert findings(MultiNicAmbiguous, two_nic_node("calico", api)) == []


def test_multi_nic_ambiguous_reads_k3s_and_kube_flannel_from_the_api() -> None:
    loose = KubeNode(name="w1", annotations={"k3s.io/node-args": '["agent"]'})
    [finding] = findings(MultiNicAmbiguous, two_nic_node("flannel", kube=loose))
    assert any("--flannel-iface (k3s) not set" in e for e in finding.evidence)
    pinned = KubeNode(
        name="w1", annotations={"k3s.io/node-args": '["agent","--flannel-iface","ens19"]'}
    )
    assert findings(MultiNicAmbiguous, two_nic_node("flannel", kube=pinned)) == []
    api = ClusterFacts(
        reachable=True,
        daemonsets={"kube-flannel/kube-flannel-ds": KubeDaemonSet.from_object(KUBE_FLANNEL)},
    )
    assert interface_setting("flannel", None, api).pins  # type: ignore[union-attr]
    assert findings(MultiNicAmbiguous, two_nic_node("flannel", api=api)) == []


# --- the API collection -----------------------------------------------------------------------


def test_collect_cluster_reads_cni_daemonsets_installation_and_cilium_config() -> None:
    objects = [
        calico_node([{"name": "IP_AUTODETECTION_METHOD", "value": "first-found"}]),
        KUBE_FLANNEL,
        {
            "apiVersion": "operator.tigera.io/v1",
            "kind": "Installation",
            "metadata": {"name": "default"},
            "spec": {"calicoNetwork": {"nodeAddressAutodetectionV4": {"canReach": "10.50.10.1"}}},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"namespace": "kube-system", "name": "cilium-config"},
            "data": {"enable-bpf-masquerade": "true", "devices": "ens19"},
        },
    ]
    with start_api(objects) as handle:
        facts = collect_cluster(KubeAccess("--kubeconfig", str(handle.kubeconfig_path), None))
    assert facts.reachable, facts.error
    assert facts.partial == []
    assert set(facts.daemonsets) == {"kube-system/calico-node", "kube-flannel/kube-flannel-ds"}
    assert facts.calico_installation == {"nodeAddressAutodetectionV4": {"canReach": "10.50.10.1"}}
    assert facts.config_maps["kube-system/cilium-config"]["devices"] == "ens19"


def test_collect_cluster_without_cni_objects_has_none() -> None:
    with start_api([]) as handle:
        facts = collect_cluster(KubeAccess("--kubeconfig", str(handle.kubeconfig_path), None))
    assert facts.reachable and facts.daemonsets == {} and facts.calico_installation is None
    assert facts.partial == []
