"""The host firewall: ufw/firewalld in charge, cluster ports dropped on INPUT, FORWARD drop.

Port verdicts come from `cnidoctor.analysis.netfilter.evaluate` on the node's ACTUAL
rulesets (iptables of both backends and native nftables), not from ufw's or firewalld's
own view, so a port opened by hand or closed by an extra rule is judged correctly.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Iterator
from functools import lru_cache

from cnidoctor.analysis.netfilter import Packet, Verdict, evaluate
from cnidoctor.analysis.ports import Port, required_ports
from cnidoctor.analysis.segments import IPAddr, Network
from cnidoctor.collectors.firewall import FirewalldCollector, UfwCollector
from cnidoctor.collectors.iptables import IptablesCollector
from cnidoctor.collectors.network import LinksCollector
from cnidoctor.collectors.nftables import NftablesCollector
from cnidoctor.facts.firewall import Firewalld, Iptables, Nftables, Ufw
from cnidoctor.facts.network import Links
from cnidoctor.models import Severity
from cnidoctor.rules.base import Hit, NodeContext, Rule

PERSIST = (
    "make it persistent: save the rules with your distribution's tool "
    "(`netfilter-persistent save` on Debian/Ubuntu, `service iptables save` on RHEL; "
    "/etc/nftables.conf for nft rules), or add them to the configuration that created the DROP"
)


def _ufw_chains(ipt: Iptables | None) -> list[str]:
    if ipt is None:
        return []
    tables = [t for r in ipt.rulesets for t in r.tables.values()]
    return sorted({name for t in tables for name in _ufw_names(tuple(t.chains))})


@lru_cache(maxsize=1 << 10)
def _ufw_names(chains: tuple[str, ...]) -> tuple[str, ...]:
    """ufw's among a table's chains. Cached: the nodes of a cluster have the same chains."""
    return tuple(name for name in chains if name.startswith(("ufw-", "ufw6-")))


def _ufw_active(ufw: Ufw | None, ipt: Iptables | None) -> bool:
    return bool((ufw is not None and ufw.enabled) or _ufw_chains(ipt))


def _firewalld_table(nft: Nftables | None) -> str | None:
    if nft is None:
        return None
    table = nft.table("inet", "firewalld")
    return table.label if table else None


def _firewall_facts(node: NodeContext) -> tuple[Iptables | None, Nftables | None]:
    """The rulesets; at least one must have been collected, else the rule is skipped."""
    ipt: Iptables | None = node.fact_or_none(IptablesCollector)
    nft: Nftables | None = node.fact_or_none(NftablesCollector)
    if ipt is None and nft is None:
        node.fact(IptablesCollector)  # raises FactUnavailable with the reason
    return ipt, nft


class HostFirewallActive(Rule):
    id = "firewall.host-firewall-active"
    severity = Severity.WARNING
    title = "a host firewall (ufw or firewalld) manages this node's rules"
    explanation = (
        "ufw and firewalld install a default-deny INPUT (and FORWARD) policy and rewrite "
        "their chains on reload, underneath the rules kube-proxy and the CNI maintain. "
        "Unless every port the cluster needs is explicitly allowed, kubelet, the API server "
        "and overlay traffic are silently dropped, typically on a newly added node."
    )
    needs = (UfwCollector, FirewalldCollector, IptablesCollector, NftablesCollector)
    fix = (
        "allow the cluster's ports in the host firewall (see firewall.input-drop-blocks-"
        "cluster-ports), or disable it on Kubernetes nodes",
    )
    causes = ("firewall.input-drop-blocks-cluster-ports", "firewall.forward-drop")

    def check(self, node: NodeContext) -> Iterator[Hit]:
        ufw: Ufw | None = node.fact_or_none(UfwCollector)
        firewalld: Firewalld | None = node.fact_or_none(FirewalldCollector)
        ipt: Iptables | None = node.fact_or_none(IptablesCollector)
        nft: Nftables | None = node.fact_or_none(NftablesCollector)
        if ufw is None and firewalld is None and ipt is None and nft is None:
            node.fact(IptablesCollector)
        ports = _ports_for(node)
        evidence: list[str] = []
        fix: list[str] = []
        if _ufw_active(ufw, ipt):
            if ufw is not None and ufw.enabled:
                evidence.append("/etc/ufw/ufw.conf: ENABLED=yes")
                if ufw.default_input_policy:
                    evidence.append(
                        f"/etc/default/ufw: DEFAULT_INPUT_POLICY={ufw.default_input_policy}"
                    )
            chains = _ufw_chains(ipt)
            if chains:
                shown = ", ".join(chains[:4]) + (", ..." if len(chains) > 4 else "")
                evidence.append(f"iptables: {len(chains)} ufw chains ({shown})")
            fix += [f"ufw allow {p.ufw_spec}" for p in ports]
            if node.cluster.pod_cidr:
                fix.append(f"ufw allow from {shlex.quote(node.cluster.pod_cidr)}")
            fix.append("or, if the node needs no host firewall (disruptive): ufw disable")
        fw_table = _firewalld_table(nft)
        if (firewalld is not None and firewalld.running) or fw_table:
            if firewalld is not None and firewalld.running:
                evidence.append("firewall-cmd --state: running")
            if fw_table:
                evidence.append(f"nftables: table {fw_table} present")
            fix += [
                f"firewall-cmd --permanent --add-port={p.ufw_spec.replace(':', '-')}" for p in ports
            ]
            if node.cluster.pod_cidr:
                fix.append(
                    "firewall-cmd --permanent --zone=trusted --add-source="
                    + shlex.quote(node.cluster.pod_cidr)
                )
            fix += [
                "firewall-cmd --reload",
                "or, if the node needs no host firewall (disruptive): "
                "systemctl disable --now firewalld",
            ]
        if evidence:
            yield Hit(evidence=evidence, fix=fix)


def _ports_for(node: NodeContext) -> list[Port]:
    """The node's required ports; `etcd` is read when the context carries it (inventory)."""
    return required_ports(node.role, node.cluster.cni, node.etcd, node.cluster.flannel_backend)


def _peer(node: NodeContext, links: Links | None) -> tuple[str | None, str | None, str]:
    """(peer source address, ingress interface, how it was chosen) for the simulation.

    Without the node's address the peer's is unknown too: rules that depend on the
    source then make the verdict uncertain instead of being judged on a made-up address.
    """
    unknown = "a peer (address unknown: the node's InternalIP is not known)"
    if node.address is None:
        return None, None, unknown
    try:
        own = ipaddress.ip_address(node.address)
    except ValueError:
        return None, None, unknown
    iface: str | None = None
    network: Network | None = None
    for link in links.links if links else []:
        for addr in link.addresses:
            if addr.local == node.address:
                iface, network = link.ifname, addr.interface.network
    if network is None:
        network = ipaddress.ip_network(f"{own}/24", strict=False)
    peer = next((h for h in _first_hosts(network) if h != own), network.network_address)
    return str(peer), iface, f"a peer at {peer} (in {network}, the node's subnet)"


@lru_cache(maxsize=256)
def _first_hosts(network: Network) -> tuple[IPAddr, ...]:
    """The network's first (up to 3) host addresses. Cached: nodes share their subnet."""
    return tuple(network.network_address + i for i in range(1, min(network.num_addresses - 1, 4)))


def decided_by(verdict: Verdict) -> str:
    """`policy DROP of chain INPUT [where]` or `rule `TEXT` [where]`, then the chains walked."""
    what = verdict.decided_by
    if not what.startswith("policy "):
        what = f"rule `{what}`"
    chains = verdict.path[1:]
    after = f" after {' > '.join(chains)}" if chains else ""
    return f"{what} [{verdict.where}]{after}"


def _describe_drop(port: Port, verdict: Verdict) -> str:
    return f"{port.label} ({port.purpose}): dropped by {decided_by(verdict)}"


class InputDropBlocksClusterPorts(Rule):
    id = "firewall.input-drop-blocks-cluster-ports"
    severity = Severity.CRITICAL
    title = "the node's firewall drops ports the cluster needs"
    explanation = (
        "The INPUT rules drop (or reject) new connections to ports other nodes must reach: "
        "the kubelet (10250/tcp), the API server (6443/tcp), etcd, or the overlay (VXLAN "
        "8472/udp). The control plane then times out on logs/exec and node health, and "
        "agents on other nodes cannot reach the API or tunnel pod traffic to this node."
    )
    needs = (IptablesCollector, NftablesCollector, UfwCollector, LinksCollector)
    fix = ("allow each blocked port on INPUT, before the rule or policy that drops it",)
    causes = ("kubelet.unreachable", "api.unreachable")

    def check(self, node: NodeContext) -> Iterator[Hit]:
        ipt, nft = _firewall_facts(node)
        rulesets = ipt.rulesets if ipt else []
        links: Links | None = node.fact_or_none(LinksCollector)
        src, iface, peer_text = _peer(node, links)
        blocked: list[tuple[Port, Verdict]] = []
        for port in _ports_for(node):
            for number in sorted({port.first, port.last}):
                packet = Packet(port.proto, number, src, in_iface=iface, dst=node.address)
                verdict = evaluate(packet, rulesets, nft)
                if not verdict.accepted:
                    blocked.append((port, verdict))
                    break
        if not blocked:
            return
        evidence = [f"simulated a new connection from {peer_text} to each cluster port"]
        notes: list[str] = []
        for port, verdict in blocked:
            evidence.append(_describe_drop(port, verdict))
            if verdict.uncertain:
                evidence.append(
                    f"{port.label}: uncertain, some rules could not be evaluated; "
                    "the verdict assumes they do not match"
                )
                notes += [n for n in verdict.notes if n not in notes]
        evidence += notes[:5]
        ufw: Ufw | None = node.fact_or_none(UfwCollector)
        yield Hit(evidence=evidence, fix=_port_fix(blocked, _ufw_active(ufw, ipt)))


def _port_fix(blocked: list[tuple[Port, Verdict]], ufw_active: bool) -> list[str]:
    fix: list[str] = []
    if ufw_active:
        fix += [f"ufw allow {port.ufw_spec}" for port, _ in blocked]
        fix.append("or, if the node needs no host firewall (disruptive): ufw disable")
        return fix
    persist = False
    firewalld = False
    for port, verdict in blocked:
        where = verdict.where
        if where.startswith("nft inet firewalld"):
            firewalld = True
            fix.append(f"firewall-cmd --permanent --add-port={port.ufw_spec.replace(':', '-')}")
        elif where.startswith("nft "):
            _, family, table, chain = where.split(" ", 3)
            match = f"{port.proto} dport {port.label.split('/')[0]} accept"
            fix.append(f"nft insert rule {shlex.join([family, table, chain])} {match}")
            persist = True
        else:
            tool = where.split(" ", 1)[0]
            tool = tool if tool.endswith("legacy") else tool.removesuffix("-nft")
            fix.append(
                f"{shlex.quote(tool)} -I INPUT -p {port.proto} --dport {port.iptables_spec} "
                "-j ACCEPT"
            )
            persist = True
    if firewalld:
        fix += [
            "firewall-cmd --reload",
            "or, if the node needs no host firewall (disruptive): "
            "systemctl disable --now firewalld",
        ]
    if persist:
        fix.append(PERSIST)
    return fix


#: pod traffic crosses these devices, per CNI: (from a local pod, to the overlay) and back
_POD_DEVICES = {
    "flannel": ("cni0", "flannel.1"),
    "auto": ("cni0", "flannel.1"),
    "calico": ("cali1a2b3c4d5e6", "vxlan.calico"),
    "cilium": ("lxc1a2b3c4d5e6", "cilium_vxlan"),
}
DEFAULT_POD_CIDR = "10.42.0.0/16"


class ForwardDrop(Rule):
    id = "firewall.forward-drop"
    severity = Severity.WARNING
    title = "the FORWARD chain drops pod-to-pod traffic"
    explanation = (
        "Pod traffic between nodes is forwarded by the host. With FORWARD policy DROP (Docker "
        "sets it, ufw's default-deny routing too) and no rule accepting the pod CIDR, "
        "cross-node pod traffic and service traffic to other nodes' pods is dropped, while "
        "pods on the same node keep working."
    )
    needs = (IptablesCollector, NftablesCollector)
    fix = ("accept the pod CIDR in FORWARD (or DOCKER-USER when Docker runs on the node)",)

    def check(self, node: NodeContext) -> Iterator[Hit]:
        ipt, nft = _firewall_facts(node)
        rulesets = ipt.rulesets if ipt else []
        cidr = node.cluster.pod_cidr or DEFAULT_POD_CIDR
        pods = _two_pods(cidr)
        if pods is None:
            return
        a, b = pods
        local, overlay = _POD_DEVICES.get(node.cluster.cni, (None, None))
        drops: list[tuple[str, Verdict]] = []
        for src, dst, iin, iout in ((a, b, local, overlay), (b, a, overlay, local)):
            packet = Packet("tcp", 8080, src, in_iface=iin, dst=dst, out_iface=iout, hook="forward")
            verdict = evaluate(packet, rulesets, nft)
            if not verdict.accepted:
                drops.append((f"{src} ({iin or 'pod'}) -> {dst} ({iout or 'pod'})", verdict))
        if not drops:
            return
        evidence = []
        if not node.cluster.pod_cidr:
            evidence.append(f"pod CIDR unknown: simulated with {DEFAULT_POD_CIDR}")
        for flow, verdict in drops:
            evidence.append(f"forwarded pod traffic {flow}: dropped by {decided_by(verdict)}")
            if verdict.uncertain:
                evidence.append("uncertain: " + "; ".join(verdict.notes[:3]))
        yield Hit(evidence=evidence, fix=_forward_fix(cidr, ipt, nft, drops))


@lru_cache(maxsize=64)
def _two_pods(cidr: str) -> tuple[str, str] | None:
    """Addresses of pods on two different nodes' /24s of an IPv4 pod CIDR (None for IPv6).
    Cached: every node of a cluster has the same pod CIDR."""
    net = ipaddress.ip_network(cidr, strict=False)
    if net.version != 4:
        return None
    a = str(net.network_address + min(net.num_addresses - 2, 256 + 10))
    b = str(net.network_address + min(net.num_addresses - 2, 2 * 256 + 10))
    return a, b


def _forward_fix(
    cidr: str, ipt: Iptables | None, nft: Nftables | None, drops: list[tuple[str, Verdict]]
) -> list[str]:
    q = shlex.quote(cidr)
    where = drops[0][1].where
    if ipt is not None and _ufw_chains(ipt):
        return [f"ufw route allow from {q}", f"ufw route allow to {q}"]
    if where.startswith("nft "):
        _, family, table, chain = where.split(" ", 3)
        spec = shlex.join([family, table, chain])
        return [
            f"nft insert rule {spec} ip saddr {q} accept",
            f"nft insert rule {spec} ip daddr {q} accept",
            "make it persistent in /etc/nftables.conf (or the tool that wrote this table)",
        ]
    tool = where.split(" ", 1)[0]
    tool = shlex.quote(tool if tool.endswith("legacy") else tool.removesuffix("-nft"))
    docker = ipt is not None and any(
        r.chain("filter", "DOCKER-USER") is not None for r in ipt.ipv4()
    )
    chain = "DOCKER-USER" if docker else "FORWARD"
    return [
        f"{tool} -I {chain} -s {q} -j ACCEPT",
        f"{tool} -I {chain} -d {q} -j ACCEPT",
        PERSIST,
    ]


RULES: list[type[Rule]] = [HostFirewallActive, InputDropBlocksClusterPorts, ForwardDrop]
