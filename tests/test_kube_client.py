"""The Kubernetes API layer: object parsers on real-shaped objects, kubeconfig discovery, and
collect_cluster with the real lightkube client over real HTTP against the lab's stand-in."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cnidoctor.collectors.base import FactParseError
from cnidoctor.facts.cluster import ClusterFacts, KubeEvent, KubeNode, KubePod, config_map_data
from cnidoctor.kube.access import KubeAccess, search_access
from cnidoctor.kube.client import collect_cluster, collect_from
from cnidoctor.lab.apiserver import ApiHandle, load_objects, start_api, write_kubeconfig

KUBE = Path(__file__).parent / "data" / "kube"
SANDBOX_MESSAGE = (
    'plugin type="flannel" failed (add): loadFlannelSubnetEnv failed: '
    "open /run/flannel/subnet.env: no such file or directory"
)


def objects(kind: str) -> dict[str, dict[str, Any]]:
    """The golden objects of one kind, by name."""
    return {o["metadata"]["name"]: o for o in load_objects(KUBE) if o["kind"] == kind}


@pytest.fixture(scope="module")
def api() -> Iterator[ApiHandle]:
    with start_api(KUBE, "127.0.0.1:0") as handle:
        yield handle


def access_for(path: Path | str, context: str | None = None) -> KubeAccess:
    return KubeAccess("--kubeconfig", str(path), context)


# --- parsers ------------------------------------------------------------------------------


def test_node_parse_keeps_cidrs_addresses_boot_id_and_flannel_annotations() -> None:
    node = KubeNode.from_object(objects("Node")["boromir"])
    assert node.pod_cidrs == ["10.42.0.0/24"]
    assert node.internal_ip == "192.168.1.20"
    assert node.ready
    assert node.boot_id == "9d1c2b6e-5f0a-4e77-8c1d-2a4f6b8e0c13"
    assert node.kubelet_version == "v1.31.4+k3s1"
    assert node.flannel_public_ip == "192.168.1.20"
    assert node.flannel_backend_type == "vxlan"
    assert node.flannel_backend_data == {"VNI": 1, "VtepMAC": "6a:3e:1c:9b:2d:41"}
    assert node.labels["node-role.kubernetes.io/control-plane"] == "true"
    ready = node.condition("Ready")
    assert ready is not None and ready.reason == "KubeletReady"


def test_node_parse_taints_and_drops_last_applied() -> None:
    node = KubeNode.from_object(objects("Node")["samwise"])
    assert [(t.key, t.effect) for t in node.taints] == [
        ("node.longhorn.io/maintenance", "NoSchedule")
    ]
    assert "kubectl.kubernetes.io/last-applied-configuration" not in node.annotations
    assert "flannel.alpha.coreos.com/public-ip" in node.flannel_annotations


def test_node_without_pod_cidr_or_annotations() -> None:
    node = KubeNode.from_object({"metadata": {"name": "fresh"}, "spec": {}, "status": {}})
    assert node.pod_cidrs == [] and not node.ready and node.flannel_backend_data is None


def test_stale_pod_after_reboot_is_terminated_unknown() -> None:
    pod = KubePod.from_object(objects("Pod")["source-controller-6c7b9d8f5-qw8zt"])
    assert (pod.namespace, pod.node, pod.phase) == ("flux-system", "boromir", "Running")
    assert (pod.owner_kind, pod.owner_name) == ("ReplicaSet", "source-controller-6c7b9d8f5")
    (container,) = pod.containers
    assert (container.state, container.reason, container.exit_code) == (
        "terminated",
        "Unknown",
        255,
    )
    assert pod.pod_ips == ["10.42.0.57"]


def test_pending_pod_waits_in_container_creating() -> None:
    pod = KubePod.from_object(objects("Pod")["coredns-ccb96694c-x7k2p"])
    assert pod.phase == "Pending"
    assert pod.waiting_reasons() == ["ContainerCreating"]
    assert pod.pod_ips == [] and not pod.host_network


def test_init_container_and_daemonset_owner() -> None:
    pod = KubePod.from_object(objects("Pod")["longhorn-manager-h4kq9"])
    assert pod.owner_kind == "DaemonSet"
    assert [(c.name, c.init, c.reason) for c in pod.containers] == [
        ("wait-longhorn-admission-webhook", True, "ContainerCreating"),
        ("longhorn-manager", False, "PodInitializing"),
    ]


def test_crashloop_keeps_last_termination() -> None:
    pod = KubePod.from_object(objects("Pod")["kustomize-controller-5f8d7c6b4-m2n3p"])
    (c,) = pod.containers
    assert (c.reason, c.restart_count, c.last_reason, c.last_exit_code) == (
        "CrashLoopBackOff",
        7,
        "Error",
        1,
    )
    assert c.last_message is not None and "dial tcp 10.43.0.1:443: i/o timeout" in c.last_message


def test_host_network_pod() -> None:
    assert KubePod.from_object(objects("Pod")["svclb-traefik-8f7e6d5c-zt5wq"]).host_network


def test_sandbox_event_keeps_the_real_message_and_host() -> None:
    event = KubeEvent.from_object(objects("Event")["coredns-ccb96694c-x7k2p.181f5a2b3c4d5e6f"])
    assert event.reason == "FailedCreatePodSandBox" and event.type == "Warning"
    assert event.message is not None and event.message.endswith(SANDBOX_MESSAGE)
    assert event.message.startswith("Failed to create pod sandbox: rpc error: code = Unknown")
    assert (event.kind, event.object_name, event.source_host, event.count) == (
        "Pod",
        "coredns-ccb96694c-x7k2p",
        "boromir",
        14,
    )
    assert event.last_timestamp is not None and event.last_timestamp.minute == 27


def test_new_style_event_reads_series_and_reporting_instance() -> None:
    event = KubeEvent.from_object(
        {
            "metadata": {"name": "e1", "namespace": "kube-system"},
            "involvedObject": {"kind": "Pod", "name": "p"},
            "eventTime": "2026-01-31T07:24:12.000000Z",
            "series": {"count": 5, "lastObservedTime": "2026-01-31T07:30:00.000000Z"},
            "reportingInstance": "theoden",
            "reason": "FailedCreatePodSandBox",
            "type": "Warning",
        }
    )
    assert (event.count, event.source_host) == (5, "theoden")
    assert event.last_timestamp is not None and event.last_timestamp.minute == 30


def test_config_map_data() -> None:
    key, data = config_map_data(objects("ConfigMap")["kube-flannel-cfg"])
    assert key == "kube-flannel/kube-flannel-cfg"
    facts = ClusterFacts(reachable=True, config_maps={key: data})
    assert facts.flannel_net_conf() == {
        "Network": "10.42.0.0/16",
        "EnableNFTables": False,
        "Backend": {"Type": "vxlan"},
    }


@pytest.mark.parametrize(
    ("parser", "bad", "needle"),
    [
        (KubeNode.from_object, "not an object", "expected an object"),
        (KubeNode.from_object, {"metadata": {}}, r"no metadata\.name"),
        (KubeNode.from_object, {"metadata": {"name": "n"}, "status": {"conditions": "x"}}, "list"),
        (KubeNode.from_object, {"metadata": {"name": "n"}, "spec": []}, r"Node\.spec"),
        (
            KubePod.from_object,
            {
                "metadata": {"name": "p"},
                "status": {"containerStatuses": [{"name": "c", "restartCount": "many"}]},
            },
            "restart_count",
        ),
        (KubeEvent.from_object, {"metadata": {"name": "e"}, "count": "lots"}, "count"),
        (config_map_data, {"metadata": {"name": "c"}, "data": {"k": 1}}, "strings"),
    ],
)
def test_malformed_objects_raise_one_clear_parse_error(parser: Any, bad: Any, needle: str) -> None:
    with pytest.raises(FactParseError, match=needle) as info:
        parser(bad)
    assert "\n" not in str(info.value)


def test_truncated_object_is_a_parse_error() -> None:
    text = (KUBE / "pods.yaml").read_text()
    truncated = yaml.safe_load(text[: text.index("  spec:")])  # cut before the first spec
    pod = truncated["items"][0]
    del pod["metadata"]["name"]  # the cut also lost the name in a real truncated stream
    with pytest.raises(FactParseError, match=r"no metadata\.name"):
        KubePod.from_object(pod)


# --- access discovery ---------------------------------------------------------------------


def first_access(*args: Any, **kwargs: Any) -> KubeAccess | None:
    return search_access(*args, **kwargs)[0]


def test_discovery_order_explicit_then_inventory(tmp_path: Path) -> None:
    found = first_access("/x/explicit.yaml", "/x/inv.yaml", "ctx", env={}, home=str(tmp_path))
    assert found is not None and (found.source, found.path, found.context) == (
        "--kubeconfig",
        "/x/explicit.yaml",
        "ctx",
    )
    found = first_access(None, "/x/inv.yaml", None, env={}, home=str(tmp_path))
    assert found is not None and found.source == "inventory"


def test_discovery_env_then_home_then_k3s(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    k3s = tmp_path / "k3s.yaml"
    k3s.write_text("clusters: []\n")
    kw: dict[str, Any] = {"home": str(home), "k3s_kubeconfig": str(k3s)}
    env_file = tmp_path / "env.yaml"
    env_file.write_text("clusters: []\n")
    found = first_access(None, None, None, env={"KUBECONFIG": f"/nope:{env_file}"}, **kw)
    assert found is not None and (found.source, found.path) == ("$KUBECONFIG", str(env_file))
    assert "$KUBECONFIG /nope: no such file" in found.tried
    found = first_access(None, None, None, env={}, **kw)
    assert found is not None and found.source == "k3s"
    (home / ".kube" / "config").write_text("clusters: []\n")
    found = first_access(None, None, None, env={}, **kw)
    assert found is not None and found.source == "~/.kube/config"


def test_discovery_in_cluster_last(tmp_path: Path) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("tok")
    env = {"KUBERNETES_SERVICE_HOST": "10.43.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    found = first_access(
        None,
        None,
        None,
        env=env,
        home=str(tmp_path),
        k3s_kubeconfig=str(tmp_path / "none"),
        service_account_dir=str(sa),
    )
    assert found is not None and found.in_cluster and found.server == "https://10.43.0.1:443"
    assert "in-cluster service account" in found.describe()


def test_nothing_found_names_everything_tried(tmp_path: Path) -> None:
    access, tried = search_access(
        None,
        None,
        None,
        env={},
        home=str(tmp_path),
        k3s_kubeconfig=str(tmp_path / "k3s.yaml"),
        service_account_dir=str(tmp_path / "sa"),
    )
    assert access is None
    text = "; ".join(tried)
    for needle in ("--kubeconfig: not given", "$KUBECONFIG: not set", "k3s.yaml: no such file"):
        assert needle in text
    assert "KUBERNETES_SERVICE_HOST not set" in text


# --- collect_cluster against the stand-in -------------------------------------------------


def test_collect_reads_nodes_pods_events_and_flannel_config(api: ApiHandle) -> None:
    facts = collect_cluster(access_for(api.kubeconfig_path))
    assert facts.reachable and facts.error is None and facts.partial == []
    assert facts.server == api.url
    assert sorted(n.name for n in facts.nodes) == ["boromir", "samwise", "theoden"]
    assert len(facts.pods) == 5
    assert {p.name for p in facts.pods_on("boromir")} == {
        "source-controller-6c7b9d8f5-qw8zt",
        "coredns-ccb96694c-x7k2p",
    }
    reasons = sorted(e.reason or "" for e in facts.events)
    # every Warning, the NodeNotReady Normal event; not the routine "Pulled"
    assert reasons == [
        "FailedCreatePodSandBox",
        "FailedCreatePodSandBox",
        "NodeNotReady",
        "Rebooted",
    ]
    sandbox = facts.events_about("Pod", "coredns-ccb96694c-x7k2p", "kube-system")
    assert sandbox and sandbox[0].message is not None and SANDBOX_MESSAGE in sandbox[0].message
    assert facts.events[0].last_timestamp == max(e.last_timestamp for e in facts.events)  # type: ignore[type-var]
    assert list(facts.config_maps) == ["kube-flannel/kube-flannel-cfg"]
    assert facts.flannel_net_conf() is not None
    assert facts.duration_s is not None
    # the model survives a snapshot round trip
    assert ClusterFacts.model_validate_json(facts.model_dump_json()) == facts


def test_collect_with_tls_and_token() -> None:
    with start_api(KUBE, "127.0.0.1:0", tls=True, token="t0ken") as handle:
        assert handle.url.startswith("https://")
        facts = collect_cluster(access_for(handle.kubeconfig_path))
    assert facts.reachable and len(facts.nodes) == 3


def test_minimal_hand_written_objects_decode_like_real_ones() -> None:
    """The stand-in fills what a real API server always writes (nodeInfo, image...)."""
    minimal = [
        {"kind": "Node", "metadata": {"name": "n1"}, "spec": {"podCIDR": "10.42.0.0/24"}},
        {
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "x"},
            "status": {"containerStatuses": [{"name": "c", "state": {"waiting": {}}}]},
        },
    ]
    with start_api(minimal, "127.0.0.1:0") as handle:
        facts = collect_cluster(access_for(handle.kubeconfig_path))
    assert facts.partial == [] and facts.nodes[0].pod_cidrs == ["10.42.0.0/24"]
    assert facts.pods[0].containers[0].state == "waiting"


def test_forbidden_events_are_partial_not_fatal() -> None:
    with start_api(KUBE, "127.0.0.1:0", forbid=["events"]) as handle:
        facts = collect_cluster(access_for(handle.kubeconfig_path))
    assert facts.reachable and len(facts.nodes) == 3 and facts.events == []
    assert facts.partial and facts.partial[0].startswith("events: 403 Forbidden")
    assert "cannot list resource" in facts.partial[0]


def test_five_thousand_pods_in_ten_pages() -> None:
    pods = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"web-{i:04d}", "namespace": f"ns-{i % 7}"},
            "spec": {"nodeName": f"node-{i % 3}", "containers": [{"name": "c", "image": "nginx"}]},
            "status": {"phase": "Running"},
        }
        for i in range(5000)
    ]
    with start_api(pods, "127.0.0.1:0") as handle:
        facts = collect_cluster(access_for(handle.kubeconfig_path), page_size=500)
        pages = [r for r in handle.requests if r.path == "/api/v1/pods"]
    assert facts.reachable and len(facts.pods) == 5000
    assert len({p.key for p in facts.pods}) == 5000
    assert len(pages) == 10
    assert all(r.query["limit"] == "500" and r.status == 200 for r in pages)
    assert "continue" not in pages[0].query and all("continue" in r.query for r in pages[1:])


# --- kubeconfigs that cannot work: reachable False, one line, what was tried --------------


def assert_one_line_failure(facts: ClusterFacts, *needles: str) -> None:
    assert not facts.reachable
    assert facts.error is not None and "\n" not in facts.error
    for needle in needles:
        assert needle in facts.error, facts.error


def test_missing_kubeconfig(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    facts = collect_cluster(access_for(missing))
    assert_one_line_failure(facts, str(missing), "--kubeconfig", "no such file")


def test_malformed_kubeconfig(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nclusters:\n  - name: x\n   cluster: {server: [\n")
    assert_one_line_failure(collect_cluster(access_for(bad)), str(bad), "not valid YAML (line")
    bad.write_text("just a string\n")
    assert_one_line_failure(collect_cluster(access_for(bad)), "not a kubeconfig")
    bad.write_text("clusters:\n- name: a\n  cluster: {server: 5}\ncontexts: []\n")
    assert_one_line_failure(collect_cluster(access_for(bad)), "malformed kubeconfig")


def test_no_current_context_and_unknown_context(tmp_path: Path, api: ApiHandle) -> None:
    config = yaml.safe_load(api.kubeconfig_path.read_text())
    del config["current-context"]
    path = tmp_path / "noctx.yaml"
    path.write_text(yaml.safe_dump(config))
    assert_one_line_failure(collect_cluster(access_for(path)), "no current-context")
    assert_one_line_failure(
        collect_cluster(access_for(path, context="prod")), "Context 'prod' not found"
    )
    assert collect_cluster(access_for(path, context="cnidoctor-lab")).reachable


def test_expired_token_is_401(tmp_path: Path) -> None:
    with start_api(KUBE, "127.0.0.1:0", token="current") as handle:
        stale = write_kubeconfig(tmp_path / "stale.yaml", handle.url, token="expired")
        facts = collect_cluster(access_for(stale))
        asked = len(handle.requests)
    assert_one_line_failure(facts, "401 Unauthorized", handle.url, str(stale))
    assert asked == 1  # the first refusal ends the pass


def test_dead_address_is_refused_at_once(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = write_kubeconfig(tmp_path / "dead.yaml", f"http://127.0.0.1:{port}")
    facts = collect_cluster(access_for(dead), timeout=5)
    assert_one_line_failure(facts, "connection refused", f"127.0.0.1:{port}", str(dead))
    assert facts.duration_s is not None and facts.duration_s < 2


def test_collect_from_without_any_kubeconfig(tmp_path: Path) -> None:
    facts = collect_from(
        None,
        None,
        env={},
        home=str(tmp_path),
        k3s_kubeconfig=str(tmp_path / "k3s.yaml"),
        service_account_dir=str(tmp_path / "sa"),
    )
    assert not facts.reachable and facts.error is not None
    assert facts.error.startswith("Kubernetes API not queried: no kubeconfig found (tried")
    assert "--kubeconfig: not given" in facts.error
