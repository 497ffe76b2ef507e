"""The failure-mode catalog as data: every public id, and the text of those without a rule.

The ids are a public contract (docs/catalog, `../shared/catalog.md`): scripts match on
them, so they are listed here exactly once and never renamed. Where a rule exists, the
rule registry is the source of the title, explanation and fix (`cnidoctor rules`); the
entries below give the same for the ids no rule reports yet, so that `cnidoctor explain`
can still say what a recognised message means and what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: every catalog id, by layer, in catalog order
KNOWN_IDS: tuple[str, ...] = (
    # node prerequisites
    "kernel.br-netfilter-missing",
    "sysctl.bridge-nf-call-off",
    "sysctl.ip-forward-off",
    "sysctl.rp-filter-strict",
    "firewall.host-firewall-active",
    "firewall.input-drop-blocks-cluster-ports",
    "firewall.forward-drop",
    "iptables.backend-mismatch",
    "iptables.stale-rules",
    "cni.binaries-missing",
    "cni.config-missing",
    "cni.config-conflict",
    "cni.stale-bridge-address",
    "cni.stale-interfaces",
    "nic.offload-bug",
    "netmgr.interferes",
    "kernel.ipv6-disabled",
    "kube-proxy.ipvs-unavailable",
    # addressing and routing
    "route.multiple-default",
    "route.prefix-inconsistent",
    "addr.host-overlaps-cluster-cidr",
    "neigh.duplicate-mac",
    "route.loop",
    "mtu.mismatch",
    "iface.multi-nic-ambiguous",
    "iface.wrong-interface-selected",
    "route.duplicate-connected-route",
    "addr.node-ip-changed",
    "underlay.vxlan-port-blocked",
    # CNI state
    "flannel.subnet-env-missing",
    "flannel.subnet-env-mismatch",
    "flannel.vxlan-iface-missing",
    "flannel.vxlan-fdb-stale",
    "egress.no-snat",
    "node.podcidr-missing",
    # cluster and workload symptoms
    "node.ready-but-cni-broken",
    "pods.stale-unknown",
    "pods.cni-crashloop",
    "kubelet.unreachable",
    "api.unreachable",
    "api.tls-handshake-timeout",
    "dns.failure",
    "etcd.peer-unreachable",
)

#: ids cnidoctor added to the catalog, each with a rule, a triggering test and a clean one
ADDED_IDS: tuple[str, ...] = (
    # the API could not be read at all: the diagnosis is node-only (tests/test_cluster_rules.py)
    "kube.api-unavailable",
    # per node, which pod probes passed: a control-plane pass is not the cluster's (incident
    # 003); only with --probe (tests/test_pod_probe_parsers.py, tests/test_pod_probes_lab.py)
    "probe.summary",
)


@dataclass(frozen=True)
class CatalogEntry:
    """What a failure mode is, why it breaks the cluster, and the usual fix."""

    id: str
    title: str
    explanation: str
    fix: tuple[str, ...]
    causes: tuple[str, ...] = ()


_ENTRIES: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        id="route.prefix-inconsistent",
        title="Nodes on one segment use different prefix lengths for it",
        explanation=(
            "When nodes disagree on the size of the network they share, one of them sends "
            "traffic for a neighbour through the router instead of directly. Replies come back "
            "another way, routers send ICMP redirects, and etcd and overlay traffic time out."
        ),
        fix=(
            "give every node the same prefix length for the shared network (DHCP scope or "
            "static config), then reapply it (netplan apply / nmcli connection up)",
        ),
        causes=("route.loop", "etcd.peer-unreachable"),
    ),
    CatalogEntry(
        id="neigh.duplicate-mac",
        title="One MAC address answers for several node IPs",
        explanation=(
            "The neighbour table maps the addresses of different hosts to a single MAC, so "
            "traffic meant for several nodes is delivered to one of them. The others look down "
            "to everything on the segment."
        ),
        fix=(
            "find the host that owns the MAC (cloned VMs keep the same MAC; proxy ARP answers "
            "for others) and give each node its own MAC",
            "flush the stale entries: ip neigh flush dev <uplink>",
        ),
    ),
    CatalogEntry(
        id="route.loop",
        title="Traffic between nodes loops (TTL exceeded or ICMP redirects)",
        explanation=(
            "A probe between nodes sees TTL exceeded or redirects: packets bounce between "
            "routers or hosts instead of reaching the peer. The node becomes unreachable and "
            "etcd can lose quorum."
        ),
        fix=(
            "compare the routes to the peer on each hop (ip route get <peer>) and fix the "
            "inconsistent prefix or static route that sends it back",
        ),
        causes=("etcd.peer-unreachable", "kubelet.unreachable"),
    ),
    CatalogEntry(
        id="iface.wrong-interface-selected",
        title="The CNI is bound to an interface that does not reach the other nodes",
        explanation=(
            "The CNI picked an interface (a NAT interface, docker0, WiFi) other than the one "
            "that carries node-to-node traffic, so it advertises an address the other nodes "
            "cannot reach. Overlay and BGP traffic leaves on the wrong network."
        ),
        fix=(
            "pin the interface: flannel --iface=<nic> (k3s --flannel-iface=<nic>), calico "
            "IP_AUTODETECTION_METHOD=interface=<nic>, cilium devices=<nic>",
            "restart the CNI pod on the node",
        ),
    ),
    CatalogEntry(
        id="underlay.vxlan-port-blocked",
        title="VXLAN between nodes is dropped outside the nodes",
        explanation=(
            "ICMP and TCP between the nodes work and neither node's firewall explains it, but "
            "VXLAN (8472/udp or 4789/udp) does not arrive: a hypervisor or cloud security group "
            "in between drops it. Only cross-node pod traffic fails."
        ),
        fix=(
            "allow the VXLAN port (flannel/cilium 8472/udp, calico 4789/udp) between the nodes "
            "in the cloud security group or hypervisor firewall",
            "or switch the backend (flannel host-gw on one L2 segment, wireguard)",
        ),
    ),
    CatalogEntry(
        id="flannel.vxlan-fdb-stale",
        title="flannel.1 forwarding entries point at old addresses or MACs",
        explanation=(
            "flannel.1's fdb or neighbour entries name an address that is no node's, or a "
            "peer's VTEP MAC that changed (MAC churn after a restart). Traffic to that peer's "
            "pods is sent nowhere."
        ),
        fix=(
            "restart the flannel pod on the affected nodes so it rewrites fdb and neighbour "
            "entries",
            "stop the MAC churn: MACAddressPolicy=none for flannel.1 in a systemd-networkd "
            ".link file",
        ),
    ),
    CatalogEntry(
        id="egress.no-snat",
        title="Pod traffic leaves the node with its pod source address",
        explanation=(
            "Nothing masquerades traffic from the pod CIDR to outside the cluster, so replies "
            "are addressed to pod IPs the outside network cannot route back. Pods cannot reach "
            "the internet and DNS to upstream resolvers fails."
        ),
        fix=(
            "enable masquerading in the CNI (flannel --ip-masq, cilium "
            "enable-ipv4-masquerade, calico natOutgoing on the IP pool)",
        ),
        causes=("dns.failure",),
    ),
    CatalogEntry(
        id="node.podcidr-missing",
        title="The node has no pod CIDR assigned",
        explanation=(
            "The node object has no spec.podCIDR, so flannel cannot take a lease ('pod cidr "
            "not assigned') and cilium in kubernetes IPAM mode waits forever. No pod on the "
            "node gets an address."
        ),
        fix=(
            "run kube-controller-manager with --allocate-node-cidrs=true and "
            "--cluster-cidr=<pod CIDR> (kubeadm: --pod-network-cidr at init)",
            "if the range is exhausted, use a larger cluster CIDR or a smaller "
            "--node-cidr-mask-size",
            "then restart the CNI pod on the node",
        ),
        causes=("pods.cni-crashloop",),
    ),
    CatalogEntry(
        id="node.ready-but-cni-broken",
        title="The node is Ready but pods on it cannot get a network",
        explanation=(
            "The kubelet reports Ready while every new pod scheduled there stays "
            "ContainerCreating with FailedCreatePodSandBox: the CNI plugin fails on this node. "
            "Everything scheduled there is down while the node looks healthy."
        ),
        fix=(
            "read the sandbox error (kubectl describe pod) and fix the CNI agent on the node",
            "cordon the node until pods start again: kubectl cordon <node>",
        ),
    ),
    CatalogEntry(
        id="pods.stale-unknown",
        title="Pods in Unknown phase from before the node restarted",
        explanation=(
            "Pod objects kept the status from before a reboot; they are not running anywhere. "
            "They make triage misleading, not the cluster broken."
        ),
        fix=(
            "delete them once the node is back: kubectl delete pod <pod> --force --grace-period=0",
        ),
    ),
    CatalogEntry(
        id="pods.cni-crashloop",
        title="The CNI's own pod is in CrashLoopBackOff",
        explanation=(
            "The CNI agent (kube-flannel, calico-node, cilium) keeps exiting, so the node's pod "
            "network is not set up. Its last termination message usually names the real "
            "cause: a missing kernel module, an unreachable API server, no pod CIDR."
        ),
        fix=(
            "read the previous container's log on the node: crictl logs $(crictl ps -a --name "
            "kube-flannel --quiet | head -1) (or kubectl logs -p)",
            "fix what it names, then delete the pod so the daemonset restarts it",
        ),
        causes=("node.ready-but-cni-broken",),
    ),
    CatalogEntry(
        id="kubelet.unreachable",
        title="The control plane cannot reach a node's kubelet (10250/tcp)",
        explanation=(
            "The API server connects to the kubelet for logs, exec, port-forward and metrics. "
            "When 10250/tcp is dropped on the way ('dial tcp NODE:10250: i/o timeout'), those "
            "fail even though the node may still report Ready."
        ),
        fix=(
            "allow 10250/tcp from the control-plane nodes on the node's firewall (ufw allow "
            "from <control-plane IP> to any port 10250 proto tcp)",
            "check the route from the control plane to the node: ip route get <node IP>",
        ),
    ),
    CatalogEntry(
        id="api.unreachable",
        title="The node cannot reach the API server",
        explanation=(
            "The API server address, or the kubernetes service IP (10.43.0.1 / 10.96.0.1), "
            "does not answer from the node. CNI agents need the API to start (flannel "
            "'Failed to create SubnetManager'), so the node's pod network never comes up."
        ),
        fix=(
            "test from the node: curl -k https://<API server>:6443/healthz",
            "allow 6443/tcp to the control plane and make sure kube-proxy (or the CNI's "
            "replacement) runs, so the service IP is translated",
            "on a host firewall (ufw, firewalld), allow the cluster's ports or disable it",
        ),
        causes=("pods.cni-crashloop",),
    ),
    CatalogEntry(
        id="api.tls-handshake-timeout",
        title="TCP to the API server connects but the TLS handshake does not finish",
        explanation=(
            "The connection is accepted but the large TLS handshake packets never arrive: "
            "typically an MTU problem on the path, a middlebox, or an overloaded API server. "
            "The kubelet cannot post status and the node goes NotReady."
        ),
        fix=(
            "test: openssl s_client -connect <API server>:6443 </dev/null",
            "compare MTUs along the path (ip link; ping -M do -s 1472 <API server>)",
        ),
    ),
    CatalogEntry(
        id="dns.failure",
        title="Cluster DNS does not answer from pods",
        explanation=(
            "Queries to the cluster DNS service time out, or CoreDNS cannot reach its upstream "
            "resolvers. Everything that resolves names fails: image pulls through in-cluster "
            "proxies, controllers such as Flux, every service call by name."
        ),
        fix=(
            "check CoreDNS: kubectl -n kube-system logs -l k8s-app=kube-dns",
            "check the path from a pod to the DNS service IP (kube-proxy rules, the overlay) "
            "and from CoreDNS to its upstream (SNAT for pod traffic)",
        ),
    ),
    CatalogEntry(
        id="etcd.peer-unreachable",
        title="etcd members cannot reach each other on 2380/tcp",
        explanation=(
            "etcd peers exchange raft messages on 2380/tcp. When a peer does not answer "
            "('prober detected unhealthy status'), the cluster can lose quorum and the API "
            "server stops serving."
        ),
        fix=(
            "allow 2379-2380/tcp between the control-plane nodes",
            "check the route between them (ip route get <peer>) for loops and prefix mismatches",
        ),
        causes=("api.unreachable",),
    ),
)

#: catalog text for the ids no rule reports yet
CATALOG: dict[str, CatalogEntry] = {entry.id: entry for entry in _ENTRIES}
