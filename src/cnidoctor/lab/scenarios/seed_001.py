"""seed-001: incident 001, the cluster that did not come back after a Proxmox reboot.

boromir and theoden rebooted: /run/flannel/subnet.env (tmpfs) was not rewritten and
flannel.1 never came up, yet every node reports Ready. The API stand-in serves what the
operator saw: pods Unknown from before the reboot, new pods ContainerCreating with the
real `loadFlannelSubnetEnv failed` sandbox event. samwise did not reboot and is fine.
"""

from __future__ import annotations

import uuid
from typing import Any

from cnidoctor.lab.model import NodeSpec, Scenario, Segment, Uplink

#: the reboot, and when the kubelets reported Ready again (incident timeline, CST -> UTC)
BOOTED = "2026-01-31T07:00:00Z"
READY_AGAIN = "2026-01-31T07:18:00Z"
LONG_AGO = "2026-01-10T09:00:00Z"
SANDBOX_ERROR = (
    "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network "
    'for sandbox "{sandbox}": plugin type="flannel" failed (add): loadFlannelSubnetEnv '
    "failed: open /run/flannel/subnet.env: no such file or directory"
)

IMAGES = {
    "coredns": "rancher/mirrored-coredns-coredns:1.12.0",
    "source-controller": "ghcr.io/fluxcd/source-controller:v1.4.1",
    "longhorn-ui": "longhornio/longhorn-ui:v1.7.2",
}

#: name, InternalIP, podCIDR, rebooted
NODES = (
    ("boromir", "10.10.10.11", "10.42.0.0/24", True),
    ("theoden", "10.10.10.12", "10.42.2.0/24", True),
    ("samwise", "10.10.10.13", "10.42.1.0/24", False),
)


def _uuid(seed: str) -> str:
    """A stable UUID per name, as the API server would have assigned one."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{seed}.seed-001.cnidoctor"))


def _node(name: str, ip: str, pod_cidr: str, rebooted: bool) -> dict[str, Any]:
    ready_since = READY_AGAIN if rebooted else LONG_AGO
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "creationTimestamp": "2025-11-02T10:00:00Z",
            "labels": {
                "kubernetes.io/hostname": name,
                "node-role.kubernetes.io/control-plane": "true",
                "node-role.kubernetes.io/etcd": "true",
            },
            "annotations": {
                "flannel.alpha.coreos.com/backend-type": "vxlan",
                "flannel.alpha.coreos.com/public-ip": ip,
                "k3s.io/node-args": '["server","--flannel-backend","vxlan"]',
            },
        },
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": ip},
                {"type": "Hostname", "address": name},
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                    "lastHeartbeatTime": "2026-01-31T07:30:00Z",
                    "lastTransitionTime": ready_since,
                }
            ],
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": _uuid(f"{name}-boot-{'20260131' if rebooted else '20260110'}"),
                "containerRuntimeVersion": "containerd://1.7.23-k3s2",
                "kernelVersion": "6.6.64",
                "kubeProxyVersion": "v1.31.4+k3s1",
                "kubeletVersion": "v1.31.4+k3s1",
                "machineID": _uuid(f"{name}-machine").replace("-", ""),
                "operatingSystem": "linux",
                "osImage": "NixOS 24.11 (Vicuna)",
                "systemUUID": _uuid(f"{name}-system"),
            },
        },
    }


def _pod(
    namespace: str, name: str, node: str, state: str, *, started: str, owner: str
) -> dict[str, Any]:
    """A pod in one of three states: running, stale (Unknown), creating (no sandbox)."""
    app = name.rsplit("-", 1)[0]
    image = IMAGES.get(app, f"docker.io/library/{app}:latest")
    container: dict[str, Any] = {
        "name": app,
        "image": image,
        "imageID": "" if state == "creating" else f"{image.split(':')[0]}@sha256:{'0' * 64}",
        "ready": state == "running",
        "started": state == "running",
    }
    if state == "creating":
        phase, status_extra = "Pending", {}
        container["state"] = {"waiting": {"reason": "ContainerCreating"}}
        container["restartCount"] = 0
    elif state == "stale":
        phase, status_extra = "Unknown", {"reason": "NodeLost"}
        container["state"] = {"running": {"startedAt": started}}
        container["restartCount"] = 0
    else:
        phase, status_extra = "Running", {}
        container["state"] = {"running": {"startedAt": started}}
        container["restartCount"] = 0
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "namespace": namespace,
            "name": name,
            "creationTimestamp": started,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": owner,
                    "uid": _uuid(owner),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {"nodeName": node, "containers": [{"name": app, "image": image}]},
        "status": {
            "phase": phase,
            "startTime": started,
            "containerStatuses": [container],
            **status_extra,
        },
    }


def _event(namespace: str, pod: str, node: str, index: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"namespace": namespace, "name": f"{pod}.1820{index:04d}"},
        "involvedObject": {"kind": "Pod", "namespace": namespace, "name": pod},
        "reason": "FailedCreatePodSandBox",
        "message": SANDBOX_ERROR.format(sandbox=f"{index:02d}" + "a3f9c1" * 10),
        "type": "Warning",
        "count": 7,
        "firstTimestamp": "2026-01-31T07:24:10Z",
        "lastTimestamp": "2026-01-31T07:27:40Z",
        "source": {"component": "kubelet", "host": node},
    }


def api_objects() -> list[dict[str, Any]]:
    """What `kubectl get` showed at 01:27 CST: Ready nodes, stale and stuck pods, events."""
    objects: list[dict[str, Any]] = [_node(*n) for n in NODES]
    workloads = (
        ("kube-system", "coredns", "coredns-ccb96694c"),
        ("flux-system", "source-controller", "source-controller-6d597849c8"),
        ("longhorn-system", "longhorn-ui", "longhorn-ui-7b6b8f8d9"),
    )
    index = 0
    for node, _, _, rebooted in NODES:
        for namespace, app, owner in workloads:
            index += 1
            if not rebooted:
                objects.append(
                    _pod(
                        namespace,
                        f"{app}-{node[:3]}run",
                        node,
                        "running",
                        started=LONG_AGO,
                        owner=owner,
                    )
                )
                continue
            objects.append(
                _pod(
                    namespace, f"{app}-{node[:3]}old", node, "stale", started=LONG_AGO, owner=owner
                )
            )
            new = f"{app}-{node[:3]}new"
            objects.append(
                _pod(namespace, new, node, "creating", started="2026-01-31T07:24:05Z", owner=owner)
            )
            objects.append(_event(namespace, new, node, index))
    return objects


def _lab_node(name: str, ip: str, pod_cidr: str, rebooted: bool, netns: str) -> NodeSpec:
    return NodeSpec(
        name=name,
        netns=netns,
        role="control-plane",
        uplinks=(Uplink(ifname="ens18", segment="lan", address=f"{ip}/24", default_metric=0),),
        pod_subnet=pod_cidr,
        flannel_running=not rebooted,
    )


SCENARIO = Scenario(
    name="seed-001",
    tag="s001",
    description="incident 001: after a reboot, subnet.env and flannel.1 missing on boromir "
    "and theoden while every node is Ready; the API shows Unknown and stuck pods",
    incident="001_b8c2f6b7b9c3dcbf.txt",
    segments=(Segment(name="lan", bridge="br-lan", gateway="10.10.10.1/24"),),
    nodes=tuple(
        _lab_node(name, ip, cidr, rebooted, f"cnd-s001-{name[:3]}")
        for name, ip, cidr, rebooted in NODES
    ),
    cluster={
        "pod_cidr": "10.42.0.0/16",
        "service_cidr": "10.43.0.0/16",
        "cni": "flannel",
        "flannel_backend": "vxlan",
    },
    api_objects=api_objects,
)
