"""Pod egress: traffic to outside the cluster must leave with the node's address (SNAT).

egress.no-snat is judged two ways, and says which: a probe from a pod shows the far end
saw the pod's own 10.42.x.x address (proof), or the node's facts show that nothing
masquerades a pod's packet on the interface it leaves by (the iptables nat POSTROUTING
and nft nat chains walked for that packet; cilium's masquerade settings and the agent's
own status). When masquerading is missing on every uplink, not just on the egress one,
the choice of NIC does not explain it: this finding is then its own root cause, even on
a node with two default routes (incident 003's workers).
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field

from cnidoctor.analysis.cni_detect import cni_in_use
from cnidoctor.analysis.cni_settings import cilium_masquerade
from cnidoctor.analysis.snat import egress_packet, pod_egress_nat
from cnidoctor.collectors.cilium import CiliumStatusCollector
from cnidoctor.collectors.cni import CniConfigCollector
from cnidoctor.collectors.flannel import FlannelSubnetEnvCollector
from cnidoctor.collectors.iptables import IptablesCollector
from cnidoctor.collectors.network import LinksCollector, RoutesCollector
from cnidoctor.collectors.nftables import NftablesCollector
from cnidoctor.collectors.pod_probes import PodProbesCollector
from cnidoctor.facts.network import Links, Route, Routes, is_cni_device, is_container_bridge
from cnidoctor.facts.probes import PodProbes, in_network
from cnidoctor.models import Severity
from cnidoctor.rules.base import Hit, NodeContext, Rule

#: an outside address for the fact walk (no packet is sent: only rules are evaluated)
OUTSIDE = "1.1.1.1"
#: what a missing SNAT on *every* NIC is not explained by
NIC_CHOICE = ("route.multiple-default", "iface.multi-nic-ambiguous")


@dataclass
class _FromFacts:
    """The node facts' answer: no SNAT (with evidence), or nothing to say."""

    evidence: list[str] = field(default_factory=list)
    #: masquerading is missing on every uplink (or switched off): not a matter of NIC choice
    everywhere: bool = False
    #: the walk proved it (False: a setting makes it likely, e.g. cilium devices unset)
    proven: bool = True


class EgressNoSnat(Rule):
    id = "egress.no-snat"
    severity = Severity.CRITICAL
    title = "pod traffic to outside the cluster leaves the node with its pod address"
    explanation = (
        "Nothing masquerades (SNATs) a pod's packets on the interface they leave by, so they "
        "reach the outside world with their 10.42.x.x source. Unless the network routes the "
        "pod CIDR back (BGP peering), no answer returns: connections from pods time out, and "
        "the cluster DNS pods' own upstream queries get no answer, while the host, and pods "
        "on other nodes, may work."
    )
    needs = (
        RoutesCollector,
        LinksCollector,
        IptablesCollector,
        NftablesCollector,
        CniConfigCollector,
        CiliumStatusCollector,
        FlannelSubnetEnvCollector,
        PodProbesCollector,
    )
    fix = ("masquerade the pod CIDR on the node's egress interface (see the evidence)",)
    causes = ("dns.failure", "probe.summary")

    def check(self, node: NodeContext) -> Iterator[Hit]:
        routes: Routes | None = node.fact_or_none(RoutesCollector)
        links: Links | None = node.fact_or_none(LinksCollector)
        probes: PodProbes | None = node.fact_or_none(PodProbesCollector)
        probes = probes.named(node.api) if probes is not None else None
        default = _egress_route(routes)
        pod_ip = probes.pod.ip if probes is not None else None
        src = pod_ip or _sample_pod_address(node, links)
        target = _probe_target(probes)
        facts = (
            _from_facts(node, links, src, target or OUTSIDE, default)
            if default is not None and src
            else None
        )
        seen, how = probes.egress_source() if probes is not None else (None, "")
        pod_cidr = node.cluster.pod_cidr
        proven_by_probe = seen is not None and (seen == pod_ip or in_network(seen, pod_cidr))
        if probes is not None and not proven_by_probe and any(r.ok for r in probes.of("egress")):
            return  # the far end saw the node's address: egress is SNATed, whatever the rules
        if not proven_by_probe and facts is None:
            return
        evidence: list[str] = []
        severity = Severity.CRITICAL
        if proven_by_probe and probes is not None:
            evidence.append(
                f"{probes.pod.label} -> {target or 'the egress target'}: the far end saw "
                f"{seen}, the pod's own address: not SNATed ({how})"
            )
            evidence += [f"egress probe: {r.describe()}" for r in probes.of("egress") if not r.ok]
        elif probes is not None and any(r.ok is False for r in probes.of("egress")):
            evidence += [f"egress probe: {r.describe()}" for r in probes.of("egress")]
        else:
            severity = Severity.WARNING
        if facts is not None:
            evidence += facts.evidence
            if not facts.proven and not proven_by_probe:
                severity = Severity.WARNING
        if not proven_by_probe and probes is None:
            evidence.append(
                "not confirmed by a probe from a pod (cnidoctor probe --egress-url URL)"
            )
        everywhere = facts.everywhere if facts is not None else False
        yield Hit(
            evidence=evidence,
            fix=_fix(node, links, default),
            severity=severity,
            not_caused_by=list(NIC_CHOICE) if everywhere else [],
        )


def _egress_route(routes: Routes | None) -> Route | None:
    """The main table's best IPv4 default route: where traffic to the outside goes."""
    if routes is None:
        return None
    defaults = sorted(
        (r for r in routes.main_table("inet") if r.is_default and r.dev), key=lambda r: r.metric
    )
    return defaults[0] if defaults else None


def _probe_target(probes: PodProbes | None) -> str | None:
    """The egress probe's target host, when it is an address (the walk's destination)."""
    for result in probes.of("egress") if probes is not None else []:
        host = result.target.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
        try:
            ipaddress.ip_address(host)
        except ValueError:
            continue
        return host
    return None


def _sample_pod_address(node: NodeContext, links: Links | None) -> str | None:
    """An address of the node's pod subnet (the API's podCIDR, cni0's, else the cluster's)."""
    candidates: list[str] = []
    if node.kube is not None:
        candidates += node.kube.pod_cidrs
    cni0 = links.by_name("cni0") if links is not None else None
    if cni0 is not None:
        candidates += [str(a.interface.network) for a in cni0.global_addresses("inet")]
    if node.cluster.pod_cidr:
        candidates.append(node.cluster.pod_cidr)
    for cidr in candidates:
        net = ipaddress.ip_network(cidr, strict=False)
        if net.version == 4 and net.num_addresses > 4:
            return str(net.network_address + 2)
    return None


def _uplinks(links: Links | None) -> list[str]:
    return [
        link.ifname
        for link in (links.links if links is not None else [])
        if link.ifname != "lo"
        and not is_cni_device(link.ifname)
        and not is_container_bridge(link.ifname)
        and link.master is None
        and link.is_up
        and bool(link.global_addresses("inet"))
    ]


def _from_facts(
    node: NodeContext, links: Links | None, src: str, dst: str, default: Route
) -> _FromFacts | None:
    dev = default.dev or "?"
    route = f"ip route: {default.describe()}"
    cni = cni_in_use(node.cluster.cni, node.fact_or_none(CniConfigCollector), links) or "auto"
    if cni == "cilium":
        masq = cilium_masquerade(node.api, node.fact_or_none(CiliumStatusCollector))
        if masq.enabled is False:
            return _FromFacts(
                [*masq.evidence, "cilium's IPv4 masquerading is off", route], everywhere=True
            )
        if masq.bpf:
            if masq.devices and dev not in masq.devices:
                return _FromFacts(
                    [
                        *masq.evidence,
                        f"cilium masquerades in BPF on {', '.join(masq.devices)} only; "
                        f"traffic to the outside leaves by {dev}",
                        route,
                    ]
                )
            if not masq.devices and len(_uplinks(links)) > 1:
                return _FromFacts(
                    [
                        *masq.evidence,
                        "cilium masquerades in BPF on the devices it detects itself (`devices` "
                        f"unset) and this node has several uplinks "
                        f"({', '.join(_uplinks(links))}): the egress NIC {dev} may not be one",
                        route,
                    ],
                    proven=False,
                )
            return None
        if masq.enabled is None:
            return None  # nothing known of cilium's masquerading: the iptables say nothing
    iptables = node.fact_or_none(IptablesCollector)
    nft = node.fact_or_none(NftablesCollector)
    if iptables is None and nft is None:
        return None
    rulesets = iptables.ipv4() if iptables is not None else []
    verdict = pod_egress_nat(egress_packet(src, dst, dev), rulesets, nft)
    if verdict.nat or verdict.uncertain:
        return None
    elsewhere = [
        other
        for other in _uplinks(links)
        if other != dev and pod_egress_nat(egress_packet(src, dst, other), rulesets, nft).nat
    ]
    evidence = [
        f"a pod packet {src} -> {dst} leaving by {dev}: {verdict.decided_by}",
        route,
    ]
    if elsewhere:
        evidence.append(
            f"pod traffic is masqueraded only when it leaves by {', '.join(elsewhere)}, "
            f"not by the egress interface {dev}"
        )
    else:
        evidence.append("no MASQUERADE/SNAT for the pod CIDR on any uplink")
    subnet_env = node.fact_or_none(FlannelSubnetEnvCollector)
    if subnet_env is not None and subnet_env.ipmasq is False:
        evidence.append("/run/flannel/subnet.env: FLANNEL_IPMASQ=false (flanneld --ip-masq off)")
    return _FromFacts(evidence, everywhere=not elsewhere)


def _fix(node: NodeContext, links: Links | None, default: Route | None) -> list[str]:
    dev = default.dev if default is not None and default.dev else "EGRESS_NIC"
    cidr = node.cluster.pod_cidr or "POD_CIDR"
    cni = cni_in_use(node.cluster.cni, node.fact_or_none(CniConfigCollector), links) or "auto"
    quoted = shlex.quote(dev)
    now = (
        f"now, on this node: iptables -t nat -A POSTROUTING -s {cidr} ! -d {cidr} "
        f"-o {quoted} -j MASQUERADE"
    )
    if cni == "cilium":
        return [
            f"cilium upgrade --reuse-values --set enableIPv4Masquerade=true "
            f"--set bpf.masquerade=true --set devices={quoted} (incident 003's fix)",
            "kubectl -n kube-system rollout restart daemonset/cilium",
        ]
    if cni == "calico":
        return [
            "kubectl patch ippool default-ipv4-ippool --type merge "
            + shlex.quote('{"spec":{"natOutgoing":true}}'),
            f"and pin calico to {dev} (IP_AUTODETECTION_METHOD=interface={dev})",
        ]
    return [
        now,
        "make it last: let flannel masquerade (k3s does by default; kube-flannel: --ip-masq) "
        f"and pin it to {dev} (k3s: flannel-iface: {dev}; kube-flannel: --iface={dev}), or "
        "keep the rule in the node's firewall configuration",
        f"check from a pod: cnidoctor probe --egress-url URL (the far end must see the node's "
        f"{dev} address)",
    ]


RULES: list[type[Rule]] = [EgressNoSnat]
