"""Cluster rules on API objects (parsed by the same models the client fills)."""

from __future__ import annotations

import copy
from typing import Any

from cnidoctor.engine import link_causes, run_node_rules
from cnidoctor.facts.cluster import ClusterFacts, KubeEvent, KubeNode, KubePod
from cnidoctor.lab.scenarios.seed_001 import api_objects
from cnidoctor.models import ClusterConfig, Finding, Severity
from cnidoctor.rules import all_rules
from cnidoctor.rules.base import ClusterContext, Rule
from cnidoctor.rules.cluster import (
    ApiUnavailable,
    KubeletUnreachable,
    NodePodCidrMissing,
    NodeReadyButCniBroken,
    PodsCniCrashloop,
    PodsStaleUnknown,
)


def facts(objects: list[dict[str, Any]]) -> ClusterFacts:
    by_kind = {"Node": KubeNode, "Pod": KubePod, "Event": KubeEvent}
    parsed: dict[str, list[Any]] = {"Node": [], "Pod": [], "Event": []}
    for obj in objects:
        parsed[obj["kind"]].append(by_kind[obj["kind"]].from_object(obj))
    return ClusterFacts(
        reachable=True, nodes=parsed["Node"], pods=parsed["Pod"], events=parsed["Event"]
    )


def run(rule: type[Rule], kube: ClusterFacts | None, cni: str = "flannel") -> list[Finding]:
    ctx = ClusterContext(nodes=[], cluster=ClusterConfig(cni=cni), kube=kube)
    result = run_node_rules([], [rule], ctx)
    assert not result.skipped
    return result.findings


def incident_001() -> list[dict[str, Any]]:
    return api_objects()


def only(objects: list[dict[str, Any]], node: str) -> list[dict[str, Any]]:
    """The objects that concern one node (its Node, its pods and their events)."""
    pods = {
        o["metadata"]["name"]
        for o in objects
        if o["kind"] == "Pod" and o["spec"]["nodeName"] == node
    }
    return [
        o
        for o in objects
        if (o["kind"] == "Node" and o["metadata"]["name"] == node)
        or (o["kind"] == "Pod" and o["metadata"]["name"] in pods)
        or (o["kind"] == "Event" and o["involvedObject"]["name"] in pods)
    ]


def test_ready_nodes_with_sandbox_failures_are_ready_but_cni_broken() -> None:
    found = run(NodeReadyButCniBroken, facts(incident_001()))
    assert sorted(f.nodes[0] for f in found) == ["boromir", "theoden"]
    evidence = found[0].evidence
    assert evidence[0].startswith(f"node {found[0].nodes[0]}: Ready=True since 2026-01-31 07:18")
    assert evidence[1].startswith("3 pods ContainerCreating on it")
    assert "loadFlannelSubnetEnv failed: open /run/flannel/subnet.env" in evidence[2]


def test_a_healthy_node_and_a_stuck_pod_without_cni_events_are_clean() -> None:
    assert run(NodeReadyButCniBroken, facts(only(incident_001(), "samwise"))) == []
    no_events = [o for o in only(incident_001(), "boromir") if o["kind"] != "Event"]
    assert run(NodeReadyButCniBroken, facts(no_events)) == []


def test_pods_unknown_from_before_the_reboot_are_stale() -> None:
    found = run(PodsStaleUnknown, facts(only(incident_001(), "theoden")))
    (finding,) = found
    assert finding.nodes == ["theoden"] and finding.severity is Severity.WARNING
    assert finding.evidence[0].startswith("3 pods Unknown on theoden:")
    assert (
        "kubectl delete pod -n kube-system coredns-theold --force --grace-period=0" in finding.fix
    )
    assert run(PodsStaleUnknown, facts(only(incident_001(), "samwise"))) == []


def crashlooping_flannel() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "namespace": "kube-flannel",
            "name": "kube-flannel-ds-zhrzt",
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "DaemonSet",
                    "name": "kube-flannel-ds",
                    "uid": "u",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "nodeName": "donovan-xps-8930",
            "containers": [{"name": "kube-flannel", "image": "f"}],
        },
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "kube-flannel",
                    "image": "docker.io/flannel/flannel:v0.26.1",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 12,
                    "state": {
                        "waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}
                    },
                    "lastState": {
                        "terminated": {
                            "exitCode": 1,
                            "reason": "Error",
                            "message": "Failed to check br_netfilter: stat /proc/sys/net/bridge/"
                            "bridge-nf-call-iptables: no such file or directory",
                        }
                    },
                }
            ],
        },
    }


def test_a_crashlooping_cni_agent_is_reported_with_its_last_message() -> None:
    (finding,) = run(PodsCniCrashloop, facts([crashlooping_flannel()]))
    assert finding.nodes == ["donovan-xps-8930"]
    assert "Failed to check br_netfilter" in finding.evidence[1]
    assert "12 restarts, last exit 1" in finding.evidence[1]
    healthy = copy.deepcopy(crashlooping_flannel())
    healthy["status"]["containerStatuses"][0]["state"] = {
        "running": {"startedAt": "2026-01-24T10:00:00Z"}
    }
    assert run(PodsCniCrashloop, facts([healthy])) == []


def test_a_node_without_pod_cidr_on_flannel() -> None:
    objects = only(incident_001(), "samwise")
    del objects[0]["spec"]["podCIDR"], objects[0]["spec"]["podCIDRs"]
    (finding,) = run(NodePodCidrMissing, facts(objects))
    assert finding.evidence == ["node samwise: spec.podCIDR and spec.podCIDRs are empty"]
    assert run(NodePodCidrMissing, facts(objects), cni="cilium") == []
    assert run(NodePodCidrMissing, facts(only(incident_001(), "samwise"))) == []


def test_kubelet_dial_timeouts_in_events_name_the_node() -> None:
    objects = only(incident_001(), "samwise")
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"namespace": "kube-flannel", "name": "kube-flannel-ds-zhrzt.1"},
            "involvedObject": {
                "kind": "Pod",
                "namespace": "kube-flannel",
                "name": "kube-flannel-ds-zhrzt",
            },
            "reason": "FailedGetLogs",
            "type": "Warning",
            "message": 'Get "https://10.10.10.13:10250/containerLogs/kube-flannel/x": '
            "dial tcp 10.10.10.13:10250: i/o timeout",
        }
    )
    (finding,) = run(KubeletUnreachable, facts(objects))
    assert finding.nodes == ["samwise"]
    assert finding.evidence[0] == "10.10.10.13 is node samwise's InternalIP"
    assert run(KubeletUnreachable, facts(only(incident_001(), "samwise"))) == []


def test_an_unreadable_api_is_one_finding_and_no_api_configured_is_info() -> None:
    dead = ClusterFacts(
        reachable=False, error="GET /api/v1/nodes: connection refused", access="kubeconfig x"
    )
    (finding,) = run(ApiUnavailable, dead)
    assert finding.severity is Severity.WARNING and finding.evidence == [dead.error]
    none = ClusterFacts(reachable=False, error="Kubernetes API not queried: no kubeconfig found")
    (quiet,) = run(ApiUnavailable, none)
    assert quiet.severity is Severity.INFO
    assert run(ApiUnavailable, facts(incident_001())) == []
    assert run(ApiUnavailable, None) == []


def test_incident_001_symptoms_follow_from_nothing_without_node_facts() -> None:
    """Without the node's subnet.env finding, the API symptoms are roots themselves."""
    rules = all_rules()
    ctx = ClusterContext(nodes=[], cluster=ClusterConfig(cni="flannel"), kube=facts(incident_001()))
    ordered = link_causes(run_node_rules([], rules, ctx).findings, rules)
    assert {f.id for f in ordered} == {"node.ready-but-cni-broken", "pods.stale-unknown"}
    assert all(f.root_cause for f in ordered)
