"""The lab's API stand-in, spoken to over real HTTP on loopback: REST paths, selectors,
paging, Status errors, auth, the CLI entry point, and a netns listener (root)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cnidoctor.errors import CnidoctorError
from cnidoctor.lab.apiserver import (
    ApiHandle,
    ApiObjectsError,
    SelectorError,
    load_objects,
    parse_field_selector,
    parse_label_selector,
    parse_listen,
    start_api,
)

KUBE = Path(__file__).parent / "data" / "kube"


@pytest.fixture(scope="module")
def api() -> Iterator[ApiHandle]:
    with start_api(KUBE, "127.0.0.1:0") as handle:
        yield handle


def get(api: ApiHandle, path: str, token: str | None = None, **query: str) -> tuple[int, str, Any]:
    """(status, content type, JSON body) of one GET."""
    url = api.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], json.loads(err.read())


def names(body: dict[str, Any]) -> list[str]:
    return [item["metadata"]["name"] for item in body["items"]]


# --- objects ------------------------------------------------------------------------------


def test_load_objects_unfolds_lists_and_multi_documents() -> None:
    kinds = sorted(o["kind"] for o in load_objects(KUBE))
    assert kinds.count("Node") == 3 and kinds.count("Pod") == 5 and kinds.count("ConfigMap") == 2


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("kind: Widget\nmetadata: {name: w}\n", "kind 'Widget' is not served"),
        ("kind: Pod\nmetadata: {name: a}\n---\nkind: Pod\nmetadata: {name: a}\n", "two Pod"),
        ("kind: Pod\nmetadata: {name: [\n", "objects.yaml"),
        ("- just\n- a list\n", "not an object"),
        ("kind: Node\nmetadata: {}\n", "no metadata.name"),
        ("kind: Node\nmetadata: {name: n}\nstatus: [1]\n", "Node n: malformed"),
    ],
)
def test_bad_objects_are_one_line_errors(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "objects.yaml"
    path.write_text(text)
    with pytest.raises(ApiObjectsError) as info:
        start_api(path, "127.0.0.1:0")
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_missing_objects_path() -> None:
    with pytest.raises(ApiObjectsError, match="no such file"):
        load_objects("/nonexistent/objects")


def test_parse_listen() -> None:
    assert parse_listen("10.10.0.2:6443") == ("10.10.0.2", 6443)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("6443", "host:", "a:99999"):
        with pytest.raises(CnidoctorError):
            parse_listen(bad)


# --- discovery, list, get -----------------------------------------------------------------


def test_discovery_documents(api: ApiHandle) -> None:
    assert get(api, "/version")[2]["gitVersion"].startswith("v1.31")
    assert get(api, "/api")[2]["versions"] == ["v1"]
    groups = get(api, "/apis")[2]["groups"]
    # calico's operator group serves its Installation (cluster-scoped)
    assert [g["name"] for g in groups] == ["apps", "operator.tigera.io"]
    core = {r["name"]: r for r in get(api, "/api/v1")[2]["resources"]}
    assert core["pods"]["namespaced"] and not core["nodes"]["namespaced"]
    assert core["events"]["kind"] == "Event"
    apps = get(api, "/apis/apps/v1")[2]
    assert "daemonsets" in [r["name"] for r in apps["resources"]]


def test_list_cluster_wide_and_namespaced(api: ApiHandle) -> None:
    status, ctype, body = get(api, "/api/v1/pods")
    assert (status, ctype, body["kind"]) == (200, "application/json", "PodList")
    assert len(body["items"]) == 5 and body["metadata"]["resourceVersion"]
    # etcd order: namespace, then name
    keys = [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in body["items"]]
    assert keys == sorted(keys)
    body = get(api, "/api/v1/namespaces/kube-system/pods")[2]
    assert names(body) == ["coredns-ccb96694c-x7k2p", "svclb-traefik-8f7e6d5c-zt5wq"]
    assert names(get(api, "/api/v1/nodes")[2]) == ["boromir", "samwise", "theoden"]


def test_namespaces_are_synthesised(api: ApiHandle) -> None:
    listed = names(get(api, "/api/v1/namespaces")[2])
    assert {"default", "kube-system", "kube-flannel", "flux-system"} <= set(listed)
    assert get(api, "/api/v1/namespaces/kube-flannel")[2]["status"]["phase"] == "Active"


def test_get_one_and_not_found_status(api: ApiHandle) -> None:
    status, _, node = get(api, "/api/v1/nodes/theoden")
    assert status == 200 and node["spec"]["podCIDR"] == "10.42.2.0/24"
    status, _, cm = get(api, "/api/v1/namespaces/kube-flannel/configmaps/kube-flannel-cfg")
    assert status == 200 and "net-conf.json" in cm["data"]
    status, ctype, body = get(api, "/api/v1/namespaces/kube-system/configmaps/cilium-config")
    assert (status, ctype) == (404, "application/json")
    assert body["kind"] == "Status" and body["reason"] == "NotFound" and body["code"] == 404
    assert body["message"] == 'configmaps "cilium-config" not found'
    assert get(api, "/api/v1/widgets")[0] == 404
    assert get(api, "/apis/apps/v1/namespaces/kube-system/daemonsets")[2]["items"] == []


def test_watch_and_writes_are_refused(api: ApiHandle) -> None:
    assert get(api, "/api/v1/pods", watch="true")[0] == 405
    request = urllib.request.Request(api.url + "/api/v1/namespaces/default/pods", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, data=b"{}", timeout=5)
    assert info.value.code == 405


# --- selectors ----------------------------------------------------------------------------


def test_field_selectors(api: ApiHandle) -> None:
    on_boromir = get(api, "/api/v1/pods", fieldSelector="spec.nodeName=boromir")[2]
    assert sorted(names(on_boromir)) == [
        "coredns-ccb96694c-x7k2p",
        "source-controller-6c7b9d8f5-qw8zt",
    ]
    pending = get(api, "/api/v1/pods", fieldSelector="status.phase==Pending,spec.nodeName!=theoden")
    assert names(pending[2]) == ["coredns-ccb96694c-x7k2p"]
    warnings = get(api, "/api/v1/events", fieldSelector="type=Warning,involvedObject.kind=Node")[2]
    assert [e["reason"] for e in warnings["items"]] == ["Rebooted"]
    sandbox = get(api, "/api/v1/events", fieldSelector="reason=FailedCreatePodSandBox")[2]
    assert len(sandbox["items"]) == 2
    by_name = get(api, "/api/v1/nodes", fieldSelector="metadata.name=samwise")[2]
    assert names(by_name) == ["samwise"]
    status, _, body = get(api, "/api/v1/pods", fieldSelector="spec.color=blue")
    assert status == 400 and body["reason"] == "BadRequest"
    assert body["message"] == 'field label not supported: "spec.color"'


def test_label_selectors(api: ApiHandle) -> None:
    assert names(get(api, "/api/v1/pods", labelSelector="k8s-app=kube-dns")[2]) == [
        "coredns-ccb96694c-x7k2p"
    ]
    flux = get(
        api, "/api/v1/pods", labelSelector="app in (source-controller, kustomize-controller)"
    )
    assert len(flux[2]["items"]) == 2
    notin = get(api, "/api/v1/pods", labelSelector="app,app notin (source-controller)")[2]
    assert "source-controller-6c7b9d8f5-qw8zt" not in names(notin) and len(notin["items"]) == 3
    no_app = get(api, "/api/v1/pods", labelSelector="!app")[2]
    assert names(no_app) == ["coredns-ccb96694c-x7k2p"]
    cp = get(api, "/api/v1/nodes", labelSelector="node-role.kubernetes.io/control-plane==true")
    assert names(cp[2]) == ["boromir", "theoden"]
    assert get(api, "/api/v1/pods", labelSelector="app notin (a")[0] == 400


def test_selector_parsers_directly() -> None:
    pod = {"metadata": {"labels": {"tier": "node", "app": "flannel"}}, "spec": {"nodeName": "n1"}}
    assert parse_label_selector("tier=node,app!=calico")(pod)
    assert not parse_label_selector("tier in (control)")(pod)
    assert parse_label_selector("")(pod)
    assert parse_field_selector("spec.nodeName=n1,metadata.namespace=")(pod)
    assert not parse_field_selector("spec.nodeName!=n1")(pod)
    for bad in ("=x", "a b c"):
        with pytest.raises(SelectorError):
            parse_label_selector(bad)
    with pytest.raises(SelectorError):
        parse_field_selector("nonsense")


# --- paging -------------------------------------------------------------------------------


def test_limit_and_continue_walk_every_item_once(api: ApiHandle) -> None:
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        query = {"limit": "2", **({"continue": token} if token else {})}
        body = get(api, "/api/v1/pods", **query)[2]
        pages += 1
        seen += names(body)
        token = body["metadata"].get("continue")
        if not token:
            assert "remainingItemCount" not in body["metadata"]
            break
        assert body["metadata"]["remainingItemCount"] == 5 - len(seen)
    assert pages == 3 and len(seen) == 5 and len(set(seen)) == 5


def test_paging_with_a_selector(api: ApiHandle) -> None:
    first = get(api, "/api/v1/events", limit="1", fieldSelector="type=Warning")[2]
    assert len(first["items"]) == 1 and first["metadata"]["remainingItemCount"] == 2
    rest = get(
        api,
        "/api/v1/events",
        limit="5",
        fieldSelector="type=Warning",
        **{"continue": first["metadata"]["continue"]},
    )[2]
    assert len(rest["items"]) == 2 and "continue" not in rest["metadata"]


def test_bad_continue_token(api: ApiHandle) -> None:
    status, _, body = get(api, "/api/v1/pods", limit="1", **{"continue": "!!not-a-token"})
    assert status == 400 and body["message"] == "continue key is not valid"


# --- auth ---------------------------------------------------------------------------------


def test_bearer_token_auth() -> None:
    with start_api(KUBE, "127.0.0.1:0", token="good") as handle:
        assert get(handle, "/api/v1/nodes", token="good")[0] == 200
        status, ctype, body = get(handle, "/api/v1/nodes", token="expired")
        assert (status, ctype, body["reason"], body["code"]) == (
            401,
            "application/json",
            "Unauthorized",
            401,
        )
        assert get(handle, "/api/v1/nodes")[0] == 401
        assert "token: good" in handle.kubeconfig_path.read_text()


def test_stop_removes_its_files() -> None:
    handle = start_api(KUBE, "127.0.0.1:0")
    kubeconfig = handle.kubeconfig_path
    assert kubeconfig.exists()
    handle.stop()
    handle.stop()  # idempotent
    assert not kubeconfig.exists()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(handle.url + "/version", timeout=2)


# --- kubectl, the CLI entry point, a netns ------------------------------------------------


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_get_against_the_stand_in() -> None:
    with start_api(KUBE, "127.0.0.1:0", tls=True, token="tok") as handle:
        run = subprocess.run(
            ["kubectl", "--kubeconfig", str(handle.kubeconfig_path), "get", "pods", "-A",
             "--field-selector", "spec.nodeName=boromir", "-o", "name"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert sorted(run.stdout.split()) == [
        "pod/coredns-ccb96694c-x7k2p",
        "pod/source-controller-6c7b9d8f5-qw8zt",
    ]


RUN_API = textwrap.dedent(
    """
    import argparse, sys
    from cnidoctor.lab.apiserver import run_api
    sys.exit(run_api(argparse.Namespace(objects=sys.argv[1], listen="127.0.0.1:0", netns=None)))
    """
)


def test_run_api_prints_kubeconfig_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_API, str(KUBE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        kubeconfig = Path(proc.stdout.readline().strip())
        assert kubeconfig.name == "kubeconfig.yaml" and kubeconfig.exists()
        url = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        with urllib.request.urlopen(url + "/api/v1/nodes", timeout=5) as resp:
            assert len(json.loads(resp.read())["items"]) == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert not kubeconfig.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_api_bad_objects_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Widget\nmetadata: {name: w}\n")
    run = subprocess.run(
        [sys.executable, "-c", RUN_API, str(bad)], capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 2 and "kind 'Widget' is not served" in run.stderr
    assert run.stdout == ""


def test_listens_inside_a_network_namespace(root: None) -> None:
    netns = f"cnd-kapi-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        with start_api(KUBE, "127.0.0.1:0", netns=netns) as handle:
            probe = (
                "import sys, urllib.request;"
                "print(urllib.request.urlopen(sys.argv[1] + '/version', timeout=5).status)"
            )
            inside = subprocess.run(
                ["ip", "netns", "exec", netns, sys.executable, "-c", probe, handle.url],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert inside.stdout.strip() == "200", inside.stderr
            # the host's own loopback has nothing on that port
            with pytest.raises(urllib.error.URLError):
                urllib.request.urlopen(handle.url + "/version", timeout=2)
    finally:
        subprocess.run(["ip", "netns", "delete", netns], check=False)
    assert not os.path.exists(f"/run/netns/{netns}")


def test_unknown_netns_is_one_line_error() -> None:
    with pytest.raises(CnidoctorError, match="network namespace 'cnd-no-such-ns' not found"):
        start_api(KUBE, "127.0.0.1:0", netns="cnd-no-such-ns")
