"""seed-003: incident 003, pods on the workers leave with their 10.42.x.x address.

Three k3s nodes on Proxmox, each with two NICs: ens19 on the pfSense lab network
10.50.10.0/24 (the intended egress, the InternalIP) and ens18 on the Fritz home network
192.168.178.0/24, and a default route on each. The "internet" (203.0.113.10, an echo
service and a resolver) is reachable only through the pfSense gateway 10.50.10.1 and
routes back only to 10.50.10.0/24: never to the pod CIDR. Pods sit behind cni0 on every
node; pod traffic is masqueraded on ens19 on the control plane only (the incident's
cilium picked the right NIC there "by chance"; here the CNI's own masquerade is off and a
node rule does it). So the hosts reach the internet, the control plane's pods too, and
the workers' pods time out: the upstream sees SYNs from 10.42.1.12 and cannot answer.
The cluster DNS has an endpoint on each node; a worker's DNS pod forwards ghcr.io
upstream from 10.42.x.3 and never hears back: "lookup ghcr.io on 10.43.0.10:53" fails.

The lab is flannel (VXLAN), not cilium: the mechanism (no SNAT on the real egress NIC of
a two-NIC, two-default-route node) is the CNI's to get wrong either way.

seed-003-fixed applies the incident's fix in the lab's terms: one default route (via
ens19), masquerade on ens19 on every node, and the CNI pinned to ens19 (k3s
`--flannel-iface ens19`, which the API shows in the k3s.io/node-args annotation).
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from typing import Any

from cnidoctor.lab.model import NodeSpec, Scenario, Segment, Uplink
from cnidoctor.lab.podnet import LabPod, PodNetwork, Upstream

#: name, ens19 (InternalIP), ens18, podCIDR, role
NODES = (
    ("pve-k3s-cp", "10.50.10.10", "192.168.178.10", "10.42.0.0/24", "control-plane"),
    ("pve-k3s-w1", "10.50.10.11", "192.168.178.11", "10.42.1.0/24", "worker"),
    ("pve-k3s-w2", "10.50.10.12", "192.168.178.12", "10.42.2.0/24", "worker"),
)
SHORT = {"pve-k3s-cp": "cp", "pve-k3s-w1": "w1", "pve-k3s-w2": "w2"}
CLUSTER = {
    "pod_cidr": "10.42.0.0/16",
    "service_cidr": "10.43.0.0/16",
    "cni": "flannel",
    "flannel_backend": "vxlan",
    "api_server": "https://10.50.10.10:6443",
}
#: the workload on each node the probes borrow (the incident's Flux controllers)
APPS = {
    "pve-k3s-cp": ("kube-system", "metrics-server-5985cbc9d7-x2kq4"),
    "pve-k3s-w1": ("flux-system", "source-controller-6d597849c8-7rnxt"),
    "pve-k3s-w2": ("flux-system", "flux-operator-7c9b8b5f6d-lq9wz"),
}


def _pod_ip(pod_subnet: str, host: int) -> str:
    return str(ipaddress.ip_network(pod_subnet).network_address + host)


def _lab_node(
    tag: str, fixed: bool, name: str, ip: str, home: str, cidr: str, role: str
) -> NodeSpec:
    return NodeSpec(
        name=name,
        netns=f"cnd-{tag}-{SHORT[name]}",
        role=role,
        uplinks=(
            Uplink(ifname="ens19", segment="lab", address=f"{ip}/24", default_metric=100),
            Uplink(
                ifname="ens18",
                segment="home",
                address=f"{home}/24",
                default_metric=None if fixed else 200,
            ),
        ),
        pod_subnet=cidr,
        ip_masq=False,
    )


def _uid(seed: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{seed}.seed-003.cnidoctor"))


def _node_object(fixed: bool, spec: NodeSpec) -> dict[str, Any]:
    args = ["server" if spec.role == "control-plane" else "agent"]
    if fixed:
        args += ["--flannel-iface", "ens19", "--node-ip", spec.address]
    labels = {"kubernetes.io/hostname": spec.name}
    if spec.role == "control-plane":
        labels["node-role.kubernetes.io/control-plane"] = "true"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "creationTimestamp": "2026-01-03T09:00:00Z",
            "labels": labels,
            "annotations": {
                "flannel.alpha.coreos.com/backend-type": "vxlan",
                "flannel.alpha.coreos.com/backend-data": json.dumps(
                    {"VNI": 1, "VtepMAC": spec.vtep_mac}
                ),
                "flannel.alpha.coreos.com/public-ip": spec.address,
                "flannel.alpha.coreos.com/kube-subnet-manager": "true",
                "k3s.io/node-args": json.dumps(args),
            },
        },
        "spec": {"podCIDR": spec.pod_subnet, "podCIDRs": [spec.pod_subnet]},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": spec.address},
                {"type": "Hostname", "address": spec.name},
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                    "lastHeartbeatTime": "2026-01-03T10:20:00Z",
                    "lastTransitionTime": "2026-01-03T09:05:00Z",
                }
            ],
            "nodeInfo": {
                "bootID": _uid(f"{spec.name}-boot"),
                "containerRuntimeVersion": "containerd://2.1.5-k3s1",
                "kernelVersion": "6.8.12-pve",
                "kubeletVersion": "v1.34.2+k3s1",
                "operatingSystem": "linux",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
            },
        },
    }


def _pod_object(namespace: str, name: str, node: str, ip: str, labels: dict[str, str]) -> dict:
    app = labels.get("app", name.rsplit("-", 2)[0])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "namespace": namespace,
            "name": name,
            "creationTimestamp": "2026-01-03T09:10:00Z",
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": name.rsplit("-", 1)[0],
                    "uid": _uid(name),
                    "controller": True,
                }
            ],
        },
        "spec": {"nodeName": node, "containers": [{"name": app, "image": f"{app}:lab"}]},
        "status": {
            "phase": "Running",
            "startTime": "2026-01-03T09:10:00Z",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "containerStatuses": [
                {
                    "name": app,
                    "image": f"{app}:lab",
                    "imageID": "",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": "2026-01-03T09:10:05Z"}},
                }
            ],
        },
    }


def _scenario(fixed: bool) -> Scenario:
    tag = "s003f" if fixed else "s003"
    nodes = tuple(_lab_node(tag, fixed, *n) for n in NODES)
    pods: list[LabPod] = []
    for node in nodes:
        short = SHORT[node.name]
        pods.append(LabPod(node.name, f"cnd-{tag}-{short}-app", _pod_ip(node.pod_subnet, 12)))
        pods.append(LabPod(node.name, f"cnd-{tag}-{short}-dns", _pod_ip(node.pod_subnet, 3), "dns"))
    masquerading = nodes if fixed else nodes[:1]

    def api_objects() -> list[dict[str, Any]]:
        objects = [_node_object(fixed, n) for n in nodes]
        for pod in pods:
            if pod.role == "dns":
                name = f"coredns-7f496c8d7d-{SHORT[pod.node]}"
                labels = {"k8s-app": "kube-dns", "app": "coredns"}
                objects.append(_pod_object("kube-system", name, pod.node, pod.ip, labels))
            else:
                namespace, name = APPS[pod.node]
                labels = {"app": name.rsplit("-", 2)[0]}
                objects.append(_pod_object(namespace, name, pod.node, pod.ip, labels))
        return objects

    what = (
        "incident 003 fixed: one default route, masquerade on ens19 everywhere, "
        "flannel pinned to ens19"
        if fixed
        else "incident 003: two NICs and two default routes per node; pod egress "
        "masqueraded on the control plane only, so worker pods leave as 10.42.x.x"
    )
    return Scenario(
        name="seed-003-fixed" if fixed else "seed-003",
        tag=tag,
        description=what,
        incident="003_86a1563daed73975.txt",
        segments=(
            Segment(name="lab", bridge="br-lab", gateway="10.50.10.1/24"),
            Segment(name="home", bridge="br-home", gateway="192.168.178.1/24"),
        ),
        nodes=nodes,
        cluster=dict(CLUSTER),
        api_objects=api_objects,
        extras=PodNetwork(
            pods=tuple(pods),
            service_cidr=CLUSTER["service_cidr"],
            api_node="pve-k3s-cp",
            masquerade=tuple((n.name, "ens19") for n in masquerading),
            upstream=Upstream(
                netns=f"cnd-{tag}-up",
                address="203.0.113.10/24",
                switch_address="203.0.113.1/24",
                routes_back=("10.50.10.0/24",),
            ),
        ),
    )


SCENARIO = _scenario(fixed=False)
FIXED = _scenario(fixed=True)
