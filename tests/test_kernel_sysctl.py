"""Sysctl and kernel facts (parsers on real captures) and the kernel/sysctl rules."""

from __future__ import annotations

import pytest
from tests.helpers import data, failed, findings, node

from cnidoctor.collectors.base import FactParseError
from cnidoctor.collectors.cni import CniConfigCollector
from cnidoctor.collectors.kernel import (
    KernelCollector,
    KubeProxyModeCollector,
    parse_kube_proxy_mode,
    parse_proc_modules,
    parse_proc_paths,
)
from cnidoctor.collectors.network import LinksCollector, RoutesCollector
from cnidoctor.collectors.sysctl import SysctlCollector, parse_sysctls
from cnidoctor.facts.base import FactStatus
from cnidoctor.models import ClusterConfig, Severity
from cnidoctor.rules.kernel import BrNetfilterMissing, Ipv6Disabled, IpvsUnavailable
from cnidoctor.rules.sysctl import BridgeNfCallOff, IpForwardOff, RpFilterStrict

UNAME = data("kernel/uname.txt")
CMDLINE = data("kernel/cmdline.txt")
NO_MODULES = failed(1, stderr=data("kernel/modules-missing.stderr"))
MODULES = data("kernel/modules-ubuntu.txt")


def kernel_outputs(paths: str = "paths-default.txt", cmdline: str = CMDLINE, modules=NO_MODULES):
    return [UNAME, cmdline, data(f"kernel/{paths}"), modules]


# --- sysctl parser -------------------------------------------------------------------


def test_parse_healthy_sysctls() -> None:
    s = parse_sysctls(data("sysctl/healthy.txt"))
    assert s.get("net.ipv4.ip_forward") == "1"
    assert s.get("net.bridge.bridge-nf-call-iptables") == "1"
    # dotted interface names use sysctl(8)'s slash spelling
    assert s.get("net.ipv4.conf.flannel/1.rp_filter") == "2"
    assert s.missing == {}
    assert sorted(s.rp_filter_interfaces()) == ["cni0", "eth0", "flannel.1", "lo", "wlan0"]


def test_parse_missing_bridge_keys_reported_per_key() -> None:
    s = parse_sysctls(data("sysctl/no-br-netfilter.txt"))
    assert s.missing == {
        "net.bridge.bridge-nf-call-iptables": "does not exist",
        "net.bridge.bridge-nf-call-ip6tables": "does not exist",
    }
    assert (
        s.path("net.bridge.bridge-nf-call-iptables")
        == "/proc/sys/net/bridge/bridge-nf-call-iptables"
    )
    assert s.get("net.ipv4.ip_forward") == "1"


def test_effective_rp_filter_is_max_of_all_and_iface() -> None:
    s = parse_sysctls(data("sysctl/rp-filter-strict-two-uplinks.txt"))
    assert s.int_value("net.ipv4.conf.all.rp_filter") == 1
    assert s.int_value("net.ipv4.conf.eth0.rp_filter") == 0
    assert s.rp_filter("eth0") == 1  # max(all=1, eth0=0)
    assert s.rp_filter("cni0") == 2  # max(all=1, cni0=2)
    assert s.rp_filter("flannel.1") == 1


def test_parse_ipv6_masked() -> None:
    s = parse_sysctls(data("sysctl/ipv6-masked.txt"))
    assert s.missing == {"net.ipv6.conf.all.forwarding": "does not exist"}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage\n",
        "/proc/sys/net/ipv4/ip_forward:1\n/proc/sys/net/ipv4/conf/eth0/rp_fi",
        "grep: something odd\n/proc/sys/net/ipv4/ip_forward:1\n",
        "/proc/sys/net/ipv4/conf/all/rp_filter:2\n",  # the ip_forward line is lost
    ],
)
def test_malformed_sysctls_raise(text: str) -> None:
    with pytest.raises(FactParseError):
        parse_sysctls(text)


def test_truncated_sysctl_capture_is_a_clear_error_fact() -> None:
    text = data("sysctl/healthy.txt")
    cut = text[: text.index("rp_filter:2") + 5]  # cut inside a key
    ctx = node({SysctlCollector: [cut]})
    fact = ctx.facts["sysctls"]
    assert fact.status is FactStatus.ERROR
    assert "unexpected line" in (fact.reason or "")


# --- kernel parser -------------------------------------------------------------------


def test_kernel_fact_on_a_kernel_without_modules() -> None:
    info = node({KernelCollector: kernel_outputs()}).facts["kernel"].value
    assert info.release == "6.18.44-fc-v782"
    assert info.ipv6_present and not info.ip_vs_present
    assert info.modules is None and "No such file" in (info.modules_reason or "")
    assert info.module_listed("br_netfilter") is None
    assert not info.ipv6_disabled_by_cmdline
    # parameters after `--` belong to init, not the kernel
    assert "--addr" not in info.cmdline_params


def test_kernel_fact_with_modules_and_ipv6_masked() -> None:
    info = node({KernelCollector: kernel_outputs("paths-ipv6-masked.txt", modules=MODULES)})
    value = info.facts["kernel"].value
    assert not value.ipv6_present
    assert value.module_listed("br_netfilter") is True
    assert value.module_listed("ip_vs") is False


def test_cmdline_ipv6_disable() -> None:
    ctx = node(
        {KernelCollector: kernel_outputs(cmdline="BOOT_IMAGE=/vmlinuz ro ipv6.disable=1 quiet")}
    )
    assert ctx.facts["kernel"].value.ipv6_disabled_by_cmdline


@pytest.mark.parametrize(
    "text", ["", "present /proc/sys/net/ipv6/conf/all\n", "maybe /proc/net/ip_vs\n"]
)
def test_malformed_proc_paths(text: str) -> None:
    with pytest.raises(FactParseError):
        parse_proc_paths(text)


def test_malformed_modules() -> None:
    assert parse_proc_modules(MODULES)[0] == "xt_MASQUERADE"
    with pytest.raises(FactParseError):
        parse_proc_modules("br_netfilter 32768 0 -\n")


def test_kernel_fact_error_on_garbage_uname() -> None:
    ctx = node({KernelCollector: ["", CMDLINE, data("kernel/paths-default.txt"), NO_MODULES]})
    assert ctx.facts["kernel"].status is FactStatus.ERROR


def test_kube_proxy_mode_from_k3s_config() -> None:
    mode = parse_kube_proxy_mode(data("kernel/kube-proxy-k3s-ipvs.txt"))
    assert mode.mode == "ipvs"
    assert mode.source.startswith("/etc/rancher/k3s/config.yaml:")
    assert parse_kube_proxy_mode(data("kernel/kube-proxy-config-iptables.txt")).mode == "iptables"


def test_kube_proxy_mode_absent_and_garbage() -> None:
    ctx = node({KubeProxyModeCollector: [data("kernel/kube-proxy-none.txt")]})
    assert ctx.facts["kube_proxy_mode"].status is FactStatus.ABSENT
    with pytest.raises(FactParseError):
        parse_kube_proxy_mode("no path here\n")


# --- rules ---------------------------------------------------------------------------


def test_br_netfilter_missing_incident_000() -> None:
    ctx = node(
        {
            SysctlCollector: [data("sysctl/no-br-netfilter.txt")],
            KernelCollector: kernel_outputs(modules=MODULES.replace("br_netfilter", "xt_nat")),
        },
        cluster=ClusterConfig(cni="flannel"),
    )
    (finding,) = findings(BrNetfilterMissing, ctx)
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence[0] == "/proc/sys/net/bridge/bridge-nf-call-iptables does not exist"
    assert any("not in /proc/modules" in e for e in finding.evidence)
    assert finding.fix[0] == "modprobe br_netfilter"
    assert any("/etc/modules-load.d/k8s.conf" in f for f in finding.fix)
    assert "pods.cni-crashloop" in BrNetfilterMissing.causes


def test_br_netfilter_present_is_clean() -> None:
    ctx = node({SysctlCollector: [data("sysctl/healthy.txt")], KernelCollector: kernel_outputs()})
    assert findings(BrNetfilterMissing, ctx) == []
    assert findings(BridgeNfCallOff, ctx) == []
    assert findings(IpForwardOff, ctx) == []


def test_br_netfilter_missing_is_only_a_warning_on_cilium() -> None:
    ctx = node(
        {SysctlCollector: [data("sysctl/no-br-netfilter.txt")], KernelCollector: kernel_outputs()},
        cluster=ClusterConfig(cni="cilium"),
    )
    (finding,) = findings(BrNetfilterMissing, ctx)
    assert finding.severity is Severity.WARNING


def test_bridge_nf_call_off_and_ip_forward_off() -> None:
    ctx = node({SysctlCollector: [data("sysctl/bridge-nf-off-forward-off.txt")]})
    (bridge,) = findings(BridgeNfCallOff, ctx)
    assert bridge.evidence == ["net.bridge.bridge-nf-call-iptables = 0"]
    assert bridge.fix[0] == "sysctl -w net.bridge.bridge-nf-call-iptables=1"
    (forward,) = findings(IpForwardOff, ctx)
    assert forward.severity is Severity.CRITICAL
    assert forward.evidence == ["net.ipv4.ip_forward = 0"]
    assert forward.fix[0] == "sysctl -w net.ipv4.ip_forward=1"
    assert "/etc/sysctl.d/99-kubernetes.conf" in forward.fix[1]


def test_ipv6_forwarding_only_matters_for_ipv6_clusters() -> None:
    ctx = node(
        {SysctlCollector: [data("sysctl/healthy.txt")]},
        cluster=ClusterConfig(pod_cidr="10.42.0.0/16"),
    )
    assert findings(IpForwardOff, ctx) == []
    ctx6 = node(
        {SysctlCollector: [data("sysctl/healthy.txt")]},
        cluster=ClusterConfig(pod_cidr="fd00:42::/56"),
    )
    (finding,) = findings(IpForwardOff, ctx6)
    assert finding.evidence == ["net.ipv6.conf.all.forwarding = 0"]


def _rp_node(sysctl_case: str, topology: str):
    return node(
        {
            SysctlCollector: [data(f"sysctl/{sysctl_case}.txt")],
            LinksCollector: [data(f"sysctl/{topology}.addr.json")],
            RoutesCollector: [
                data(f"sysctl/{topology}.route4.json"),
                data(f"sysctl/{topology}.route6.json"),
            ],
        }
    )


def test_rp_filter_strict_on_two_uplinks() -> None:
    (finding,) = findings(RpFilterStrict, _rp_node("rp-filter-strict-two-uplinks", "two-uplinks"))
    assert "uplinks with a global IPv4 address: eth0, wlan0" in finding.evidence
    assert "net.ipv4.conf.all.rp_filter = 1" in finding.evidence
    assert "net.ipv4.conf.flannel/1.rp_filter = 1 (effective 1)" in finding.evidence
    assert "net.ipv4.conf.eth0.rp_filter = 0 (effective 1)" in finding.evidence
    assert "net.ipv4.conf.cni0.rp_filter" not in " ".join(finding.evidence)  # effective 2
    assert finding.fix[:2] == [
        "sysctl -w net.ipv4.conf.all.rp_filter=2",
        "sysctl -w net.ipv4.conf.flannel/1.rp_filter=2",
    ]


def test_rp_filter_strict_single_uplink_is_clean() -> None:
    assert findings(RpFilterStrict, _rp_node("rp-filter-strict-two-uplinks", "one-uplink")) == []


def test_rp_filter_loose_on_two_uplinks_is_clean() -> None:
    assert findings(RpFilterStrict, _rp_node("healthy", "two-uplinks")) == []


DUALSTACK_CNI = data("kernel/cni-dualstack.txt")


def test_ipv6_disabled_with_ipv6_cni_config() -> None:
    ctx = node(
        {
            KernelCollector: kernel_outputs("paths-ipv6-masked.txt"),
            CniConfigCollector: [DUALSTACK_CNI],
        }
    )
    (finding,) = findings(Ipv6Disabled, ctx)
    assert finding.evidence[0] == "/proc/sys/net/ipv6/conf/all does not exist"
    assert any("2001:cafe:42:1::/64" in e and "10-flannel.conflist" in e for e in finding.evidence)


def test_ipv6_disabled_by_cmdline_with_ipv6_pod_cidr_without_cni_fact() -> None:
    ctx = node(
        {KernelCollector: kernel_outputs(cmdline="ro quiet ipv6.disable=1")},
        cluster=ClusterConfig(pod_cidr="fd00:42::/56"),
    )
    (finding,) = findings(Ipv6Disabled, ctx)
    assert "kernel command line has ipv6.disable=1" in finding.evidence
    assert "cluster pod CIDR fd00:42::/56 is IPv6" in finding.evidence


def test_ipv6_disabled_clean_cases() -> None:
    # IPv6 off but nothing uses it
    off = node(
        {KernelCollector: kernel_outputs("paths-ipv6-masked.txt")},
        cluster=ClusterConfig(pod_cidr="10.42.0.0/16"),
    )
    assert findings(Ipv6Disabled, off) == []
    # IPv6 used and present
    on = node({KernelCollector: kernel_outputs(), CniConfigCollector: [DUALSTACK_CNI]})
    assert findings(Ipv6Disabled, on) == []


def test_ipvs_unavailable_when_k3s_says_ipvs() -> None:
    ctx = node(
        {
            KernelCollector: kernel_outputs(modules=MODULES),
            KubeProxyModeCollector: [data("kernel/kube-proxy-k3s-ipvs.txt")],
        }
    )
    (finding,) = findings(IpvsUnavailable, ctx)
    assert finding.evidence[0].startswith("kube-proxy mode ipvs: /etc/rancher/k3s/config.yaml")
    assert "/proc/net/ip_vs does not exist (IPVS not loaded)" in finding.evidence
    assert "ip_vs is not in /proc/modules" in finding.evidence


def test_ipvs_clean_when_iptables_mode_or_unknown() -> None:
    iptables = node(
        {
            KernelCollector: kernel_outputs(),
            KubeProxyModeCollector: [data("kernel/kube-proxy-config-iptables.txt")],
        }
    )
    assert findings(IpvsUnavailable, iptables) == []
    unknown = node(
        {
            KernelCollector: kernel_outputs(),
            KubeProxyModeCollector: [data("kernel/kube-proxy-none.txt")],
            LinksCollector: [data("sysctl/two-uplinks.addr.json")],
        }
    )
    assert findings(IpvsUnavailable, unknown) == []
