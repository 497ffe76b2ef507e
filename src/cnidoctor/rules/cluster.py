"""What the Kubernetes API shows: symptoms (usually consequences) and node objects.

These rules read the API's objects (facts.cluster.ClusterFacts), not a node's files. In
incident 001 they are the symptoms an operator saw first (Ready nodes, Unknown pods,
ContainerCreating with sandbox errors); the engine folds them under the node fact that
explains them, such as flannel.subnet-env-missing.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator

from cnidoctor.facts.cluster import ClusterFacts, KubeEvent, KubeNode, KubePod
from cnidoctor.models import Severity
from cnidoctor.rules.base import ClusterContext, ClusterRule, Hit

#: pods of the CNI's own DaemonSet, by their usual name prefixes
CNI_AGENT_PREFIXES = ("kube-flannel", "cilium", "calico-node", "canal", "weave-net", "kube-router")
#: how many objects a finding names before it says "+N more"
SHOWN = 5
#: sandbox errors that name the CNI (FailedCreatePodSandBox and kubelet's NetworkNotReady)
SANDBOX_REASONS = frozenset({"FailedCreatePodSandBox", "NetworkNotReady", "FailedKillPod"})
_KUBELET_DIAL = re.compile(
    r"dial tcp (?P<ip>[0-9.]+|\[[0-9a-fA-F:]+\]):10250: "
    r"(?P<why>i/o timeout|connect: connection refused|connect: no route to host)"
)


def _api(ctx: ClusterContext) -> ClusterFacts | None:
    kube = ctx.kube
    return kube if kube is not None and kube.reachable else None


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" (+{len(items) - SHOWN} more)" if len(items) > SHOWN else "")


def _short(message: str | None, limit: int = 300) -> str:
    text = " ".join((message or "").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _needs_pod_network(pod: KubePod) -> bool:
    return not pod.host_network and not pod.deleting


def is_cni_agent(pod: KubePod) -> bool:
    """A pod of the CNI's own DaemonSet (kube-flannel-ds-x, cilium-x, calico-node-x)."""
    owner = pod.owner_name or ""
    return pod.owner_kind == "DaemonSet" and any(
        owner.startswith(p) or pod.name.startswith(p) for p in CNI_AGENT_PREFIXES
    )


class NodeReadyButCniBroken(ClusterRule):
    id = "node.ready-but-cni-broken"
    severity = Severity.CRITICAL
    title = "the node is Ready but its pods cannot get a network"
    explanation = (
        "Ready only means the kubelet posts its status; it says nothing of the CNI. Pods "
        "scheduled on this node stay ContainerCreating because every sandbox fails in the "
        "CNI plugin, so everything placed there (CoreDNS, controllers, workloads) is down "
        "while `kubectl get nodes` looks healthy."
    )
    fix = ("fix the CNI cause on the node (see the findings above it), then delete the stuck pods",)

    def check_cluster(self, ctx: ClusterContext) -> Iterator[Hit]:
        api = _api(ctx)
        if api is None:
            return
        for node in api.nodes:
            if not node.ready:
                continue
            stuck = [
                p
                for p in api.pods_on(node.name)
                if _needs_pod_network(p) and "ContainerCreating" in p.waiting_reasons()
            ]
            sandbox_events = [
                e
                for p in stuck
                for e in api.events_about("Pod", p.name, p.namespace)
                if e.reason in SANDBOX_REASONS
            ]
            if not stuck or not sandbox_events:
                continue
            ready = node.condition("Ready")
            since = (
                f" since {ready.last_transition_time:%Y-%m-%d %H:%M}"
                if ready and ready.last_transition_time
                else ""
            )
            latest = max(
                sandbox_events, key=lambda e: (e.last_timestamp is not None, e.last_timestamp)
            )
            evidence = [
                f"node {node.name}: Ready=True{since}",
                f"{len(stuck)} pods ContainerCreating on it: {_names([p.key for p in stuck])}",
                f"event {latest.reason} on {latest.object_namespace}/{latest.object_name} "
                f"(x{latest.count}): {_short(latest.message)}",
            ]
            fix = [
                "fix the node-level cause first (the finding this one follows from)",
                "then recreate the stuck pods: kubectl delete pod -n NAMESPACE NAME "
                "(their controllers start new ones)",
            ]
            yield Hit(evidence=evidence, fix=fix, extra_nodes=[node.name])


class PodsStaleUnknown(ClusterRule):
    id = "pods.stale-unknown"
    severity = Severity.WARNING
    title = "pods left in Unknown from before the node restarted"
    explanation = (
        "When a node reboots, the pod objects from before stay Unknown until they are "
        "deleted: they are stale records, not the problem. They make the outage look like an "
        "etcd or scheduling issue; the real cause is whatever stops new pods on the node."
    )

    def check_cluster(self, ctx: ClusterContext) -> Iterator[Hit]:
        api = _api(ctx)
        if api is None:
            return
        for node in api.nodes:
            ready = node.condition("Ready")
            came_back = ready.last_transition_time if ready and ready.status == "True" else None
            stale = [
                p
                for p in api.pods_on(node.name)
                if (p.phase == "Unknown" or p.reason == "NodeLost")
                and (came_back is None or p.start_time is None or p.start_time < came_back)
            ]
            if not stale:
                continue
            evidence = [
                f"{len(stale)} pods Unknown on {node.name}: {_names([p.key for p in stale])}"
            ]
            if came_back is not None:
                evidence.append(
                    f"node {node.name} Ready again since {came_back:%Y-%m-%d %H:%M}, "
                    "after they started"
                )
            if node.boot_id:
                evidence.append(f"node {node.name} bootID {node.boot_id}")
            fix = [
                shlex.join(
                    [
                        "kubectl",
                        "delete",
                        "pod",
                        "-n",
                        p.namespace,
                        p.name,
                        "--force",
                        "--grace-period=0",
                    ]
                )
                for p in stale[:SHOWN]
            ]
            if len(stale) > SHOWN:
                fix.append(
                    "kubectl get pods -A --field-selector "
                    + shlex.quote(f"spec.nodeName={node.name},status.phase=Unknown")
                    + " -o name   (delete the rest the same way)"
                )
            yield Hit(evidence=evidence, fix=fix, extra_nodes=[node.name])


class PodsCniCrashloop(ClusterRule):
    id = "pods.cni-crashloop"
    severity = Severity.CRITICAL
    title = "the CNI's own pod is in CrashLoopBackOff"
    explanation = (
        "The CNI agent (kube-flannel, cilium, calico-node) sets up the node's pod network; "
        "while it crashloops no pod on the node gets a working network. Its last "
        "termination message usually names the node-level cause."
    )
    causes = ("node.ready-but-cni-broken",)

    def check_cluster(self, ctx: ClusterContext) -> Iterator[Hit]:
        api = _api(ctx)
        if api is None:
            return
        for pod in api.pods:
            if not is_cni_agent(pod) or "CrashLoopBackOff" not in pod.waiting_reasons():
                continue
            evidence = [f"pod {pod.key} on {pod.node}: CrashLoopBackOff"]
            for container in pod.containers:
                if container.reason == "CrashLoopBackOff":
                    last = _short(container.last_message or container.last_reason)
                    evidence.append(
                        f"container {container.name}: {container.restart_count} restarts, last "
                        f"exit {container.last_exit_code}: {last}"
                    )
            fix = [
                "on the node: crictl logs $(crictl ps -a --name "
                + shlex.quote(pod.containers[0].name if pod.containers else "kube-flannel")
                + " --quiet | head -1)   (kubectl logs needs the kubelet port)",
                "fix what the log names, then: "
                + shlex.join(["kubectl", "delete", "pod", "-n", pod.namespace, pod.name]),
            ]
            yield Hit(evidence=evidence, fix=fix, extra_nodes=[pod.node] if pod.node else [])


class NodePodCidrMissing(ClusterRule):
    id = "node.podcidr-missing"
    severity = Severity.CRITICAL
    title = "the node has no spec.podCIDR"
    explanation = (
        "flannel (and any CNI using the node IPAM of kube-controller-manager) leases the node "
        "subnet from spec.podCIDR. Without one it fails with 'failed to acquire lease: node "
        "pod cidr not assigned' and the node gets no pod network; usually the controller "
        "manager runs without --allocate-node-cidrs or its --cluster-cidr is exhausted."
    )
    causes = ("pods.cni-crashloop", "node.ready-but-cni-broken")
    fix = (
        "check kube-controller-manager: --allocate-node-cidrs=true and a --cluster-cidr with "
        "room for every node (k3s: --cluster-cidr)",
    )

    def check_cluster(self, ctx: ClusterContext) -> Iterator[Hit]:
        api = _api(ctx)
        if api is None or ctx.cluster.cni in ("cilium", "calico"):
            return  # their own IPAM does not use spec.podCIDR by default
        for node in api.nodes:
            if not node.pod_cidrs:
                yield Hit(
                    evidence=[f"node {node.name}: spec.podCIDR and spec.podCIDRs are empty"],
                    extra_nodes=[node.name],
                )


class KubeletUnreachable(ClusterRule):
    id = "kubelet.unreachable"
    severity = Severity.WARNING
    title = "the control plane cannot reach this node's kubelet (10250/tcp)"
    explanation = (
        "The API server talks to each kubelet on 10250 for logs, exec, port-forward and "
        "metrics. When that port is dropped (a host firewall, a wrong node IP) `kubectl logs` "
        "times out, which also hides the crash messages that would explain other failures."
    )

    def check_cluster(self, ctx: ClusterContext) -> Iterator[Hit]:
        api = _api(ctx)
        if api is None:
            return
        by_ip = {n.internal_ip: n for n in api.nodes if n.internal_ip}
        seen: dict[str, list[KubeEvent]] = {}
        for event in api.events:
            match = _KUBELET_DIAL.search(event.message or "")
            if match:
                seen.setdefault(match["ip"].strip("[]"), []).append(event)
        for ip, events in seen.items():
            node: KubeNode | None = by_ip.get(ip)
            name = node.name if node else None
            event = events[-1]
            match = _KUBELET_DIAL.search(event.message or "")
            assert match is not None
            evidence = [
                f"event {event.reason} on {event.object_namespace}/{event.object_name}: "
                f"dial tcp {ip}:10250: {match['why']}"
            ]
            if name:
                evidence.insert(0, f"{ip} is node {name}'s InternalIP")
            fix = [
                "allow 10250/tcp from the control plane on the node (see its firewall findings)",
                "check from a control-plane node: curl -sk https://"
                + (f"[{ip}]" if ":" in ip else ip)
                + ":10250/healthz",
            ]
            yield Hit(evidence=evidence, fix=fix, extra_nodes=[name] if name else [])


class ApiUnavailable(ClusterRule):
    id = "kube.api-unavailable"
    severity = Severity.WARNING
    title = "the Kubernetes API could not be read: cluster checks were not run"
    explanation = (
        "cnidoctor reads nodes, pods and events from the API to see symptoms (Ready nodes "
        "with stuck pods, crashlooping CNI agents). It could not, so the diagnosis rests on "
        "the node facts alone. The API itself may be down, or only cnidoctor's access."
    )
    fix = ("check the kubeconfig and that its server answers: kubectl get --raw /version",)

    def check_cluster(self, ctx: ClusterContext) -> Iterator[Hit]:
        if ctx.kube is None or ctx.kube.reachable:
            return
        # nothing configured anywhere: say so, quietly; configured but failing: a warning
        configured = ctx.kube.access is not None
        yield Hit(
            severity=None if configured else Severity.INFO,
            title=None if configured else "the Kubernetes API was not queried (no kubeconfig)",
            evidence=[ctx.kube.error or "the API could not be read"],
            fix=[
                "check the kubeconfig (--kubeconfig, the inventory's cluster.kubeconfig, "
                "$KUBECONFIG, /etc/rancher/k3s/k3s.yaml) and that its server answers: "
                "kubectl get --raw /version",
            ],
        )


RULES: list[type[ClusterRule]] = [
    NodePodCidrMissing,
    PodsCniCrashloop,
    NodeReadyButCniBroken,
    KubeletUnreachable,
    PodsStaleUnknown,
    ApiUnavailable,
]
