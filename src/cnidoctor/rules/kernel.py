"""Kernel prerequisites: br_netfilter, IPv6 when the CNI uses it, IPVS for kube-proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from cnidoctor.collectors.cni import CniConfigCollector
from cnidoctor.collectors.kernel import KernelCollector, KubeProxyModeCollector
from cnidoctor.collectors.network import LinksCollector
from cnidoctor.collectors.sysctl import SysctlCollector
from cnidoctor.models import Severity
from cnidoctor.rules.base import Hit, NodeContext, Rule

BRIDGE_KEYS = ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables")
SYSCTL_CONF = "/etc/sysctl.d/99-kubernetes.conf"


class BrNetfilterMissing(Rule):
    id = "kernel.br-netfilter-missing"
    severity = Severity.CRITICAL
    title = "br_netfilter is not loaded"
    explanation = (
        "Without br_netfilter, traffic between pods on the same bridge (cni0) never passes "
        "iptables, so kube-proxy's service NAT does not apply to it. flannel refuses to start "
        "('Failed to check br_netfilter: stat /proc/sys/net/bridge/bridge-nf-call-iptables: "
        "no such file or directory') and the node has no pod network."
    )
    needs = (SysctlCollector, KernelCollector)
    fix = (
        "modprobe br_netfilter",
        "echo br_netfilter > /etc/modules-load.d/k8s.conf",
        "printf 'net.bridge.bridge-nf-call-iptables = 1\\nnet.bridge.bridge-nf-call-ip6tables = 1"
        f"\\n' > {SYSCTL_CONF}",
        "sysctl --system",
        "then restart the CNI pod (or k3s) so it sees the module",
    )
    causes = ("pods.cni-crashloop",)

    def check(self, node: NodeContext) -> Iterator[Hit]:
        sysctls = node.fact(SysctlCollector)
        key = BRIDGE_KEYS[0]
        if sysctls.missing.get(key) != "does not exist":
            return
        evidence = [f"{sysctls.path(key)} does not exist"]
        kernel = node.fact_or_none(KernelCollector)
        if kernel is not None and kernel.module_listed("br_netfilter") is False:
            evidence.append(f"br_netfilter is not in /proc/modules (kernel {kernel.release})")
        severity = None
        if node.cluster.cni == "cilium":
            # cilium does not need bridge netfilter; kube-proxy on a bridge would
            severity = Severity.WARNING
        yield Hit(evidence=evidence, severity=severity)


class Ipv6Disabled(Rule):
    id = "kernel.ipv6-disabled"
    severity = Severity.CRITICAL
    title = "IPv6 is disabled in the kernel but the CNI config uses IPv6"
    explanation = (
        "A host booted with ipv6.disable=1 has no IPv6 stack at all: the CNI plugin cannot "
        "add an IPv6 address or route to a pod, so every sandbox creation fails and pods stay "
        "ContainerCreating."
    )
    needs = (KernelCollector, CniConfigCollector)
    fix = (
        "remove ipv6.disable=1 from the kernel command line (GRUB_CMDLINE_LINUX in "
        "/etc/default/grub, then update-grub or grub2-mkconfig; boot.kernelParams on NixOS) "
        "and reboot",
        "or make the cluster IPv4-only: drop the IPv6 ranges from the CNI config and the "
        "cluster/service CIDRs",
    )
    causes = ("node.ready-but-cni-broken",)

    def check(self, node: NodeContext) -> Iterator[Hit]:
        kernel = node.fact(KernelCollector)
        off: list[str] = []
        if not kernel.ipv6_present:
            off.append("/proc/sys/net/ipv6/conf/all does not exist")
        if kernel.ipv6_disabled_by_cmdline:
            off.append("kernel command line has ipv6.disable=1")
        if not off:
            return
        uses: list[str] = []
        cni = node.fact_or_none(CniConfigCollector)
        active = cni.active if cni is not None else None
        if active is not None and active.uses_ipv6:
            ranges = [v for p in active.plugins for v in (*p.subnets, *p.routes) if _is_v6(v)]
            uses.append(f"CNI config {active.path} uses IPv6: {', '.join(ranges)}")
        for label, network in node.cluster_networks:
            if network.version == 6:
                uses.append(f"cluster {label} {network} is IPv6")
        if uses:
            yield Hit(evidence=off + uses)


def _is_v6(value: str) -> bool:
    try:
        return ipaddress.ip_network(value, strict=False).version == 6
    except ValueError:
        return False


class IpvsUnavailable(Rule):
    id = "kube-proxy.ipvs-unavailable"
    severity = Severity.CRITICAL
    title = "kube-proxy is set to IPVS mode but IPVS is not available"
    explanation = (
        "In IPVS mode kube-proxy programs services as IPVS virtual servers; without the ip_vs "
        "modules it exits or falls back, so ClusterIPs (including the kubernetes service the "
        "CNI agents use) stop working or behave differently on this node."
    )
    needs = (KernelCollector, KubeProxyModeCollector, LinksCollector)
    fix = (
        "modprobe -a ip_vs ip_vs_rr ip_vs_wrr ip_vs_sh nf_conntrack",
        "printf 'ip_vs\\nip_vs_rr\\nip_vs_wrr\\nip_vs_sh\\nnf_conntrack\\n' > "
        "/etc/modules-load.d/ipvs.conf",
        "or set kube-proxy's mode to iptables (or nftables) and restart it",
    )
    causes = ("api.unreachable",)

    def check(self, node: NodeContext) -> Iterator[Hit]:
        kernel = node.fact(KernelCollector)
        if kernel.ip_vs_present:
            return
        says: list[str] = []
        mode = node.fact_or_none(KubeProxyModeCollector)
        if mode is not None:
            if mode.mode != "ipvs":
                return
            says.append(f"kube-proxy mode ipvs: {mode.source}")
        links = node.fact_or_none(LinksCollector)
        if links is not None and links.by_name("kube-ipvs0") is not None:
            says.append("kube-ipvs0 exists (created by kube-proxy in IPVS mode)")
        if not says:
            return
        evidence = [*says, "/proc/net/ip_vs does not exist (IPVS not loaded)"]
        if kernel.module_listed("ip_vs") is False:
            evidence.append("ip_vs is not in /proc/modules")
        yield Hit(evidence=evidence)


RULES: list[type[Rule]] = [BrNetfilterMissing, Ipv6Disabled, IpvsUnavailable]
