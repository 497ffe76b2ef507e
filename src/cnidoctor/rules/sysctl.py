"""Sysctls pod networking needs: bridge netfilter on, forwarding on, rp_filter not strict."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from fnmatch import fnmatchcase

from cnidoctor.collectors.network import LinksCollector, RoutesCollector
from cnidoctor.collectors.sysctl import SysctlCollector
from cnidoctor.facts.kernel import Sysctls
from cnidoctor.facts.network import Links, Routes
from cnidoctor.models import Severity
from cnidoctor.rules.base import Hit, NodeContext, Rule

SYSCTL_CONF = "/etc/sysctl.d/99-kubernetes.conf"


def _set_and_persist(settings: list[tuple[str, str]]) -> list[str]:
    """`sysctl -w` now, and the same lines appended to a sysctl.d file for the next boot."""
    fix = [shlex.join(["sysctl", "-w", f"{key}={value}"]) for key, value in settings]
    for key, value in settings:
        line = f"{key} = {value}"
        fix.append(f"echo {shlex.quote(line)} >> {SYSCTL_CONF}")
    return fix


class BridgeNfCallOff(Rule):
    id = "sysctl.bridge-nf-call-off"
    severity = Severity.WARNING
    title = "br_netfilter is loaded but bridge-nf-call-iptables is off"
    explanation = (
        "With net.bridge.bridge-nf-call-iptables = 0, frames switched by cni0 skip iptables: "
        "a pod that reaches a service IP whose backend is on the same node gets replies "
        "straight from the backend's pod IP and drops them, so services look unreachable "
        "from pods on the same bridge."
    )
    needs = (SysctlCollector,)
    fix = (
        "sysctl -w net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1",
        "persist both in /etc/sysctl.d/99-kubernetes.conf",
    )
    causes = ()

    def check(self, node: NodeContext) -> Iterator[Hit]:
        sysctls: Sysctls = node.fact(SysctlCollector)
        off = [
            key
            for key in ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables")
            if sysctls.get(key) == "0"
        ]
        if off:
            yield Hit(
                evidence=[f"{key} = 0" for key in off],
                fix=_set_and_persist([(key, "1") for key in off]),
            )


class IpForwardOff(Rule):
    id = "sysctl.ip-forward-off"
    severity = Severity.CRITICAL
    title = "IP forwarding is off"
    explanation = (
        "Pod traffic is routed by the node from cni0 to flannel.1 or the uplink; with "
        "net.ipv4.ip_forward = 0 the kernel drops every packet that is not for the node "
        "itself, so no pod traffic leaves the node and nothing reaches its pods from outside."
    )
    needs = (SysctlCollector,)
    fix = tuple(_set_and_persist([("net.ipv4.ip_forward", "1")]))
    causes = ()

    def check(self, node: NodeContext) -> Iterator[Hit]:
        sysctls: Sysctls = node.fact(SysctlCollector)
        off = []
        if sysctls.get("net.ipv4.ip_forward") == "0":
            off.append("net.ipv4.ip_forward")
        if (
            any(net.version == 6 for _, net in node.cluster_networks)
            and sysctls.get("net.ipv6.conf.all.forwarding") == "0"
        ):
            off.append("net.ipv6.conf.all.forwarding")
        if off:
            yield Hit(
                evidence=[f"{key} = 0" for key in off],
                fix=_set_and_persist([(key, "1") for key in off]),
            )


#: devices that carry pod or overlay traffic (besides the uplinks)
POD_DEVICE_GLOBS = ("cni0", "flannel*", "cali*", "vxlan.calico", "tunl0", "cilium_*")
#: devices that are never an uplink, even with a global address
NOT_UPLINK_GLOBS = (*POD_DEVICE_GLOBS, "lo", "docker*", "kube-ipvs0", "veth*", "lxc*")
#: (veth stays: eth0 of an LXC or container-based node is a veth)
NOT_UPLINK_KINDS = ("vxlan", "dummy", "wireguard", "ipip", "geneve")


def uplinks(links: Links) -> list[str]:
    """Devices with a global IPv4 address that are not the CNI's or a container runtime's."""
    return [
        link.ifname
        for link in links.links
        if link.global_addresses("inet")
        and link.kind not in NOT_UPLINK_KINDS
        and not any(fnmatchcase(link.ifname, g) for g in NOT_UPLINK_GLOBS)
    ]


def several_uplinks(links: Links, routes: Routes) -> tuple[bool, list[str], list[str]]:
    """(several?, uplink names, default routes described): >1 default route, or >1 uplink
    while a default route exists (replies can leave by another NIC than requests came in)."""
    defaults = [r for r in routes.main_table("inet") if r.is_default]
    ups = uplinks(links)
    return (
        (len(defaults) > 1 or (len(ups) > 1 and bool(defaults))),
        ups,
        [r.describe() for r in defaults],
    )


class RpFilterStrict(Rule):
    id = "sysctl.rp-filter-strict"
    severity = Severity.WARNING
    title = "strict reverse-path filtering on a pod/overlay interface of a multi-homed node"
    explanation = (
        "rp_filter = 1 drops a packet when the reply to its source would leave by another "
        "interface. On a node with several uplinks, overlay and pod traffic often arrives on "
        "one NIC while the route back uses the other, and the kernel silently drops it; "
        "loose mode (2) keeps the anti-spoofing check without breaking asymmetric paths."
    )
    needs = (SysctlCollector, LinksCollector, RoutesCollector)
    fix = (
        "sysctl -w net.ipv4.conf.all.rp_filter=2 (loose), and the same for the pod and "
        "overlay interfaces",
        "persist it in /etc/sysctl.d/99-kubernetes.conf",
    )
    causes = ()

    def check(self, node: NodeContext) -> Iterator[Hit]:
        sysctls: Sysctls = node.fact(SysctlCollector)
        links: Links = node.fact(LinksCollector)
        routes: Routes = node.fact(RoutesCollector)
        several, ups, defaults = several_uplinks(links, routes)
        if not several:
            return
        carriers = [
            link.ifname
            for link in links.links
            if any(fnmatchcase(link.ifname, g) for g in POD_DEVICE_GLOBS)
        ] + ups
        strict = [iface for iface in carriers if sysctls.rp_filter(iface) == 1]
        if not strict:
            return
        all_key = Sysctls.rp_filter_key("all")
        evidence = [f"uplinks with a global IPv4 address: {', '.join(ups) or 'none'}"]
        evidence += [f"ip route: {d}" for d in defaults]
        evidence.append(f"{all_key} = {sysctls.get(all_key)}")
        settings: list[tuple[str, str]] = []
        if sysctls.int_value(all_key) == 1:
            settings.append((all_key, "2"))
        for iface in strict:
            key = Sysctls.rp_filter_key(iface)
            own = sysctls.get(key)
            evidence.append(f"{key} = {own} (effective {sysctls.rp_filter(iface)})")
            if own == "1":
                settings.append((key, "2"))
        yield Hit(evidence=evidence, fix=_set_and_persist(settings))


RULES: list[type[Rule]] = [BridgeNfCallOff, IpForwardOff, RpFilterStrict]
