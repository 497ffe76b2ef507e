"""Addressing on one node: host networks over the cluster CIDRs, a lost InternalIP, and
several candidate uplinks with the CNI pinned to none of them."""

from __future__ import annotations

import ipaddress
import json
import shlex
from collections.abc import Iterator, Sequence
from functools import lru_cache

from cnidoctor.analysis.cni_detect import cni_in_use
from cnidoctor.analysis.cni_settings import interface_setting
from cnidoctor.collectors.cni import CniConfigCollector
from cnidoctor.collectors.k3s import K3sConfigCollector
from cnidoctor.collectors.network import LinksCollector, RoutesCollector
from cnidoctor.facts.k3s import K3sConfig
from cnidoctor.facts.network import (
    Address,
    Link,
    Links,
    Route,
    Routes,
    is_cni_device,
    is_container_bridge,
)
from cnidoctor.models import Severity
from cnidoctor.rules.base import Hit, NodeContext, Rule

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def k3s_config(node: NodeContext) -> K3sConfig | None:
    """The node's collected k3s settings, or None when unknown or absent."""
    return node.fact_or_none(K3sConfigCollector)


def _relation(host: Network, cluster: Network) -> str:
    if host == cluster:
        return "is the same network as"
    if host.version == cluster.version and host.supernet_of(cluster):  # type: ignore[arg-type]
        return "contains"
    if host.version == cluster.version and host.subnet_of(cluster):  # type: ignore[arg-type]
        return "lies inside"
    return "overlaps"


class HostOverlapsClusterCidr(Rule):
    id = "addr.host-overlaps-cluster-cidr"
    severity = Severity.CRITICAL
    title = "a host network overlaps the pod or service CIDR"
    explanation = (
        "A host address prefix or route that covers the pod or service CIDR makes the node "
        "treat cluster addresses as if they were on the LAN: pod traffic for addresses the CNI "
        "has no more specific route for is ARPed for or sent to the gateway on the underlay "
        "instead of the overlay, and with VXLAN the switch or router sees one MAC for many IPs."
    )
    needs = (LinksCollector, RoutesCollector)
    fix = (
        "shrink the host prefix (or drop the route) so it no longer covers the cluster CIDRs, "
        "and reach other subnets through routes via the gateway",
        "or, when the cluster is (re)built, pick pod and service CIDRs outside every host network",
    )

    def check(self, node: NodeContext) -> Iterator[Hit]:
        cluster_nets = tuple(node.cluster_networks)
        if not cluster_nets:
            return  # nothing to compare with: the inventory or API did not say
        links: Links = node.fact(LinksCollector)
        routes: Routes | None = node.fact_or_none(RoutesCollector)
        pod_net = next((net for label, net in cluster_nets if label == "pod CIDR"), None)
        covered: set[tuple[str, str]] = set()
        for link in links.links:
            if link.ifname == "lo" or is_cni_device(link.ifname):
                continue
            for address in link.addresses:
                if address.scope != "global":
                    continue
                host_net = address.interface.network
                overlaps = _overlaps(host_net, cluster_nets)
                if not overlaps:
                    continue
                covered.add((link.ifname, str(host_net)))
                yield self._address_hit(link, address, host_net, overlaps, cluster_nets)
        for route in routes.routes if routes is not None else []:
            if route.type != "unicast" or route.is_default or _through_cni_device(route):
                continue
            net = route.network
            if net is None:
                continue
            overlaps = _overlaps(net, cluster_nets)
            if not overlaps:
                continue
            if route.dev and (route.dev, str(net)) in covered:
                continue  # the kernel's route of an address already reported
            if pod_net is not None and _is_pod_subnet_route(route, net, pod_net):
                continue
            yield self._route_hit(route, net, overlaps)

    def _address_hit(
        self,
        link: Link,
        address: Address,
        host_net: Network,
        overlaps: Sequence[tuple[str, Network]],
        cluster_nets: Sequence[tuple[str, Network]],
    ) -> Hit:
        evidence = [
            f"{link.ifname} {address.cidr} {_relation(host_net, net)} {label} {net}"
            for label, net in overlaps
        ]
        dev = shlex.quote(link.ifname)
        prefix = _shortest_clear_prefix(address, [n for _, n in cluster_nets])
        if prefix is None:
            fix = [
                f"the address {address.local} itself is inside a cluster CIDR: renumber "
                f"{link.ifname} outside {', '.join(str(n) for _, n in overlaps)}, or rebuild "
                "the cluster with CIDRs that do not overlap the host networks",
            ]
        else:
            new = f"{address.local}/{prefix}"
            fix = [
                f"set the prefix of {address.local} on {link.ifname} to /{prefix} or longer "
                "(the size of the real segment, e.g. /24) in the OS network configuration "
                "(netplan/NetworkManager/systemd-networkd/NixOS)",
                f"now, from a console rather than over {link.ifname}: "
                f"ip addr add {shlex.quote(new)} dev {dev} && "
                f"ip addr del {shlex.quote(address.cidr)} dev {dev}",
                f"hosts of {host_net} outside the new prefix are then reached through the "
                "gateway: add routes for the other subnets the node needs "
                "(ip route add SUBNET via GATEWAY)",
            ]
        return Hit(
            evidence=evidence,
            fix=fix,
            title=f"{link.ifname} {address.cidr} overlaps the cluster CIDRs",
        )

    def _route_hit(
        self, route: Route, net: Network, overlaps: Sequence[tuple[str, Network]]
    ) -> Hit:
        evidence = [
            f"route {route.describe()} {_relation(net, cluster)} {label} {cluster}"
            for label, cluster in overlaps
        ]
        ip = "ip -6" if route.family == "inet6" else "ip"
        spec = [route.dst]
        if route.gateway:
            spec += ["via", route.gateway]
        if route.dev:
            spec += ["dev", route.dev]
        if route.metric:
            spec += ["metric", str(route.metric)]
        if route.table != "main":
            spec += ["table", route.table]
        clusters = ", ".join(str(c) for _, c in overlaps)
        fix = [
            f"{ip} route del {shlex.join(spec)}",
            f"replace it with narrower routes that leave out {clusters}, in the OS network "
            "configuration so it stays gone after a reboot",
        ]
        return Hit(
            evidence=evidence, fix=fix, title=f"route {route.dst} overlaps the cluster CIDRs"
        )


def _overlap(a: Network, b: Network) -> bool:
    return a.version == b.version and a.overlaps(b)  # type: ignore[arg-type]


@lru_cache(maxsize=1 << 12)
def _overlaps(
    net: Network, cluster_nets: tuple[tuple[str, Network], ...]
) -> tuple[tuple[str, Network], ...]:
    """The (label, cluster network)s `net` overlaps. Cached: the nodes of a cluster share
    their segment's network and most routes, and ipaddress's overlaps() is slow."""
    return tuple((label, n) for label, n in cluster_nets if _overlap(net, n))


def _through_cni_device(route: Route) -> bool:
    """Does the route leave through a CNI device (on any of its paths)?"""
    return is_cni_device(route.dev) or any(is_cni_device(hop.dev) for hop in route.nexthops)


def _is_pod_subnet_route(route: Route, net: Network, pod_net: Network) -> bool:
    """A per-node pod subnet the CNI routes via a node (flannel host-gw, calico BGP, cilium
    native routing): inside the pod CIDR, smaller than it, through a gateway."""
    has_gateway = route.gateway is not None or any(h.gateway for h in route.nexthops)
    return (
        has_gateway and net != pod_net and net.version == pod_net.version and net.subnet_of(pod_net)  # type: ignore[arg-type]
    )


def _shortest_clear_prefix(address: Address, cluster_nets: list[Network]) -> int | None:
    """The shortest prefix for the address whose network overlaps no cluster CIDR."""
    ip = ipaddress.ip_address(address.local)
    for prefix in range(address.prefixlen + 1, ip.max_prefixlen + 1):
        net = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
        if not any(_overlap(net, c) for c in cluster_nets):
            return prefix
    return None


class NodeIpChanged(Rule):
    id = "addr.node-ip-changed"
    severity = Severity.CRITICAL
    title = "the node's InternalIP is no longer on the node"
    explanation = (
        "The cluster reaches this node at its InternalIP, but no interface holds that address "
        "any more (typically a new DHCP lease). Kubelet, etcd and the API server stay bound to, "
        "or are looked up at, an address that is gone, so logs, exec, probes and peers fail."
    )
    needs = (LinksCollector,)
    fix = (
        "give the node its address back (static address or DHCP reservation), or move the "
        "node to its new address (node-ip) and restart k3s/kubelet",
    )
    causes = ("kubelet.unreachable", "api.unreachable", "etcd.peer-unreachable")

    def check(self, node: NodeContext) -> Iterator[Hit]:
        if not node.address:
            return
        try:
            known = ipaddress.ip_address(node.address)
        except ValueError:
            return  # a host name, not an address: nothing to compare
        links: Links = node.fact(LinksCollector)
        if any(a.local == node.address for link in links.links for a in link.addresses):
            return  # the usual case, told without parsing every address
        current = [
            (link, a)
            for link in links.links
            for a in link.addresses
            if a.interface.ip.version == known.version
        ]
        if any(a.interface.ip == known for _, a in current):
            return
        shown = [
            f"{link.ifname} {a.cidr}"
            for link, a in current
            if a.scope == "global" and not is_cni_device(link.ifname)
        ]
        evidence = [
            f"the cluster knows this node as {known} (InternalIP); no interface has it",
            "the node's addresses now: " + (", ".join(shown) or "none"),
        ]
        same_subnet = next(
            (
                (link, a)
                for link, a in current
                if a.scope == "global"
                and not is_cni_device(link.ifname)
                and known in a.interface.network
            ),
            None,
        )
        fix = []
        if same_subnet is not None:
            link, a = same_subnet
            evidence.append(
                f"{link.ifname} is on {known}'s subnet ({a.cidr}): its address changed, "
                "probably by DHCP"
            )
            fix.append(
                f"restore it now: ip addr add {shlex.quote(f'{known}/{a.prefixlen}')} "
                f"dev {shlex.quote(link.ifname)}"
            )
        fix += [
            f"keep it: a static address or a DHCP reservation for {known} on this host",
            "or move the node to its new address: node-ip in /etc/rancher/k3s/config.yaml "
            "(kubeadm: --node-ip in KUBELET_EXTRA_ARGS), then restart k3s/kubelet; on a "
            "control-plane node the API server certificate SANs and etcd peer URLs carry the "
            "old address too",
        ]
        yield Hit(evidence=evidence, fix=fix)


class MultiNicAmbiguous(Rule):
    id = "iface.multi-nic-ambiguous"
    severity = Severity.WARNING
    title = "several candidate uplinks and the CNI is not pinned to one"
    explanation = (
        "Without an explicit interface the CNI takes the one of the default route (flannel, "
        "cilium) or the first that looks usable (calico). With several uplinks that choice "
        "can be the wrong network, differ between nodes, or change at the next reboot or DHCP "
        "renewal: the overlay and SNAT then go out through a NIC that does not reach the peers."
    )
    needs = (LinksCollector, RoutesCollector, K3sConfigCollector, CniConfigCollector)
    fix = ("pin the CNI to the interface that reaches the other nodes",)
    causes = ("iface.wrong-interface-selected", "egress.no-snat")

    def check(self, node: NodeContext) -> Iterator[Hit]:
        links: Links = node.fact(LinksCollector)
        routes: Routes = node.fact(RoutesCollector)
        candidates = [link for link in links.links if _is_uplink_candidate(link)]
        if len(candidates) < 2:
            return
        names = {link.ifname for link in candidates}
        defaults = sorted(
            (r for r in routes.main_table("inet") if r.is_default and set(r.devices) & names),
            key=lambda r: r.metric,
        )
        default_devs = {dev for r in defaults for dev in r.devices if dev in names}
        subnets = {
            link.ifname: frozenset(str(a.interface.network) for a in link.global_addresses())
            for link in candidates
        }
        if len(default_devs) < 2 and len(set(subnets.values())) < 2:
            return
        cni = _cni_in_use(node, links)
        k3s = k3s_config(node)
        pinned = _pinned_by(k3s, links, cni)
        # what the API shows: cilium devices, calico autodetection, k3s node-args, kube-flannel
        setting = interface_setting(cni, node.kube, node.api)
        if pinned is not None or (setting is not None and setting.pins):
            return
        evidence = [
            f"candidate uplink {link.ifname}: "
            + ", ".join(a.cidr for a in link.global_addresses())
            + (" (default route)" if link.ifname in default_devs else "")
            for link in candidates
        ]
        evidence += [f"ip route: {r.describe()}" for r in defaults]
        if setting is None or cni not in ("cilium", "calico"):
            evidence.append(_unpinned_evidence(cni, k3s))
        if setting is not None:
            evidence.append(setting.describe())
        bound = _flannel_binding(links)
        if bound is not None:
            evidence.append(f"flannel.1 is bound now to {bound[0]} ({bound[1]})")
        choice = _preferred(node, candidates, defaults)
        yield Hit(evidence=evidence, fix=_pin_fix(cni, choice, node, k3s))


def _is_uplink_candidate(link: Link) -> bool:
    """An interface the CNI could pick: up with carrier, a global IPv4, not virtual plumbing."""
    return (
        link.ifname != "lo"
        and not is_cni_device(link.ifname)
        and not is_container_bridge(link.ifname)
        and link.master is None
        and link.is_up
        and link.has_carrier
        and bool(link.global_addresses("inet"))
    )


def _cni_in_use(node: NodeContext, links: Links) -> str:
    """The configured or detected CNI, else k3s's embedded flannel, else "auto"."""
    detected = cni_in_use(node.cluster.cni, node.fact_or_none(CniConfigCollector), links)
    if detected is not None:
        return detected
    k3s = k3s_config(node)
    return "flannel" if k3s is not None and k3s.flannel_enabled else "auto"


def _pinned_by(k3s: K3sConfig | None, links: Links, cni: str) -> str | None:
    """Why the CNI's interface is fixed (k3s flannel-iface, or node-ip flannel really uses)."""
    if cni not in ("flannel", "auto") or k3s is None:
        return None
    iface = k3s.flannel_iface
    if iface:
        return f"flannel-iface={iface}"
    node_ip = k3s.node_ip
    bound = _flannel_binding(links)
    if node_ip and bound is not None and bound[1] in str(node_ip).split(","):
        return f"node-ip={node_ip}, and flannel.1 is bound to it"
    return None


def _unpinned_evidence(cni: str, k3s: K3sConfig | None) -> str:
    if cni == "cilium":
        return (
            "cilium's `devices` setting is not visible on the node: unless it is set, cilium "
            "picks the device of the default route"
        )
    if cni == "calico":
        return (
            "calico's IP autodetection method is not visible on the node: the default "
            "(first-found) picks any interface"
        )
    if k3s is not None:
        node_ip = k3s.node_ip
        extra = f" (node-ip={node_ip} does not pin flannel here)" if node_ip else ""
        return "no flannel-iface/--iface setting found in the k3s configuration" + extra
    return (
        "no flannel-iface/--iface setting found (no k3s configuration on the node; "
        "kube-flannel's --iface is not visible from the node)"
    )


def _flannel_binding(links: Links) -> tuple[str, str] | None:
    """(device, address) flannel.1 sends VXLAN from, when flannel.1 exists."""
    flannel = links.by_name("flannel.1")
    if flannel is None or flannel.vxlan is None or not flannel.vxlan.local:
        return None
    local = flannel.vxlan.local
    holder = flannel.vxlan.link or next(
        (
            link.ifname
            for link in links.links
            if any(a.local == local for a in link.addresses) and link.ifname != "flannel.1"
        ),
        "?",
    )
    return holder, local


def _preferred(node: NodeContext, candidates: list[Link], defaults: list[Route]) -> Link:
    """The interface to pin: the one holding the InternalIP, else the best default route's."""
    if node.address:
        for link in candidates:
            if any(a.local == node.address for a in link.addresses):
                return link
    for route in defaults:
        for link in candidates:
            if link.ifname in route.devices:
                return link
    return candidates[0]


def _pin_fix(cni: str, choice: Link, node: NodeContext, k3s: K3sConfig | None) -> list[str]:
    iface = shlex.quote(choice.ifname)
    addresses = choice.global_addresses("inet")
    why = f"{choice.ifname} (" + ", ".join(a.cidr for a in addresses) + ")"
    first = f"pick the interface that reaches the other nodes; suggested: {why}"
    if node.address and any(a.local == node.address for a in addresses):
        first += f", which holds the InternalIP {node.address}"
    elif node.address:
        first += f"; the cluster knows the node as {node.address}"
    if cni == "cilium":
        return [first, f"cilium upgrade --reuse-values --set devices={iface}"]
    if cni == "calico":
        return [
            first,
            f"kubectl patch installation default --type merge -p "
            f"{shlex.quote(_calico_patch(choice.ifname))} (manifest installs: "
            f"kubectl -n kube-system set env daemonset/calico-node "
            f"IP_AUTODETECTION_METHOD=interface={iface})",
        ]
    service = "k3s" if node.role == "control-plane" else "k3s-agent"
    fix = [first]
    if k3s is not None or cni in ("flannel", "auto"):
        address = addresses[0].local if addresses else None
        line = f"k3s: add `flannel-iface: {iface}`"
        if address:
            line += f" and `node-ip: {address}`"
        fix += [
            line + " to /etc/rancher/k3s/config.yaml",
            f"systemctl restart {service}",
        ]
    if k3s is None:
        fix.append(
            "kube-flannel: add --iface=" + iface + " (or --iface-can-reach=PEER_IP when names "
            "differ between nodes) to the kube-flannel container args and restart its pods"
        )
    return fix


def _calico_patch(iface: str) -> str:
    return json.dumps(
        {"spec": {"calicoNetwork": {"nodeAddressAutodetectionV4": {"interface": iface}}}}
    )


RULES: list[type[Rule]] = [HostOverlapsClusterCidr, NodeIpChanged, MultiNicAmbiguous]
