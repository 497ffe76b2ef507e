"""egress.no-snat from the node's facts: the NAT walk on real captured iptables and nft
rulesets (tests/data/snat, made by capture.py in a scratch namespace), and from a probe."""

from __future__ import annotations

import pytest

from cnidoctor.analysis.snat import egress_packet, pod_egress_nat
from cnidoctor.collectors.iptables import IptablesCollector, parse_iptables_save
from cnidoctor.collectors.network import LinksCollector, RoutesCollector
from cnidoctor.collectors.nftables import NftablesCollector, parse_nft_json
from cnidoctor.collectors.pod_probes import PodProbesCollector
from cnidoctor.engine import link_causes, run_node_rules
from cnidoctor.models import ClusterConfig, Severity
from cnidoctor.rules.addressing import MultiNicAmbiguous
from cnidoctor.rules.egress import EgressNoSnat
from cnidoctor.rules.routing import MultipleDefaultRoutes
from helpers import data, findings, node
from test_pod_probe_parsers import probe_results

FLANNEL = ClusterConfig(cni="flannel", pod_cidr="10.42.0.0/16", service_cidr="10.43.0.0/16")


def snat_node(case: str, cluster: ClusterConfig = FLANNEL, **extra: object):
    rules = data(f"snat/{case}.nft-save.txt")
    outputs = {
        RoutesCollector: [
            data("snat/two-uplinks.route4.json"),
            data("snat/two-uplinks.route6.json"),
        ],
        LinksCollector: [data("snat/two-uplinks.addr.json")],
        IptablesCollector: [rules, "", rules, "", "", ""],
        NftablesCollector: [data(f"snat/{case}.nft.json")],
    }
    return node(outputs, cluster=cluster, name="pve-k3s-w1", address="10.50.10.11", **extra)


@pytest.mark.parametrize(
    ("case", "dev", "nat"),
    [
        ("flannel-masq", "ens19", True),
        ("flannel-masq", "ens18", True),
        ("masq-ens19", "ens19", True),
        ("masq-ens19", "ens18", False),
        ("masq-ens18-only", "ens19", False),
        ("masq-ens18-only", "ens18", True),
        ("no-masq", "ens19", False),
        ("nft-masq-ens19", "ens19", True),
        ("nft-masq-ens19", "ens18", False),
        ("nft-docker-only", "ens19", False),
    ],
)
def test_nat_walk_on_captured_rulesets(case: str, dev: str, nat: bool) -> None:
    ipt = parse_iptables_save(data(f"snat/{case}.nft-save.txt"), "nft")
    nft = parse_nft_json(data(f"snat/{case}.nft.json"))
    verdict = pod_egress_nat(egress_packet("10.42.1.12", "1.1.1.1", dev), [ipt], nft)
    assert verdict.nat is nat, verdict
    assert not verdict.uncertain


def test_kube_proxy_masquerades_only_what_it_marked() -> None:
    ipt = parse_iptables_save(data("snat/no-masq.nft-save.txt"), "nft")
    verdict = pod_egress_nat(egress_packet("10.42.1.12", "1.1.1.1", "ens19"), [ipt])
    assert not verdict.nat
    assert verdict.walked == ["iptables-nft nat POSTROUTING"]


def test_pod_to_pod_traffic_is_not_masqueraded_by_flannel() -> None:
    ipt = parse_iptables_save(data("snat/flannel-masq.nft-save.txt"), "nft")
    verdict = pod_egress_nat(egress_packet("10.42.1.12", "10.42.2.12", "flannel.1"), [ipt])
    assert not verdict.nat


@pytest.mark.parametrize("case", ["flannel-masq", "masq-ens19", "nft-masq-ens19"])
def test_clean_when_the_egress_nic_masquerades(case: str) -> None:
    assert findings(EgressNoSnat, snat_node(case)) == []


def test_no_masquerade_anywhere_is_its_own_root_cause() -> None:
    """Incident 003's workers: nothing masquerades the pod CIDR on any NIC, so the two
    default routes do not explain it (they are still reported, as their own roots)."""
    ctx = snat_node("no-masq")
    [finding] = findings(EgressNoSnat, ctx)
    assert finding.severity is Severity.WARNING  # facts only: no probe confirmed it
    text = "\n".join(finding.evidence)
    assert "leaving by ens19: no MASQUERADE/SNAT rule matches it" in text
    assert "no MASQUERADE/SNAT for the pod CIDR on any uplink" in text
    assert "not confirmed by a probe from a pod" in text
    assert finding.fix[0].endswith("-o ens19 -j MASQUERADE")
    rules = [MultipleDefaultRoutes, MultiNicAmbiguous, EgressNoSnat]
    linked = {f.id: f for f in link_causes(run_node_rules([ctx], rules).findings, rules)}
    assert linked["egress.no-snat"].root_cause
    assert linked["route.multiple-default"].root_cause


def test_masquerade_on_the_wrong_nic_follows_from_the_nic_choice() -> None:
    ctx = snat_node("masq-ens18-only")
    [finding] = findings(EgressNoSnat, ctx)
    assert "masqueraded only when it leaves by ens18, not by the egress interface ens19" in (
        "\n".join(finding.evidence)
    )
    rules = [MultipleDefaultRoutes, EgressNoSnat]
    linked = {f.id: f for f in link_causes(run_node_rules([ctx], rules).findings, rules)}
    assert linked["egress.no-snat"].caused_by == ["route.multiple-default@pve-k3s-w1"]


def test_nft_native_table_without_pod_masquerade_triggers() -> None:
    [finding] = findings(EgressNoSnat, snat_node("nft-docker-only"))
    assert "nft inet hostnat postrouting" in "\n".join(finding.evidence)


def test_probe_proof_makes_it_critical_and_quotes_the_far_end() -> None:
    ctx = snat_node("no-masq")
    ctx.facts[PodProbesCollector.name] = PodProbesCollector.judge(probe_results("seed-003-w1"))
    [finding] = findings(EgressNoSnat, ctx)
    assert finding.severity is Severity.CRITICAL
    assert "the far end saw 10.42.1.12, the pod's own address: not SNATed" in finding.evidence[0]
    assert "captured TCP SYNs" in finding.evidence[0]


def test_a_passing_probe_overrides_the_rules() -> None:
    """The far end saw the node's address: something SNATs (a router, a BPF program)."""
    ctx = snat_node("no-masq")
    ctx.facts[PodProbesCollector.name] = PodProbesCollector.judge(probe_results("seed-003-cp"))
    assert findings(EgressNoSnat, ctx) == []


def test_cilium_with_masquerade_off_in_its_configmap() -> None:
    from cnidoctor.facts.cluster import ClusterFacts

    cilium = ClusterConfig(cni="cilium", pod_cidr="10.42.0.0/16")
    ctx = snat_node("flannel-masq", cluster=cilium)
    ctx.api = ClusterFacts(
        reachable=True,
        config_maps={"kube-system/cilium-config": {"enable-ipv4-masquerade": "false"}},
    )
    [finding] = findings(EgressNoSnat, ctx)
    assert "cilium's IPv4 masquerading is off" in finding.evidence
    assert "--set devices=ens19" in finding.fix[0]


def test_cilium_bpf_masquerade_without_devices_on_a_two_nic_node() -> None:
    """Incident 003 itself: enableIPv4Masquerade on, bpf.masquerade on, devices unset."""
    from cnidoctor.facts.cluster import ClusterFacts

    cilium = ClusterConfig(cni="cilium", pod_cidr="10.42.0.0/16")
    ctx = snat_node("no-masq", cluster=cilium)
    config = {"enable-ipv4-masquerade": "true", "enable-bpf-masquerade": "true"}
    ctx.api = ClusterFacts(reachable=True, config_maps={"kube-system/cilium-config": config})
    [finding] = findings(EgressNoSnat, ctx)
    assert finding.severity is Severity.WARNING
    assert "`devices` unset" in "\n".join(finding.evidence)
    pinned = {**config, "devices": "ens19"}
    ctx.api = ClusterFacts(reachable=True, config_maps={"kube-system/cilium-config": pinned})
    assert findings(EgressNoSnat, ctx) == []


def test_cilium_without_any_setting_is_not_judged_from_iptables() -> None:
    """cilium masquerades in BPF: an empty iptables nat table proves nothing there."""
    ctx = snat_node("no-masq", cluster=ClusterConfig(cni="cilium", pod_cidr="10.42.0.0/16"))
    assert findings(EgressNoSnat, ctx) == []
