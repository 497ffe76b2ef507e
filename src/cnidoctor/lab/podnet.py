"""Pods, a kube-proxy stand-in and an "internet" for lab scenarios: what the pod probes need.

A scenario with a `PodNetwork` (its `extras`) gets, at `lab up`:

* per node, an application pod: a network namespace behind the node's cni0 bridge (veth,
  an address of the node's pod subnet, default route via cni0), bound into the node's
  private mount namespace at /run/netns/cni-<id>, where the pod probes find it exactly as
  on a real node (there, containerd puts it);
* per node, a cluster DNS pod (another namespace behind cni0), and kube-proxy's NAT rules
  in the node: the kubernetes service (service CIDR .1:443) to the API server, the DNS
  service (.10:53) to the node's own DNS pod (one endpoint per node, as NodeLocal DNSCache
  or internalTrafficPolicy: Local give, so each node's answer depends on its own SNAT);
* the masquerade rules the scenario says (pod CIDR leaving by a given interface);
* an upstream namespace standing for the internet, wired to the switch namespace (the
  segments' router) and routed back only to the networks the scenario lists.

Namespaces are recorded in the lab state before they are made, so `down` removes them
(also after a crash); links, rules and the bind mounts go with the namespaces. The
processes that answer (echo, resolvers, the API's TLS listener) are started by the probe
run itself and stopped when it ends (lab/farend.py): nothing keeps running while up.
"""

from __future__ import annotations

import hashlib
import ipaddress
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnidoctor.lab import system
from cnidoctor.lab.state import LAB_DIR, MOUNT_DIR
from cnidoctor.lab.system import in_netns, in_node, netns_path

if TYPE_CHECKING:
    from cnidoctor.lab.farend import LabFarEnd
    from cnidoctor.lab.model import NodeSpec, Scenario

#: cluster DNS answers for this name, the way CoreDNS's kubernetes plugin does
KUBERNETES_NAME = "kubernetes.default.svc.cluster.local"


@dataclass(frozen=True)
class Upstream:
    """The internet: a namespace behind the switch with an echo service and a resolver."""

    netns: str
    #: its address (with prefix) on the link to the switch, and the switch's end of it
    address: str
    switch_address: str
    #: the networks it can answer: routes via the switch (nothing else comes back)
    routes_back: tuple[str, ...]
    echo_port: int = 8080
    #: names the probes resolve through the cluster DNS (its resolver answers every name)
    external_names: tuple[str, ...] = ("ghcr.io",)
    switch_port: str = "upstream0"

    @property
    def ip(self) -> str:
        return str(ipaddress.ip_interface(self.address).ip)

    @property
    def echo_url(self) -> str:
        return f"http://{self.ip}:{self.echo_port}/"


@dataclass(frozen=True)
class LabPod:
    """A pod: its node, namespace, address and role (app = probed from, dns = answers)."""

    node: str
    netns: str
    ip: str
    role: str = "app"

    @property
    def runtime_name(self) -> str:
        """Its name under the node's /run/netns, as containerd names pod namespaces."""
        return f"cni-{uuid.uuid5(uuid.NAMESPACE_URL, 'cnidoctor-lab:' + self.netns)}"

    @property
    def veth(self) -> str:
        """The node-side end: veth + 8 hex digits, as the bridge plugin names them."""
        return "veth" + hashlib.sha256(self.netns.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class PodNetwork:
    """Scenario extras (lab.model.Scenario.extras): pods, service NAT, masquerade, upstream."""

    pods: tuple[LabPod, ...]
    service_cidr: str
    #: the API server (node name, port): where the kubernetes service leads, TLS served there
    api_node: str
    api_port: int = 6443
    #: (node name, interface) pairs that masquerade the pod CIDR leaving by that interface
    masquerade: tuple[tuple[str, str], ...] = ()
    upstream: Upstream | None = None
    cluster_domain: str = "cluster.local"

    @property
    def netns(self) -> tuple[str, ...]:
        extra = (self.upstream.netns,) if self.upstream else ()
        return (*extra, *(p.netns for p in self.pods))

    @property
    def service_ip(self) -> str:
        return str(ipaddress.ip_network(self.service_cidr).network_address + 1)

    @property
    def dns_service_ip(self) -> str:
        return str(ipaddress.ip_network(self.service_cidr).network_address + 10)

    def pod(self, node: str, role: str) -> LabPod | None:
        return next((p for p in self.pods if p.node == node and p.role == role), None)

    def far_end(self, scenario: Scenario) -> LabFarEnd:
        """The responders the probe run starts and stops (lab/farend.py)."""
        from cnidoctor.lab.farend import LabFarEnd

        return LabFarEnd(scenario, self, LAB_DIR / scenario.name)

    # -- build (at `lab up`, after the nodes and their mount namespaces) -------------------

    def build(self, scenario: Scenario, state: Any) -> None:
        if self.upstream is not None:
            self._build_upstream(scenario, self.upstream, state)
        for pod in self.pods:
            self._build_pod(scenario, pod, state)
        for node in scenario.nodes:
            rules = self.nat_rules(scenario, node)
            if rules:
                system.run(in_netns(node.netns, ["iptables-restore", "--noflush"]), input=rules)

    def _build_upstream(self, scenario: Scenario, up: Upstream, state: Any) -> None:
        sw = scenario.switch_netns
        # the internet does no reverse-path filtering for us: what arrives is seen, and
        # answers go only where a route leads (replies to 10.42.x.x are simply lost)
        no_rp_filter = ("net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
        system.add_netns(state, up.netns, *no_rp_filter)
        system.sysctl(sw, *no_rp_filter)
        system.run(
            [
                *("ip", "-n", sw, "link", "add", up.switch_port, "type", "veth"),
                *("peer", "name", "eth0", "netns", up.netns),
            ]
        )
        system.run(["ip", "-n", sw, "addr", "add", up.switch_address, "dev", up.switch_port])
        system.run(["ip", "-n", sw, "link", "set", up.switch_port, "up"])
        system.run(["ip", "-n", up.netns, "addr", "add", up.address, "dev", "eth0"])
        system.run(["ip", "-n", up.netns, "link", "set", "eth0", "up"])
        via = str(ipaddress.ip_interface(up.switch_address).ip)
        for network in up.routes_back:
            system.run(["ip", "-n", up.netns, "route", "add", network, "via", via])

    def _build_pod(self, scenario: Scenario, pod: LabPod, state: Any) -> None:
        node = _node(scenario, pod.node)
        subnet = ipaddress.ip_network(node.pod_subnet)
        gateway = str(ipaddress.ip_interface(node.cni0_address).ip)
        system.add_netns(state, pod.netns)
        system.run(
            [
                *("ip", "-n", node.netns, "link", "add", pod.veth, "type", "veth"),
                *("peer", "name", "eth0", "netns", pod.netns),
            ]
        )
        system.run(["ip", "-n", node.netns, "link", "set", pod.veth, "master", "cni0", "up"])
        address = f"{pod.ip}/{subnet.prefixlen}"
        system.run(["ip", "-n", pod.netns, "addr", "add", address, "dev", "eth0"])
        system.run(["ip", "-n", pod.netns, "link", "set", "eth0", "up"])
        system.run(["ip", "-n", pod.netns, "route", "add", "default", "via", gateway])
        if pod.role == "app":
            self._bind_into_node(node, pod)

    @staticmethod
    def _bind_into_node(node: NodeSpec, pod: LabPod) -> None:
        """/run/netns/cni-<id> in the node's mount namespace: where containerd keeps it."""
        mnt = str(MOUNT_DIR / node.netns)
        target = f"/run/netns/{pod.runtime_name}"
        system.run(in_node(node.netns, mnt, ["mkdir", "-p", "/run/netns"]))
        system.run(in_node(node.netns, mnt, ["touch", target]))
        # nsenter joins the pod's network namespace and the node's mount namespace, so
        # /proc/self/ns/net of `mount` is the pod's, and the bind lands in the node's /run
        system.run(
            [
                "nsenter",
                f"--net={netns_path(pod.netns)}",
                f"--mount={mnt}",
                *("mount", "--bind", "/proc/self/ns/net", target),
            ]
        )

    def nat_rules(self, scenario: Scenario, node: NodeSpec) -> bytes:
        """kube-proxy's service NAT and the masquerade rules, as iptables-restore input."""
        pod_cidr = scenario.cluster.get("pod_cidr", "10.42.0.0/16")
        api = _node(scenario, self.api_node).address
        lines = ["*nat", ":KUBE-SERVICES - [0:0]"]
        portal = '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'
        lines += [f"-A PREROUTING {portal}", f"-A OUTPUT {portal}"]
        lines.append(
            f"-A KUBE-SERVICES -d {self.service_ip}/32 -p tcp -m comment --comment "
            '"default/kubernetes:https cluster IP" -m tcp --dport 443 '
            f"-j DNAT --to-destination {api}:{self.api_port}"
        )
        dns = self.pod(node.name, "dns")
        if dns is not None:
            for proto in ("udp", "tcp"):
                lines.append(
                    f"-A KUBE-SERVICES -d {self.dns_service_ip}/32 -p {proto} -m comment "
                    f'--comment "kube-system/kube-dns:dns cluster IP" -m {proto} --dport 53 '
                    f"-j DNAT --to-destination {dns.ip}:53"
                )
        for name, iface in self.masquerade:
            if name == node.name:
                lines.append(
                    f"-A POSTROUTING -s {pod_cidr} ! -d {pod_cidr} -o {iface} "
                    '-m comment --comment "pod egress masquerade" -j MASQUERADE'
                )
        lines += ["COMMIT", ""]
        return "\n".join(lines).encode()


def _node(scenario: Scenario, name: str) -> NodeSpec:
    for node in scenario.nodes:
        if node.name == name:
            return node
    raise KeyError(f"{scenario.name}: no node {name}")


def far_end_for_inventory(path: Path) -> LabFarEnd | None:
    """The lab's far end when `path` is the inventory of a lab scenario that is up."""
    from cnidoctor.lab.scenarios import SCENARIOS

    try:
        resolved = path.resolve()
        lab_dir = LAB_DIR.resolve()
    except OSError:
        return None
    if resolved.parent.parent != lab_dir:
        return None
    scenario = SCENARIOS.get(resolved.parent.name)
    extras = getattr(scenario, "extras", None)
    if scenario is None or not isinstance(extras, PodNetwork):
        return None
    return extras.far_end(scenario)
