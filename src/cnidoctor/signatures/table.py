"""The signature table: real error messages seen in public issue threads -> catalog ids.

Each entry is a regular expression, not an exact string (addresses, pod names, sandbox
ids, paths and versions vary), plus the verbatim message(s) it was written from and where
they were seen. The examples double as the tests: every one must match its own id as the
best match.

Rules for patterns, so that matching stays fast and safe on untrusted multi-megabyte logs:
- no nested quantifiers (a quantified group may not contain another quantifier);
- every open-ended repetition is bounded (`{0,300}`), never a bare `.*`;
- `anchor` is a lower-case literal every match contains; lines without it are skipped.

`confidence` says how surely a match means this failure mode (1 = the message names it;
lower = a symptom several failure modes share). The match score starts from it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    """A message as it was seen in the wild, and where (`owner/repo#issue`)."""

    text: str
    source: str


@dataclass(frozen=True)
class Signature:
    """One pattern for one catalog id."""

    id: str
    pattern: str
    anchor: str
    confidence: float
    examples: tuple[Example, ...]
    note: str
    #: a line that also matches this is not this failure mode (checked on the same line)
    unless: str | None = None


#: an IPv4 address, bounded (no nested quantifier)
IP4 = r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}"
#: an optional backslash before a quote: kubelet logs quote errors inside quoted strings
Q = r'\\{0,3}"'

SIGNATURES: tuple[Signature, ...] = (
    # --- flannel state -------------------------------------------------------------------
    Signature(
        id="flannel.subnet-env-missing",
        pattern=r"loadFlannelSubnetEnv failed: open \S{1,200}subnet\.env: "
        r"no such file or directory",
        anchor="loadflannelsubnetenv failed",
        confidence=0.97,
        examples=(
            Example(
                "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup "
                'network for sandbox "3c05350cf5717b9bcf92a63ffafb7a3d27bd5ad1880de3927'
                '2e72aa1661e637e"'
                ': plugin type="flannel" failed (add): loadFlannelSubnetEnv failed: open '
                "/run/flannel/subnet.env: no such file or directory",
                "flannel-io/flannel#2253",
            ),
        ),
        note="the flannel CNI plugin reads the node's lease from subnet.env; flanneld has not "
        "written it (not running, crashed, or /run was wiped by a reboot)",
    ),
    Signature(
        id="flannel.subnet-env-missing",
        pattern=r"open /run/flannel/subnet\.env: no such file or directory",
        anchor="/run/flannel/subnet.env: no such file",
        confidence=0.93,
        examples=(
            Example(
                'NetworkPlugin cni failed to set up pod "node1-6777d4468-d6tvq_default" network: '
                "open /run/flannel/subnet.env: no such file or directory",
                "kubernetes/website#10377",
            ),
            Example(
                'time="2019-03-04T09:53:00.169063162+01:00" level=error msg="RunPodSandbox for '
                "&PodSandboxMetadata{Name:coredns-7748f7f6df-j276v,Uid:3e63dc36-3d40-11e9-b202-"
                '4ccc6abd096d,Namespace:kube-system,Attempt:0,} failed, error" error="failed to '
                'setup network for sandbox \\"e4cf0428aeac958340fa5cdcbd7764c30fbb9729d2b5ec17d05b'
                '528ad4c12b0d\\": open /run/flannel/subnet.env: no such file or directory"',
                "k3s-io/k3s#122",
            ),
        ),
        note="older kubelet/containerd wording of the same missing lease file",
    ),
    # --- CNI files -----------------------------------------------------------------------
    Signature(
        id="cni.binaries-missing",
        pattern=r"failed to find plugin " + Q + r"[\w.-]{1,64}" + Q + r" in path \[",
        anchor="failed to find plugin",
        confidence=0.96,
        examples=(
            Example(
                'failed to find plugin "flannel" in path [/opt/cni/bin]',
                "flannel-io/flannel#2301",
            ),
            Example(
                "Warning  FailedCreatePodSandBox  2m2s   kubelet            Failed to create pod "
                "sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox "
                '"bcaf9b76824f679a2f64f28ce5186871cc41e8c506ada9b8cbe466e22bc2d461": plugin '
                'type="flannel" failed (add): failed to find plugin "flannel" in path '
                "[/opt/cni/bin]",
                "kata-containers/kata-containers#5731",
            ),
            Example(
                'err="[failed to find plugin \\"portmap\\" in path [/opt/cni/bin]',
                "flannel-io/flannel#1730",
            ),
            Example(
                'failed to setup network for sandbox "55dbd184d9926ada73934c2379359797774bd'
                '1046fa85b462f3cfa0dc3e4e242": failed to find plugin "loopback" in path '
                "[/opt/cni/bin]",
                "k0sproject/k0s#582",
            ),
        ),
        note="a plugin named in the active CNI config is not in the CNI bin dir",
    ),
    Signature(
        id="cni.config-missing",
        pattern=r"network plugin is not ready: cni config uninitiali[sz]ed",
        anchor="cni config uninitiali",
        confidence=0.9,
        examples=(
            Example(
                "runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
                "message:docker: network plugin is not ready: cni config uninitialized",
                "kubernetes/kubeadm#1031",
            ),
        ),
        note="the kubelet (dockershim) found no CNI config; the node stays NotReady",
    ),
    Signature(
        id="cni.config-missing",
        pattern=r"Network plugin returns error: cni plugin not initiali[sz]ed",
        anchor="cni plugin not initiali",
        confidence=0.85,
        examples=(
            Example(
                'E0617 12:37:32.591018 4057612 kubelet.go:2344] "Container runtime network not '
                'ready" networkReady="NetworkReady=false reason:NetworkPluginNotReady '
                'message:Network plugin returns error: cni plugin not initialized"',
                "kubernetes/kubeadm#2795",
            ),
            Example(
                "KubeletNotReady runtime network not ready: NetworkReady=false "
                "reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin "
                "not initialized",
                "kind-ci/examples#33",
            ),
        ),
        note="containerd's wording: it has loaded no CNI network (usually an empty conf dir; "
        "a config whose plugins are missing says so separately)",
    ),
    Signature(
        id="cni.config-missing",
        pattern=r"(?:No networks found in|no network config found in) /\S{0,200}",
        anchor="found in /",
        confidence=0.88,
        examples=(
            Example(
                "14086 cni.go:213] Unable to update cni config: No networks found in "
                "/etc/cni/net.d",
                "kubernetes/kubeadm#1704",
            ),
            Example("no network config found in /etc/cni/net.d", "containerd/containerd#11548"),
        ),
        note="the CNI conf dir is empty: the CNI's installer has not run on this node",
    ),
    Signature(
        id="cni.config-missing",
        pattern=r"No CNI configuration file in /\S{0,200}",
        anchor="no cni configuration file in /",
        confidence=0.9,
        examples=(
            Example(
                "No CNI configuration file in /etc/cni/net.d/. Has your network provider started?",
                "cri-o/cri-o#4276",
            ),
            Example(
                "No CNI configuration file in /etc/cni/net.d/. Has your network provider started?",
                "kubernetes/kubernetes#94393",
            ),
        ),
        note="CRI-O's wording of an empty CNI conf dir",
    ),
    Signature(
        id="cni.stale-bridge-address",
        pattern=r'\\{0,3}"?cni0\\{0,3}"? already has an IP address different from '
        r"[0-9a-fA-F.:]{2,45}/\d{1,3}",
        anchor="already has an ip address different from",
        confidence=0.97,
        examples=(
            Example(
                "RunPodSandbox from runtime service failed: rpc error: code = Unknown desc = "
                'NetworkPlugin cni failed to set up pod "kube-dns-545bc4bfd4-qw6rl_kube-system" '
                'network: "cni0" already has an IP address different from 10.244.2.1/24',
                "kubernetes/kubeadm#545",
            ),
            Example(
                "failed: rpc error: code = Unknown desc = NetworkPlugin cni failed to set up pod "
                '\\"monitoring-influxdb-67f8d587dd-9pgkd_kube-system\\" network: \\"cni0\\" '
                'already has an IP address different from 10.244.2.1/24"',
                "kubernetes/kubeadm#545",
            ),
        ),
        note="cni0 kept the gateway address of an earlier pod subnet (kubeadm reset, new lease)",
    ),
    Signature(
        id="cni.stale-interfaces",
        pattern=r"failed to set interface flannel\.\d{1,4} to UP state: address already in use",
        anchor="to up state: address already in use",
        confidence=0.95,
        examples=(
            Example(
                "E0510 07:52:45.456025       1 main.go:280] Error registering network: failed to "
                "configure interface flannel.1: failed to set interface flannel.1 to UP state: "
                "address already in use",
                "tkestack/tke#1279",
            ),
        ),
        note="another VXLAN device (cilium_vxlan, a stale flannel.1) holds UDP 8472",
    ),
    Signature(
        id="cni.stale-interfaces",
        pattern=r"link has incompatible addresses\. Remove additional addresses",
        anchor="link has incompatible addresses",
        confidence=0.8,
        examples=(
            Example(
                "Error registering network: failed to configure interface flannel.1: failed to "
                "ensure address of interface flannel.1: link has incompatible addresses. Remove "
                "additional addresses and t",
                "flannel-io/flannel#1060",
            ),
            Example(
                "Error registering network: failed to configure interface flannel.1: link has "
                "incompatible addresses. Remove additional addresses and try again.",
                "flannel-io/flannel#883",
            ),
        ),
        note="flannel.1 survived with the address of an earlier lease (stale device)",
    ),
    Signature(
        id="cni.stale-interfaces",
        pattern=r"RTNETLINK answers: Address already in use",
        anchor="rtnetlink answers: address already in use",
        confidence=0.55,
        examples=(
            Example(
                'level=warning msg="RTNETLINK answers: Address already in use"',
                "cilium/cilium#2925",
            ),
        ),
        note="cilium's init could not bring cilium_vxlan up: another VXLAN device (flannel.1) "
        "owns the port; the same words can come from unrelated ip commands",
    ),
    # --- kernel and sysctls ----------------------------------------------------------------
    Signature(
        id="kernel.br-netfilter-missing",
        pattern=r"Failed to check br_netfilter(?:: stat /proc/sys/net/bridge/"
        r"bridge-nf-call-ip6?tables: no such file or directory)?",
        anchor="failed to check br_netfilter",
        confidence=0.97,
        examples=(
            Example(
                "Failed to check br_netfilter: stat /proc/sys/net/bridge/bridge-nf-call-iptables: "
                "no such file or directory",
                "flannel-io/flannel#2166",
            ),
        ),
        note="flannel refuses to start without the br_netfilter module (incident 000)",
    ),
    Signature(
        id="kernel.br-netfilter-missing",
        pattern=r"(?:stat|open) /proc/sys/net/bridge/bridge-nf-call-(?:ip6|arp|ip)tables: "
        r"no such file or directory",
        anchor="/proc/sys/net/bridge/bridge-nf-call-",
        confidence=0.9,
        examples=(
            Example(
                "sysctl: cannot stat /proc/sys/net/bridge/bridge-nf-call-iptables: No such file or "
                "directory",
                "chris-short/rak8s#13",
            ),
            Example(
                "Error set kernel args /proc/sys/net/bridge/bridge-nf-call-iptables: open "
                "/proc/sys/net/bridge/bridge-nf-call-iptables: no such file or directory",
                "tkestack/galaxy#89",
            ),
        ),
        note="the bridge sysctls only exist once br_netfilter is loaded",
    ),
    Signature(
        id="kernel.br-netfilter-missing",
        pattern=r"setting key \"net\.bridge\.bridge-nf-call-(?:ip6|arp|ip)tables\": "
        r"No such file or directory",
        anchor='setting key "net.bridge.bridge-nf-call-',
        confidence=0.9,
        examples=(
            Example(
                'sysctl: setting key "net.bridge.bridge-nf-call-iptables": No such file or '
                "directory",
                "kubernetes/website#31508",
            ),
        ),
        note="`sysctl --system` ran before br_netfilter was loaded",
    ),
    Signature(
        id="kernel.br-netfilter-missing",
        pattern=r"/proc/sys/net/bridge/bridge-nf-call-ip6?tables does not exist",
        anchor="bridge-nf-call-",
        confidence=0.95,
        examples=(
            Example(
                "[ERROR FileContent--proc-sys-net-bridge-bridge-nf-call-iptables]: "
                "/proc/sys/net/bridge/bridge-nf-call-iptables does not exist",
                "kubernetes/kubeadm#312",
            ),
        ),
        note="kubeadm preflight: br_netfilter not loaded",
    ),
    Signature(
        id="sysctl.bridge-nf-call-off",
        pattern=r"/proc/sys/net/bridge/bridge-nf-call-ip6?tables contents are not set to 1",
        anchor="contents are not set to 1",
        confidence=0.95,
        examples=(
            Example(
                "[ERROR FileContent--proc-sys-net-bridge-bridge-nf-call-iptables]: "
                "/proc/sys/net/bridge/bridge-nf-call-iptables contents are not set to 1",
                "kubernetes/minikube#8638",
            ),
        ),
        note="kubeadm preflight: the module is loaded but bridged traffic skips iptables",
    ),
    Signature(
        id="sysctl.ip-forward-off",
        pattern=r"/proc/sys/net/ipv4/ip_forward contents are not set to 1",
        anchor="ip_forward contents are not set to 1",
        confidence=0.95,
        examples=(
            Example(
                "[ERROR FileContent--proc-sys-net-ipv4-ip_forward]: /proc/sys/net/ipv4/ip_forward "
                "contents are not set to 1",
                "kubernetes/kubeadm#312",
            ),
        ),
        note="kubeadm preflight: the node does not route packets",
    ),
    Signature(
        id="kernel.ipv6-disabled",
        pattern=r"open /proc/sys/net/ipv6/conf/[\w.@-]{1,32}/[\w]{1,40}: no such file or directory",
        anchor="/proc/sys/net/ipv6/conf/",
        confidence=0.93,
        examples=(
            Example(
                "RunPodSandbox from runtime service failed: rpc error: code = Unknown desc = "
                'NetworkPlugin cni failed to set up pod "node-problem-detector-xqp5k_kube-system" '
                "network: open /proc/sys/net/ipv6/conf/eth0/accept_dad: no such file or directory",
                "flannel-io/flannel#936",
            ),
        ),
        note="the kernel booted with ipv6.disable=1, so the IPv6 sysctl tree is missing",
    ),
    Signature(
        id="kube-proxy.ipvs-unavailable",
        pattern=r"Can't use (?:the )?ipvs proxier",
        anchor="ipvs proxier",
        confidence=0.92,
        examples=(
            Example(
                "W1116 09:02:43.496621       1 server_others.go:264] Can't use ipvs proxier, "
                "trying iptables proxier",
                "kubernetes/kubernetes#55864",
            ),
        ),
        note="kube-proxy asked for IPVS mode and silently fell back",
    ),
    Signature(
        id="kube-proxy.ipvs-unavailable",
        pattern=r"IPVS proxier (?:may not|will not) be used because the following required kernel "
        r"modules are not loaded",
        anchor="ipvs proxier",
        confidence=0.9,
        examples=(
            Example(
                "The IPVS proxier may not be used because the following required kernel modules "
                "are not loaded: [ip_vs_sh ip_vs ip_vs_rr ip_vs_wrr]",
                "puppetlabs/puppetlabs-kubernetes#310",
            ),
        ),
        note="kubeadm preflight warning RequiredIPVSKernelModulesAvailable",
    ),
    Signature(
        id="kube-proxy.ipvs-unavailable",
        pattern=r"Could not get ipvs family information from the kernel",
        anchor="ipvs family information",
        confidence=0.85,
        examples=(
            Example(
                'time="2018-03-01T13:36:50Z" level=error msg="Could not get ipvs family '
                "information from the kernel. It is possible that ipvs is not enabled in your "
                'kernel. Native loadbalancing will not work until this is fixed."',
                "kubernetes/kops#4544",
            ),
        ),
        note="the ip_vs module is not available to kube-proxy",
    ),
    Signature(
        id="iptables.backend-mismatch",
        pattern=r"iptables-legacy tables present, use iptables-legacy(?:-save)? to see them",
        anchor="iptables-legacy tables present",
        confidence=0.9,
        examples=(
            Example(
                "Warning: iptables-legacy tables present, use iptables-legacy to see them",
                "kubernetes/kubernetes#107965",
            ),
        ),
        note="rules exist in both backends; one side is silently ignored",
    ),
    Signature(
        id="nic.offload-bug",
        pattern=r"UDP: bad checksum\. From "
        + IP4
        + r":\d{1,5} to "
        + IP4
        + r":(?:8472|4789) ulen \d{1,6}",
        anchor="udp: bad checksum",
        confidence=0.92,
        examples=(
            Example(
                "[ 1423.035722] UDP: bad checksum. From 172.16.9.99:27503 to 172.16.80.252:8472 "
                "ulen 75",
                "flannel-io/flannel#1279",
            ),
        ),
        note="VXLAN packets with a corrupted UDP checksum (tx checksum offload on flannel.1)",
    ),
    Signature(
        id="nic.offload-bug",
        pattern=r"\[bad udp cksum 0x[0-9a-f]{1,4} -> 0x[0-9a-f]{1,4}!\] (?:VXLAN|OTV)",
        anchor="bad udp cksum",
        confidence=0.85,
        examples=(
            Example(
                "10.0.10.14.7103 > 10.0.10.10.4789: [bad udp cksum 0xbd67 -> 0x4e7f!] VXLAN, "
                "flags [I] (0x08), vni 4096",
                "projectcalico/calico#4865",
            ),
            Example(
                "wx0vm00052.apac.bosch.com.40029 > qin4vm0006.apac.bosch.com.otv: [bad udp cksum "
                "0xa7b8 -> 0x1f23!] OTV, flags [I] (0x08), overlay 0, instance 1",
                "flannel-io/flannel#1863",
            ),
        ),
        note="tcpdump shows the encapsulated packets' checksums are wrong",
    ),
    # --- firewall --------------------------------------------------------------------------
    Signature(
        id="firewall.host-firewall-active",
        pattern=r"\[UFW BLOCK\] IN=\S{0,32} OUT=",
        anchor="[ufw block]",
        confidence=0.75,
        examples=(
            Example(
                "[UFW BLOCK] IN=weave OUT=weave PHYSIN=vethwepl8172 PHYSOUT=vethwepl24506 "
                "SRC=10.0.20.1 DST=10.0.20.254 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=38255 DF "
                "PROTO=TCP SPT=36452 DPT=5432 WINDOW=43690 RES=0x00 SYN URGP=0",
                "weaveworks/weave#450",
            ),
        ),
        note="UFW is active and dropping traffic on the node",
    ),
    Signature(
        id="firewall.input-drop-blocks-cluster-ports",
        pattern=r"BIRD is not ready: BGP not established with " + IP4,
        anchor="bgp not established with",
        confidence=0.6,
        examples=(
            Example(
                "calico/node is not ready: BIRD is not ready: BGP not established with 10.0.1.1",
                "projectcalico/calico#7556",
            ),
        ),
        note="calico's BGP sessions (179/tcp) to a peer do not come up; most often a firewall "
        "drops 179/tcp (projectcalico/calico#3309)",
        unless=r"BGP not established with 172\.17\.0\.1\b",
    ),
    # --- addressing ------------------------------------------------------------------------
    Signature(
        id="iface.wrong-interface-selected",
        pattern=r"Using interface with name \S{1,32} and address 10\.0\.2\.15\b",
        anchor="and address 10.0.2.15",
        confidence=0.85,
        examples=(
            Example(
                "I0605 01:30:01.494324       1 main.go:488] Using interface with name enp0s3 and "
                "address 10.0.2.15",
                "geerlingguy/raspberry-pi-dramble#107",
            ),
        ),
        note="flannel bound to VirtualBox/Vagrant's NAT interface, whose address is the same "
        "on every VM (pin --iface)",
    ),
    Signature(
        id="iface.wrong-interface-selected",
        pattern=r"BGP not established with 172\.17\.0\.1\b",
        anchor="bgp not established with 172.17.0.1",
        confidence=0.85,
        examples=(
            Example(
                "calico/node is not ready: BIRD is not ready: BGP not established with 172.17.0.1",
                "kubesphere/kubekey#134",
            ),
        ),
        note="calico's IP autodetection picked docker0 (172.17.0.1) as a node's address",
    ),
    Signature(
        id="addr.node-ip-changed",
        pattern=r"failed to validate (?:secondary)?nodeIP: node IP: "
        + Q
        + r"[0-9a-fA-F.:]{2,45}"
        + Q
        + r" not found in the host's network interfaces",
        anchor="not found in the host's network interfaces",
        confidence=0.95,
        examples=(
            Example(
                'E0207 22:23:02.346550 1448143 kubelet_node_status.go:701] "Failed to set some '
                'node status fields" err="failed to validate secondaryNodeIP: node IP: '
                '\\"fd7a:115c:a1e0:ab12:4843:cd96:6278:6544\\" not found in the host\'s network '
                'interfaces" node="node1"',
                "k3s-io/k3s#9410",
            ),
        ),
        note="the kubelet's --node-ip is no longer on any interface",
    ),
    Signature(
        id="addr.node-ip-changed",
        pattern=r"listen tcp " + IP4 + r":(?:2379|2380|6443|10250): bind: cannot assign "
        r"requested address",
        anchor="bind: cannot assign requested address",
        confidence=0.88,
        examples=(
            Example(
                "Oct 15 12:11:01 kube-node1 etcd[20957]: listen tcp 52.81.42.145:2380: bind: "
                "cannot assign requested address",
                "opsnull/follow-me-install-kubernetes-cluster#340",
            ),
        ),
        note="etcd/API server configured for an address the node no longer has (DHCP change, "
        "kubernetes/kubeadm#3299)",
    ),
    # --- API server, kubelet, etcd ---------------------------------------------------------
    Signature(
        id="api.unreachable",
        pattern=r"Failed to create SubnetManager: error retrieving pod spec for '[^'\n]{1,200}': "
        r"Get \"?https?://[^\s\"]{1,300}\"?: dial tcp [^\s]{1,60}: (?:i/o timeout|connect: "
        r"(?:no route to host|connection refused|network is unreachable|connection timed out))",
        anchor="failed to create subnetmanager",
        confidence=0.97,
        examples=(
            Example(
                "Failed to create SubnetManager: error retrieving pod spec for "
                "'kube-system/kube-flannel-ds-d47s4': Get \"https://10.96.0.1:443/api/v1/namespaces"
                '/kube-system/pods/kube-flannel-ds-d47s4": dial tcp 10.96.0.1:443: i/o timeout',
                "flannel-io/flannel#1409",
            ),
            Example(
                "E0412 02:59:43.027648       1 main.go:232] Failed to create SubnetManager: error "
                "retrieving pod spec for 'kube-system/kube-flannel-ds-p4rmd': Get "
                "https://10.68.0.1:443/api/v1/namespaces/kube-system/pods/kube-flannel-ds-p4rmd: "
                "dial tcp 10.68.0.1:443: i/o timeout",
                "easzlab/kubeasz#158",
            ),
        ),
        note="flannel cannot reach the API server (kubernetes service IP) from the node "
        "(incident 000: UFW dropped it)",
    ),
    Signature(
        id="api.unreachable",
        pattern=r"dial tcp \d{1,3}\.\d{1,3}\.\d{1,3}\.1:443: (?:i/o timeout|connect: "
        r"(?:no route to host|network is unreachable|connection timed out))",
        anchor="dial tcp ",
        confidence=0.85,
        examples=(
            Example(
                "Error: Get https://10.96.0.1:443/api/v1/namespaces/kube-system/configmaps/"
                "extension-apiserver-authentication: dial tcp 10.96.0.1:443: i/o timeout",
                "kubernetes-sigs/metrics-server#532",
            ),
            Example(
                "[WARNING] plugin/kubernetes: Kubernetes API connection failure: Get "
                '"https://10.43.0.1:443/version": dial tcp 10.43.0.1:443: connect: no route to '
                "host",
                "rancher/rancher#10322",
            ),
        ),
        note="the kubernetes service IP (x.x.x.1:443) does not answer from this node or pod",
    ),
    Signature(
        id="api.unreachable",
        pattern=r"dial tcp " + IP4 + r":6443: (?:i/o timeout|connect: (?:no route to host|"
        r"connection refused|network is unreachable|connection timed out))",
        anchor=":6443: ",
        confidence=0.85,
        examples=(
            Example(
                "Unable to connect to the server: dial tcp 10.0.7.122:6443: i/o timeout",
                "cilium/cilium#32208",
            ),
            Example(
                "Nov 16 09:01:20 pz-k8s-node-master kubelet[137954]: E1116 09:01:20.556794  137954 "
                'kubelet_node_status.go:470] "Error updating node status, will retry" err="error '
                'getting node \\"pz-k8s-node-master\\": Get \\"https://10.23.1.164:6443/api/v1/'
                'nodes/pz-k8s-node-master?resourceVersion=0&timeout=10s\\": dial tcp '
                '10.23.1.164:6443: connect: connection refused"',
                "kubernetes/kubernetes#106464",
            ),
        ),
        note="the API server port does not answer (dropped, unrouted, or not listening)",
    ),
    Signature(
        id="api.unreachable",
        pattern=r"Unable to contact k8s api-server",
        anchor="unable to contact k8s api-server",
        confidence=0.93,
        examples=(
            Example(
                '2023-10-26T17:30:48.085853480Z level=error msg="Unable to contact k8s api-server" '
                'error="Get \\"https://10.96.0.1:443/api/v1/namespaces/kube-system\\": dial tcp '
                '10.96.0.1:443: i/o timeout"',
                "cilium/cilium#28823",
            ),
        ),
        note="the cilium agent cannot reach the API server",
    ),
    Signature(
        id="api.tls-handshake-timeout",
        pattern=r"net/http: TLS handshake timeout",
        anchor="tls handshake timeout",
        confidence=0.85,
        examples=(
            Example(
                "Unable to connect to the server: net/http: TLS handshake timeout",
                "kubernetes/kubernetes#62997",
            ),
            Example(
                "Unable to write event: 'Post https://127.0.0.1:6443/api/v1/namespaces/default/"
                "events: net/http: TLS handshake timeout' (may retry after sleeping)",
                "kubernetes/kubernetes#117542",
            ),
        ),
        note="TCP to the API server connects but TLS never completes (MTU, a middlebox, or an "
        "overloaded API server)",
        unless=r":10250/",
    ),
    Signature(
        id="kubelet.unreachable",
        pattern=r"dial tcp " + IP4 + r":10250: (?:i/o timeout|connect: (?:no route to host|"
        r"connection refused|network is unreachable|connection timed out))",
        anchor=":10250: ",
        confidence=0.95,
        examples=(
            Example(
                'Error from server: Get "https://192.168.1.109:10250/containerLogs/default/'
                'crm-dev-fe-55b9cd7c86-zlzkd/crm-dev-fe?follow=true": dial tcp '
                "192.168.1.109:10250: i/o timeout",
                "kubernetes/kubernetes#102139",
            ),
            Example(
                'Error from server: Get "https://10.0.0.3:10250/containerLogs/kubesphere-system/'
                'ks-installer-fcf648dcb-hrdmb/installer?follow=true": dial tcp 10.0.0.3:10250: '
                "i/o timeout",
                "kubesphere/ks-installer#2242",
            ),
        ),
        note="the control plane cannot reach a node's kubelet (logs/exec fail; incident 000)",
    ),
    Signature(
        id="kubelet.unreachable",
        pattern=r":10250/\S{0,300}: net/http: TLS handshake timeout",
        anchor="tls handshake timeout",
        confidence=0.9,
        examples=(
            Example(
                "Error from server: Get https://172.17.8.103:10250/containerLogs/default/"
                "es-client-5dfd67955f-8lstl/es-client: net/http: TLS handshake timeout",
                "pires/kubernetes-elasticsearch-cluster#168",
            ),
        ),
        note="the kubelet port accepts TCP but TLS does not complete",
    ),
    Signature(
        id="etcd.peer-unreachable",
        pattern=r"prober detected unhealthy status",
        anchor="prober detected unhealthy status",
        confidence=0.9,
        examples=(
            Example(
                '{"level":"warn","ts":"2021-01-07T12:16:46.416+0800","caller":"rafthttp/'
                'probing_status.go:70","msg":"prober detected unhealthy status",'
                '"round-tripper-name":"ROUND_TRIPPER_RAFT_MESSAGE","remote-peer-id":"65526dc322192643","rtt":'
                '"6.251985ms","error":"dial tcp 192.168.1.192:2380: i/o timeout"}',
                "k3s-io/k3s#2782",
            ),
            Example(
                '"caller":"rafthttp/probing_status.go:68","msg":"prober detected unhealthy status",'
                '"round-tripper-name":"ROUND_TRIPPER_RAFT_MESSAGE","remote-peer-id":'
                '"71f19fffd2ab6e68","rtt":"1.824848ms","error":"dial tcp 172.16.3.44:2380: i/o '
                'timeout"',
                "etcd-io/etcd#19107",
            ),
        ),
        note="etcd members cannot reach each other on 2380 (incident 002)",
    ),
    Signature(
        id="etcd.peer-unreachable",
        pattern=r"health check for peer [0-9a-f]{1,16} could not connect",
        anchor="health check for peer",
        confidence=0.9,
        examples=(
            Example(
                "rafthttp: health check for peer 9cb128de476731a6 could not connect: dial tcp: i/o "
                'timeout (prober "ROUND_TRIPPER_RAFT_MESSAGE")',
                "etcd-io/etcd#11858",
            ),
        ),
        note="etcd 3.3 and older wording of the peer prober failure",
    ),
    Signature(
        id="etcd.peer-unreachable",
        pattern=r"dial tcp " + IP4 + r":2380: (?:i/o timeout|no route to host|connect: "
        r"(?:no route to host|connection refused|connection timed out))",
        anchor=":2380: ",
        confidence=0.85,
        examples=(
            Example(
                "rafthttp: roundtripping error: error roundtripping to http://10.183.0.217:2380/raft"
                "/stream/msgapp/288b154d0ea4caa3: dial tcp 10.183.0.217:2380: i/o timeout",
                "etcd-io/etcd#2888",
            ),
            Example(
                "Oct 05 04:18:37 core-01 etcd2[658]: failed to dial 7538e80b548e9d14 on stream "
                "MsgApp v2 (dial tcp 192.168.33.11:2380: no route to host)",
                "etcd-io/etcd#3639",
            ),
        ),
        note="a peer's 2380/tcp does not answer",
    ),
    # --- node spec -------------------------------------------------------------------------
    Signature(
        id="node.podcidr-missing",
        pattern=r"failed to acquire lease: node \"[^\"\n]{1,253}\" pod cidr not assigned",
        anchor="pod cidr not assigned",
        confidence=0.97,
        examples=(
            Example(
                "E0519 00:37:28.550351       1 network.go:102] failed to register network: failed "
                'to acquire lease: node "k8s-test-2.novalocal" pod cidr not assigned',
                "flannel-io/flannel#728",
            ),
            Example(
                'Error registering network: failed to acquire lease: node "oracle-k1" pod cidr not '
                "assigned",
                "flannel-io/flannel#1558",
            ),
        ),
        note="the node object has no spec.podCIDR (controller-manager without "
        "--allocate-node-cidrs, or the range is exhausted)",
    ),
    Signature(
        id="node.podcidr-missing",
        pattern=r"pod cidr not assigned",
        anchor="pod cidr not assigned",
        confidence=0.88,
        examples=(
            Example(
                "Error registering network failed to acquire lease node pod cidr not assigned",
                "kubernetes/kubernetes#114560",
            ),
        ),
        note="paraphrased form of flannel's lease error",
    ),
    Signature(
        id="node.podcidr-missing",
        pattern=r"required IPv[46] (?:PodCIDR not available|pod CIDR not present in node resource)",
        anchor="required ipv",
        confidence=0.9,
        examples=(
            Example(
                'level=warning msg="Waiting for k8s node information" error="required IPv4 PodCIDR '
                'not available" subsys=k8s',
                "cilium/cilium#14505",
            ),
            Example(
                'cilium agent report "required IPv4 pod CIDR not present in node resource"',
                "cilium/cilium#12956",
            ),
        ),
        note="cilium (ipam kubernetes) waits for a podCIDR the node never got",
    ),
    Signature(
        id="node.podcidr-missing",
        pattern=r"CIDRNotAvailable|there are no remaining CIDRs left to allocate",
        anchor="cidr",
        confidence=0.88,
        examples=(
            Example(
                'I0103 07:23:53.889384       1 event.go:294] "Event occurred" '
                'object="flannel-worker" kind="Node" apiVersion="v1" type="Normal" '
                'reason="CIDRNotAvailable" '
                'message="Node flannel-worker status is now: CIDRNotAvailable"',
                "flannel-io/flannel#1688",
            ),
            Example(
                "E0103 07:23:53.888487       1 controller_utils.go:260] Error while processing "
                "Node Add/Delete: failed to allocate cidr from cluster cidr at idx:0: CIDR "
                "allocation failed; there are no remaining CIDRs left to allocate in the accepted "
                "range",
                "flannel-io/flannel#1688",
            ),
        ),
        note="the controller-manager ran out of node subnets: new nodes get no podCIDR",
    ),
    # --- CNI agents and workloads ----------------------------------------------------------
    Signature(
        id="node.ready-but-cni-broken",
        pattern=r"stat /var/lib/calico/nodename: no such file or directory",
        anchor="/var/lib/calico/nodename",
        confidence=0.88,
        examples=(
            Example(
                "2022-07-01 09:31:06.551 [ERROR][4035329] plugin.go 121: Final result of CNI ADD "
                "was an error. error=stat /var/lib/calico/nodename: no such file or directory: "
                "check that the calico/node container is running and has mounted /var/lib/calico/",
                "projectcalico/calico#6309",
            ),
        ),
        note="calico-node has not run on this node, so every new pod's sandbox fails",
    ),
    Signature(
        id="pods.cni-crashloop",
        pattern=r"failed to "
        + Q
        + r"StartContainer"
        + Q
        + r" for "
        + Q
        + r"(?:kube-flannel|calico-node|cilium-agent|cilium|install-cni)"
        + Q
        + r" with CrashLoopBackOff",
        anchor="with crashloopbackoff",
        confidence=0.93,
        examples=(
            Example(
                'err="failed to \\"StartContainer\\" for \\"calico-node\\" with CrashLoopBackOff: '
                '\\"back-off 10s restarting failed container=calico-node pod=calico-node-fp44f_kube'
                '-system(45208a7b-4b49-4eec-a09a-f14f31087119)\\"" pod="kube-system/calico-node-'
                'fp44f"',
                "kubesphere/kubekey#2504",
            ),
            Example(
                '"Error syncing pod, skipping" err="failed to "StartContainer" for "kube-flannel" '
                'with CrashLoopBackOff: "back-off 10s restarting failed container=kube-flannel '
                "pod=kube-flannel-ds-...",
                "flannel-io/flannel#1798",
            ),
        ),
        note="the CNI's own agent keeps crashing; its last log lines name the real cause",
    ),
    Signature(
        id="pods.cni-crashloop",
        pattern=r"\b(?:kube-flannel-ds|calico-node|cilium)-[a-z0-9-]{3,40}\s{1,40}\d{1,2}/\d{1,2}"
        r"\s{1,40}(?:Init:)?CrashLoopBackOff",
        anchor="crashloopbackoff",
        confidence=0.88,
        examples=(
            Example(
                "kube-flannel-ds-j6lzn   0/1       CrashLoopBackOff   974        6d",
                "flannel-io/flannel#1012",
            ),
            Example(
                "cilium-48vnb   0/1     CrashLoopBackOff   40 (4m39s ago)   176m",
                "cilium/cilium#20679",
            ),
        ),
        note="`kubectl get pods` row of a crashlooping CNI daemonset pod",
    ),
    # --- DNS -------------------------------------------------------------------------------
    Signature(
        id="dns.failure",
        pattern=r"read udp " + IP4 + r":\d{1,5}->" + IP4 + r":53: i/o timeout",
        anchor=":53: i/o timeout",
        confidence=0.85,
        examples=(
            Example(
                "[ERROR] plugin/errors: 2 o2o-redis-service. A: read udp "
                "10.244.169.134:47806->132.120.200.52:53: i/o timeout",
                "kubernetes/kubernetes#86762",
            ),
            Example(
                "10.43.0.10:53: read udp 10.42.0.7:49774->10.43.0.10:53: i/o timeout",
                "k3s-io/k3s#11472",
            ),
            Example(
                "[ERROR] plugin/errors: 2 7339852969808503459.8905238401292924987. HINFO: read udp "
                "192.168.94.3:38715->192.168.4.200:53: i/o timeout",
                "k3s-io/k3s#3366",
            ),
        ),
        note="DNS queries time out: cluster DNS unreachable from pods, or CoreDNS cannot reach "
        "its upstream (often no SNAT for pod traffic)",
    ),
)
