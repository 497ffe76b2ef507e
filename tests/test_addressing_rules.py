"""addr.*, iface.multi-nic-ambiguous and mtu.mismatch on real `ip -j` captures."""

from __future__ import annotations

from tests.helpers import data, failed, findings, node

from cnidoctor.collectors.flannel import FlannelSubnetEnvCollector
from cnidoctor.collectors.k3s import K3sConfigCollector
from cnidoctor.collectors.network import LinksCollector, RoutesCollector
from cnidoctor.facts.base import Fact, FactStatus
from cnidoctor.facts.k3s import K3sConfig
from cnidoctor.models import ClusterConfig, Severity
from cnidoctor.rules.addressing import HostOverlapsClusterCidr, MultiNicAmbiguous, NodeIpChanged
from cnidoctor.rules.base import NodeContext
from cnidoctor.rules.mtu import MtuMismatch

K3S = ClusterConfig(pod_cidr="10.42.0.0/16", service_cidr="10.43.0.0/16")
KUBEADM = ClusterConfig(pod_cidr="10.244.0.0/16", service_cidr="10.96.0.0/12", cni="flannel")
SUBNET_ENV = data("flannel/k3s.txt")  # FLANNEL_MTU=1450


def net_node(
    case: str,
    cluster: ClusterConfig | None = None,
    address: str | None = None,
    extra: dict | None = None,
    replace: tuple[str, str] | None = None,
    role: str = "worker",
) -> NodeContext:
    addr = data(f"ip_addr/{case}.json")
    v4, v6 = data(f"ip_route/{case}.v4.json"), data(f"ip_route/{case}.v6.json")
    if replace is not None:
        addr, v4, v6 = (text.replace(*replace) for text in (addr, v4, v6))
    outputs = {LinksCollector: [addr], RoutesCollector: [v4, v6], **(extra or {})}
    return node(outputs, cluster=cluster, address=address, role=role)


# --- addr.host-overlaps-cluster-cidr -----------------------------------------------------------


def test_incident_002_slash8_swallows_pod_and_service_cidr() -> None:
    [finding] = findings(HostOverlapsClusterCidr, net_node("incident002-slash8", K3S))
    assert finding.id == "addr.host-overlaps-cluster-cidr"
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence == [
        "eth0 10.10.0.2/8 contains pod CIDR 10.42.0.0/16",
        "eth0 10.10.0.2/8 contains service CIDR 10.43.0.0/16",
    ]
    assert "/11 or longer" in finding.fix[0]
    assert "ip addr add 10.10.0.2/11 dev eth0 && ip addr del 10.10.0.2/8 dev eth0" in finding.fix[1]
    # the flannel.1 routes inside 10.42/16 and cni0's 10.42.0.0/24 are the CNI's own
    assert not any("flannel.1" in e or "cni0" in e for e in finding.evidence)


def test_incident_002_slash16_is_clean() -> None:
    ctx = net_node("incident002-slash16", K3S)
    # the static routes to the other zones are there, inside 10/8 but clear of 10.42/10.43
    assert any(r.dst == "10.11.0.0/16" for r in ctx.fact(RoutesCollector).routes)
    assert findings(HostOverlapsClusterCidr, ctx) == []


def test_unknown_cluster_cidrs_decide_nothing() -> None:
    assert findings(HostOverlapsClusterCidr, net_node("incident002-slash8")) == []


def test_static_route_over_the_pod_cidr_triggers_but_cni_devices_do_not() -> None:
    """10.0.0.0/8 via a router covers both CIDRs; a host-gw style per-node route via
    192.168.10.6, kube-ipvs0's service addresses and docker0 are not reported."""
    [finding] = findings(HostOverlapsClusterCidr, net_node("static-route-over-cluster", K3S))
    assert finding.evidence == [
        "route 10.0.0.0/8 via 192.168.10.254 dev eth0 contains pod CIDR 10.42.0.0/16",
        "route 10.0.0.0/8 via 192.168.10.254 dev eth0 contains service CIDR 10.43.0.0/16",
    ]
    assert finding.fix[0] == "ip route del 10.0.0.0/8 via 192.168.10.254 dev eth0"


def test_container_bridge_inside_the_service_cidr_triggers() -> None:
    cluster = ClusterConfig(pod_cidr="10.42.0.0/16", service_cidr="172.17.0.0/20")
    ctx = net_node("static-route-over-cluster", cluster)
    evidence = [e for f in findings(HostOverlapsClusterCidr, ctx) for e in f.evidence]
    assert "docker0 172.17.0.1/16 contains service CIDR 172.17.0.0/20" in evidence


def test_host_address_inside_the_pod_cidr_has_no_prefix_fix() -> None:
    cluster = ClusterConfig(pod_cidr="192.168.0.0/16", service_cidr="10.43.0.0/16")
    ctx = net_node("incident000-wifi-ethernet", cluster)
    enp, wlp = findings(HostOverlapsClusterCidr, ctx)
    assert enp.evidence == ["enp4s0 192.168.1.34/24 lies inside pod CIDR 192.168.0.0/16"]
    assert wlp.evidence == ["wlp2s0 192.168.1.50/24 lies inside pod CIDR 192.168.0.0/16"]
    assert "renumber" in enp.fix[0]
    # the connected routes of those addresses are not reported a second time
    assert not any(e.startswith("route") for f in (enp, wlp) for e in f.evidence)


def test_overlap_fix_quotes_device_names() -> None:
    ctx = net_node("incident002-slash8", K3S, replace=('"eth0"', '"e$(x)"'))
    [finding] = findings(HostOverlapsClusterCidr, ctx)
    assert "dev 'e$(x)' && ip addr del 10.10.0.2/8 dev 'e$(x)'" in finding.fix[1]


# --- addr.node-ip-changed ----------------------------------------------------------------------


def test_node_ip_gone_after_a_new_lease() -> None:
    ctx = net_node("incident000-wifi-ethernet", KUBEADM, address="192.168.1.99")
    [finding] = findings(NodeIpChanged, ctx)
    assert finding.id == "addr.node-ip-changed"
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence[0].startswith("the cluster knows this node as 192.168.1.99")
    assert "enp4s0 192.168.1.34/24" in finding.evidence[1]
    assert "wlp2s0 192.168.1.50/24" in finding.evidence[1]
    assert "10.244.2.1" not in finding.evidence[1]  # cni0 is not a host address
    assert finding.fix[0] == "restore it now: ip addr add 192.168.1.99/24 dev enp4s0"
    assert "kubelet.unreachable" in NodeIpChanged.causes


def test_node_ip_on_another_subnet_has_no_restore_step() -> None:
    ctx = net_node("incident002-slash16", K3S, address="172.20.0.4")
    [finding] = findings(NodeIpChanged, ctx)
    assert not any(step.startswith("restore") for step in finding.fix)


def test_node_ip_present_or_unknown_is_clean() -> None:
    for address in ("192.168.1.34", "192.168.1.50", None, "node1"):
        ctx = net_node("incident000-wifi-ethernet", address=address)
        assert findings(NodeIpChanged, ctx) == [], address


# --- iface.multi-nic-ambiguous -----------------------------------------------------------------


def k3s_fact(**settings: str) -> Fact:
    return Fact(
        name=K3sConfigCollector.name, status=FactStatus.OK, value=K3sConfig(settings=settings)
    )


def test_incident_003_cilium_two_uplinks() -> None:
    cluster = ClusterConfig(pod_cidr="10.42.0.0/16", service_cidr="10.43.0.0/16", cni="cilium")
    ctx = net_node("incident003-two-uplinks", cluster, address="10.50.10.20")
    [finding] = findings(MultiNicAmbiguous, ctx)
    assert finding.id == "iface.multi-nic-ambiguous"
    assert finding.severity is Severity.WARNING
    assert "candidate uplink ens18: 192.168.178.20/24 (default route)" in finding.evidence
    assert "candidate uplink ens19: 10.50.10.20/24 (default route)" in finding.evidence
    assert any("devices" in e for e in finding.evidence)
    # the node's InternalIP is on ens19: that is the interface to pin
    assert finding.fix[-1] == "cilium upgrade --reuse-values --set devices=ens19"
    assert set(MultiNicAmbiguous.causes) == {"iface.wrong-interface-selected", "egress.no-snat"}


def test_incident_000_k3s_without_flannel_iface() -> None:
    ctx = net_node(
        "incident000-wifi-ethernet",
        KUBEADM,
        address="192.168.1.34",
        extra={K3sConfigCollector: [data("k3s/agent.txt")]},
    )
    [finding] = findings(MultiNicAmbiguous, ctx)
    assert any(
        e.startswith("no flannel-iface/--iface setting found in the k3s configuration")
        for e in finding.evidence
    )
    assert "flannel.1 is bound now to enp4s0 (192.168.1.34)" in finding.evidence
    assert (
        "k3s: add `flannel-iface: enp4s0` and `node-ip: 192.168.1.34` to "
        "/etc/rancher/k3s/config.yaml" in finding.fix
    )
    assert "systemctl restart k3s-agent" in finding.fix


def test_without_k3s_facts_the_rule_still_decides() -> None:
    ctx = net_node("incident000-wifi-ethernet", KUBEADM)
    [finding] = findings(MultiNicAmbiguous, ctx)
    assert any(e.startswith("no flannel-iface/--iface setting found") for e in finding.evidence)
    assert any("--iface=enp4s0" in step for step in finding.fix)


def test_k3s_flannel_iface_pins_it() -> None:
    extra = {K3sConfigCollector: [data("k3s/server.txt")]}  # flannel-iface: enp4s0
    ctx = net_node("incident000-wifi-ethernet", KUBEADM, extra=extra)
    assert findings(MultiNicAmbiguous, ctx) == []


def test_k3s_node_ip_pins_it_only_when_flannel_uses_it() -> None:
    ctx = net_node("incident000-wifi-ethernet", KUBEADM)
    ctx.facts["k3s"] = k3s_fact(**{"node-ip": "192.168.1.34"})
    assert findings(MultiNicAmbiguous, ctx) == []
    ctx.facts["k3s"] = k3s_fact(**{"node-ip": "192.168.1.50"})
    [finding] = findings(MultiNicAmbiguous, ctx)
    assert any("node-ip=192.168.1.50 does not pin flannel" in e for e in finding.evidence)


def test_one_default_but_two_subnets_is_ambiguous() -> None:
    ctx = net_node("policy-table-defaults", K3S)
    [finding] = findings(MultiNicAmbiguous, ctx)
    assert "candidate uplink eth1: 10.2.0.5/24" in finding.evidence


def test_calico_fix_names_autodetection() -> None:
    cluster = ClusterConfig(pod_cidr="10.42.0.0/16", cni="calico")
    [finding] = findings(MultiNicAmbiguous, net_node("policy-table-defaults", cluster))
    assert "IP_AUTODETECTION_METHOD=interface=eth0" in finding.fix[-1]


def test_single_uplink_and_unplugged_second_nic_are_clean() -> None:
    assert findings(MultiNicAmbiguous, net_node("incident002-slash16", K3S)) == []
    # eth1 has an address but no carrier: not a candidate
    assert findings(MultiNicAmbiguous, net_node("duplicate-connected", K3S)) == []
    # docker0 and kube-ipvs0 are never uplinks
    assert findings(MultiNicAmbiguous, net_node("static-route-over-cluster", K3S)) == []


# --- mtu.mismatch ------------------------------------------------------------------------------


def test_underlay_mtu_lowered_under_flannel() -> None:
    ctx = net_node("mtu-underlay-1400", K3S)
    [finding] = findings(MtuMismatch, ctx)
    assert finding.id == "mtu.mismatch"
    assert finding.severity is Severity.WARNING
    # flannel.1 has no `dev`: the underlay is found through its local address
    assert finding.evidence == [
        "flannel.1 mtu 1450 + 50 bytes VXLAN overhead = 1500 > eth0 mtu 1400"
    ]
    assert finding.fix[0] == "ip link set dev flannel.1 mtu 1350"
    assert finding.fix[-1].endswith("ip link set dev eth0 mtu 1500")
    assert MtuMismatch.causes == ("api.tls-handshake-timeout",)


def test_subnet_env_mtu_too_large_is_reported_on_the_same_finding() -> None:
    extra = {FlannelSubnetEnvCollector: [SUBNET_ENV]}
    [finding] = findings(MtuMismatch, net_node("mtu-underlay-1400", K3S, extra=extra))
    assert finding.evidence[1].startswith(
        "/run/flannel/subnet.env FLANNEL_MTU=1450 > eth0 mtu 1400 - 50 = 1350"
    )


def test_subnet_env_alone_too_large() -> None:
    env = SUBNET_ENV.replace("FLANNEL_MTU=1450", "FLANNEL_MTU=1500")
    ctx = net_node("incident002-slash16", K3S, extra={FlannelSubnetEnvCollector: [env]})
    [finding] = findings(MtuMismatch, ctx)
    assert finding.evidence == [
        "flannel.1 mtu 1450 fits eth0 mtu 1500",
        "/run/flannel/subnet.env FLANNEL_MTU=1500 > eth0 mtu 1500 - 50 = 1450: pods get "
        "interfaces larger than the overlay carries",
    ]
    assert "FLANNEL_MTU should become 1450" in finding.fix[0]


def test_subnet_env_without_flannel_device_uses_the_default_route_device() -> None:
    env = SUBNET_ENV.replace("FLANNEL_MTU=1450", "FLANNEL_MTU=1480")
    ctx = net_node("duplicate-connected", K3S, extra={FlannelSubnetEnvCollector: [env]})
    [finding] = findings(MtuMismatch, ctx)
    assert "device of the default route, eth0" in finding.evidence[1]


def test_matching_mtus_are_clean() -> None:
    extra = {FlannelSubnetEnvCollector: [SUBNET_ENV]}
    assert findings(MtuMismatch, net_node("incident002-slash16", K3S, extra=extra)) == []
    assert findings(MtuMismatch, net_node("incident003-two-uplinks", K3S)) == []
    missing = failed(1, "cat: /run/flannel/subnet.env: No such file or directory")
    ctx = net_node("incident002-slash16", K3S, extra={FlannelSubnetEnvCollector: [missing]})
    assert findings(MtuMismatch, ctx) == []


def test_mtu_fix_quotes_device_names() -> None:
    ctx = net_node("mtu-underlay-1400", K3S, replace=('"eth0"', '"e;x"'))
    [finding] = findings(MtuMismatch, ctx)
    assert finding.fix[-1].endswith("ip link set dev 'e;x' mtu 1500")
