"""Firewall and iptables rules on captured rulesets, through the real parsers and engine."""

from __future__ import annotations

from cnidoctor.collectors.firewall import FirewalldCollector, UfwCollector
from cnidoctor.collectors.iptables import IptablesCollector
from cnidoctor.collectors.network import LinksCollector
from cnidoctor.collectors.nftables import NftablesCollector
from cnidoctor.models import ClusterConfig
from cnidoctor.rules.base import NodeContext
from cnidoctor.rules.firewall import ForwardDrop, HostFirewallActive, InputDropBlocksClusterPorts
from cnidoctor.rules.iptables import BackendMismatch, StaleRules
from cnidoctor.transports.base import CommandResult
from helpers import DATA, failed, findings, node, ok

FLANNEL = ClusterConfig(cni="flannel", pod_cidr="10.42.0.0/16")
NO_FIREWALLD = failed(127, "sh: firewall-cmd: not found")
#: ip -j addr of a node whose 192.168.1.34/24 sits on enp4s0 (written like iproute2 prints it)
LINKS = """[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP"],"mtu":65536,"addr_info":[
{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host"}]},
{"ifindex":2,"ifname":"enp4s0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,
"addr_info":[{"family":"inet","local":"192.168.1.34","prefixlen":24,"scope":"global"}]}]"""


def text(relative: str) -> str:
    path = DATA / relative
    return path.read_text() if path.exists() else ""


def iptables(case: str) -> list[str | CommandResult]:
    stderr = text(f"iptables/{case}.nft-save.stderr")
    return [
        ok(text(f"iptables/{case}.nft-save.txt"), stderr),
        text(f"iptables/{case}.legacy-save.txt"),
        text(f"iptables/{case}.nft-save.txt"),
        text(f"iptables/{case}.nft-save6.txt"),
        text(f"iptables/{case}.legacy-save6.txt"),
        text(f"iptables/{case}.nft-save6.txt"),
    ]


def ctx(
    case: str,
    role: str = "worker",
    cluster: ClusterConfig = FLANNEL,
    address: str | None = "192.168.1.34",
    ufw_case: str | None = None,
    firewalld: CommandResult = NO_FIREWALLD,
) -> NodeContext:
    ufw_case = ufw_case or (case if (DATA / f"ufw/{case}.ufw-conf.txt").exists() else "empty")
    return node(
        {
            IptablesCollector: iptables(case),
            NftablesCollector: [text(f"nft/{case}.json")],
            UfwCollector: [
                text(f"ufw/{ufw_case}.ufw-conf.txt"),
                text(f"ufw/{ufw_case}.default-ufw.txt"),
            ],
            FirewalldCollector: [firewalld],
            LinksCollector: [LINKS],
        },
        cluster=cluster,
        role=role,
        address=address,
    )


# --------------------------------------------------------------------------- host firewall


def test_host_firewall_active_on_ufw() -> None:
    [finding] = findings(HostFirewallActive, ctx("ufw-enabled"))
    assert finding.id == "firewall.host-firewall-active"
    assert "/etc/ufw/ufw.conf: ENABLED=yes" in finding.evidence
    assert any(e.startswith("iptables: 63 ufw chains") for e in finding.evidence)
    assert finding.fix[:2] == ["ufw allow 10250/tcp", "ufw allow 8472/udp"]
    assert finding.fix[-1].endswith("ufw disable")


def test_host_firewall_active_on_firewalld() -> None:
    [finding] = findings(HostFirewallActive, ctx("nft-firewalld-like", firewalld=ok("running\n")))
    assert finding.evidence == [
        "firewall-cmd --state: running",
        "nftables: table inet firewalld present",
    ]
    assert "firewall-cmd --permanent --add-port=10250/tcp" in finding.fix
    assert "firewall-cmd --reload" in finding.fix


def test_no_host_firewall() -> None:
    assert findings(HostFirewallActive, ctx("kube-proxy-flannel")) == []
    assert findings(HostFirewallActive, ctx("nft-native-drop")) == []


# --------------------------------------------------------------------------- cluster ports


def test_incident_000_ufw_blocks_kubelet_and_vxlan() -> None:
    [finding] = findings(InputDropBlocksClusterPorts, ctx("ufw-enabled"))
    assert finding.id == "firewall.input-drop-blocks-cluster-ports"
    assert finding.severity == "critical"
    ev = finding.evidence
    assert ev[0].startswith("simulated a new connection from a peer at 192.168.1.1")
    kubelet = next(e for e in ev if e.startswith("10250/tcp (kubelet)"))
    assert kubelet.startswith(
        "10250/tcp (kubelet): dropped by policy DROP of chain INPUT [iptables-nft filter INPUT]"
    )
    assert "ufw-user-input" in kubelet
    assert any(e.startswith("8472/udp (flannel VXLAN): dropped") for e in ev)
    assert not any(e.startswith("6443/tcp") for e in ev)  # a worker serves no API
    assert finding.fix == [
        "ufw allow 10250/tcp",
        "ufw allow 8472/udp",
        "or, if the node needs no host firewall (disruptive): ufw disable",
    ]
    assert not any("-F" in step.split() or "flush" in step for step in finding.fix)


def test_registry_entries() -> None:
    from cnidoctor.rules import BUILTIN_RULES

    ours = [
        HostFirewallActive,
        InputDropBlocksClusterPorts,
        ForwardDrop,
        BackendMismatch,
        StaleRules,
    ]
    assert all(rule in BUILTIN_RULES for rule in ours)
    assert [r.id for r in ours] == [
        "firewall.host-firewall-active",
        "firewall.input-drop-blocks-cluster-ports",
        "firewall.forward-drop",
        "iptables.backend-mismatch",
        "iptables.stale-rules",
    ]
    assert HostFirewallActive.causes == (
        "firewall.input-drop-blocks-cluster-ports",
        "firewall.forward-drop",
    )
    assert InputDropBlocksClusterPorts.causes == ("kubelet.unreachable", "api.unreachable")
    assert [r.severity for r in ours] == ["warning", "critical", "warning", "warning", "warning"]


def test_input_drop_that_accepts_the_cluster_ports_is_fine() -> None:
    assert findings(InputDropBlocksClusterPorts, ctx("ufw-allow-cluster")) == []
    # control plane: API, kubelet, etcd and VXLAN all accepted by the native nft ruleset
    assert findings(InputDropBlocksClusterPorts, ctx("nft-native-jump", "control-plane")) == []


def test_control_plane_ports_with_ufw_allows_lacking_etcd() -> None:
    [finding] = findings(InputDropBlocksClusterPorts, ctx("ufw-allow-cluster", "control-plane"))
    blocked = [e.split(":")[0] for e in finding.evidence[1:]]
    assert blocked == ["2379-2380/tcp (etcd client and peer)"]
    assert finding.fix[0] == "ufw allow 2379:2380/tcp"


def test_native_nft_drop_gets_nft_insert_fix() -> None:
    [finding] = findings(InputDropBlocksClusterPorts, ctx("nft-native-drop"))
    assert finding.evidence[1] == (
        "8472/udp (flannel VXLAN): dropped by policy drop of chain input [nft inet filter input]"
    )
    assert finding.fix[0] == "nft insert rule inet filter input udp dport 8472 accept"
    assert "persistent" in finding.fix[-1]


def test_plain_iptables_drop_gets_iptables_insert_fix() -> None:
    rules = (
        "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n"
    )
    c = node(
        {
            IptablesCollector: [rules, "", rules, "", "", ""],
            NftablesCollector: [text("nft/empty.json")],
            UfwCollector: [text("ufw/empty.ufw-conf.txt"), ""],
            LinksCollector: [LINKS],
        },
        cluster=ClusterConfig(cni="calico"),
        address=None,
    )
    [finding] = findings(InputDropBlocksClusterPorts, c)
    assert "a peer (address unknown: the node's InternalIP is not known)" in finding.evidence[0]
    assert finding.fix[:3] == [
        "iptables -I INPUT -p tcp --dport 10250 -j ACCEPT",
        "iptables -I INPUT -p tcp --dport 179 -j ACCEPT",
        "iptables -I INPUT -p udp --dport 4789 -j ACCEPT",
    ]
    assert "persistent" in finding.fix[-1]


def test_unknown_peer_address_makes_source_rules_uncertain() -> None:
    [finding] = findings(InputDropBlocksClusterPorts, ctx("ufw-allow-from-subnet", address=None))
    kubelet = finding.evidence.index(next(e for e in finding.evidence if e.startswith("10250/")))
    assert finding.evidence[kubelet + 1].startswith("10250/tcp: uncertain")
    assert any(
        "-s 192.168.1.0/24" in e and "peer's address is not known" in e for e in finding.evidence
    )
    # with the address known, the subnet rule decides: only VXLAN is blocked
    [known] = findings(InputDropBlocksClusterPorts, ctx("ufw-allow-from-subnet"))
    assert [e.split(" ")[0] for e in known.evidence[1:]] == ["8472/udp"]


def test_firewalld_reject_gets_firewall_cmd_fix() -> None:
    [finding] = findings(InputDropBlocksClusterPorts, ctx("nft-firewalld-like"))
    assert "dropped by rule `reject` [nft inet firewalld filter_INPUT]" in finding.evidence[1]
    assert finding.fix[0] == "firewall-cmd --permanent --add-port=10250/tcp"


def test_uncertain_verdicts_are_said_in_the_evidence() -> None:
    rules = (
        "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n"
        "-A INPUT -m set --match-set allowed src -j ACCEPT\nCOMMIT\n"
    )
    c = node(
        {
            IptablesCollector: [rules, "", rules, "", "", ""],
            NftablesCollector: [text("nft/empty.json")],
            UfwCollector: [text("ufw/empty.ufw-conf.txt"), ""],
            LinksCollector: [LINKS],
        },
        cluster=FLANNEL,
        address="192.168.1.34",
    )
    [finding] = findings(InputDropBlocksClusterPorts, c)
    assert any(e.startswith("10250/tcp: uncertain") for e in finding.evidence)
    assert any("-m set --match-set allowed src" in e for e in finding.evidence)


# --------------------------------------------------------------------------- forward


def test_docker_forward_drop() -> None:
    [finding] = findings(ForwardDrop, ctx("docker-forward-drop"))
    assert finding.id == "firewall.forward-drop" and finding.severity == "warning"
    assert finding.evidence[0].startswith(
        "forwarded pod traffic 10.42.1.10 (cni0) -> 10.42.2.10 (flannel.1): dropped by policy "
        "DROP of chain FORWARD"
    )
    assert finding.fix[:2] == [
        "iptables -I DOCKER-USER -s 10.42.0.0/16 -j ACCEPT",
        "iptables -I DOCKER-USER -d 10.42.0.0/16 -j ACCEPT",
    ]


def test_docker_forward_drop_with_flannel_accept_is_fine() -> None:
    assert findings(ForwardDrop, ctx("docker-forward-drop-flannel")) == []
    assert findings(ForwardDrop, ctx("kube-proxy-flannel")) == []


def test_forward_drop_without_pod_cidr_says_what_it_assumed() -> None:
    [finding] = findings(ForwardDrop, ctx("ufw-enabled", cluster=ClusterConfig()))
    assert finding.evidence[0] == "pod CIDR unknown: simulated with 10.42.0.0/16"
    assert finding.fix == [
        "ufw route allow from 10.42.0.0/16",
        "ufw route allow to 10.42.0.0/16",
    ]


# --------------------------------------------------------------------------- iptables


def test_backend_mismatch() -> None:
    [finding] = findings(BackendMismatch, ctx("both-backends"))
    assert finding.id == "iptables.backend-mismatch"
    assert finding.evidence[:2] == [
        "iptables-nft-save: 12 rules: filter (12 rules)",
        "iptables-legacy-save: 2 rules: filter (2 rules)",
    ]
    assert "`iptables` on this node uses the nft backend" in finding.evidence
    assert finding.fix == [
        "iptables-legacy-save > /root/iptables-legacy.backup",
        "iptables-legacy -t filter -D INPUT -j KUBE-FIREWALL",
        "iptables-legacy -t filter -D KUBE-FIREWALL -m comment --comment 'kubernetes firewall "
        "for dropping marked packets' -m mark --mark 0x8000/0x8000 -j DROP",
        "iptables-legacy -t filter -X KUBE-FIREWALL",
        "iptables-legacy -t filter -P FORWARD ACCEPT",
    ]


def test_one_backend_is_fine() -> None:
    assert findings(BackendMismatch, ctx("ufw-enabled")) == []
    assert findings(BackendMismatch, ctx("empty")) == []


def test_stale_calico_and_cilium_chains_on_flannel() -> None:
    [finding] = findings(StaleRules, ctx("stale-cni"))
    assert finding.id == "iptables.stale-rules"
    assert finding.evidence == [
        "the cluster's CNI is flannel",
        "iptables-nft filter: 3 calico chains: cali-FORWARD, cali-INPUT, cali-from-host-endpoint",
        "iptables-nft filter: 2 cilium chains: CILIUM_FORWARD, CILIUM_INPUT",
    ]
    assert finding.fix[0] == (
        "iptables-nft -t filter -D INPUT -m comment --comment cali:Cz_u1IQiXIMmKD4c -j cali-INPUT"
    )
    assert "iptables-nft -t filter -X cali-INPUT" in finding.fix
    assert not any("FLANNEL" in step for step in finding.fix)


def test_stale_rules_with_auto_cni_only_when_two_coexist() -> None:
    [finding] = findings(StaleRules, ctx("stale-cni", cluster=ClusterConfig()))
    assert "coexist" in finding.evidence[0]
    assert findings(StaleRules, ctx("kube-proxy-flannel", cluster=ClusterConfig())) == []


def test_own_cni_chains_are_not_stale() -> None:
    assert findings(StaleRules, ctx("kube-proxy-flannel")) == []
    cilium = ClusterConfig(cni="cilium")
    [finding] = findings(StaleRules, ctx("kube-proxy-flannel", cluster=cilium))
    assert finding.evidence[1] == "iptables-nft filter: 1 flannel chains: FLANNEL-FWD"
