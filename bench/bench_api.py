"""Benchmark: reading a 5,000-pod cluster's API through collect_cluster, paged vs unpaged.

Run:  python bench/bench_api.py [--pods N] [--rounds N]
Starts the lab API stand-in on loopback with N pods (and a few nodes and events), times
collect_cluster with 500-object pages and with one unpaged list per resource, prints both,
the ratio and the requests each made, and stops the server. This machine is noisy: compare
the ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from cnidoctor.kube.access import KubeAccess
from cnidoctor.kube.client import collect_cluster
from cnidoctor.lab.apiserver import start_api

SANDBOX = (
    "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network "
    'for sandbox "{sid}": plugin type="flannel" failed (add): loadFlannelSubnetEnv failed: '
    "open /run/flannel/subnet.env: no such file or directory"
)


def cluster_objects(pods: int, nodes: int = 5, events: int = 200) -> list[dict[str, Any]]:
    """Pods spread over namespaces and nodes, Ready nodes, sandbox-failure events."""
    out: list[dict[str, Any]] = []
    for n in range(nodes):
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": f"node-{n}"},
                "spec": {"podCIDR": f"10.42.{n}.0/24", "podCIDRs": [f"10.42.{n}.0/24"]},
                "status": {
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                    "addresses": [{"type": "InternalIP", "address": f"10.10.0.{n + 2}"}],
                    "nodeInfo": {"bootID": f"boot-{n}", "kubeletVersion": "v1.31.4+k3s1"},
                },
            }
        )
    for i in range(pods):
        waiting = i % 10 == 0
        state = {"waiting": {"reason": "ContainerCreating"}} if waiting else {"running": {}}
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"app-{i:05d}",
                    "namespace": f"team-{i % 20}",
                    "labels": {"app": f"app-{i % 50}"},
                    "ownerReferences": [
                        {"kind": "ReplicaSet", "name": f"app-{i % 50}-7d9f", "controller": True,
                         "apiVersion": "apps/v1", "uid": f"rs-{i % 50}"}
                    ],
                },
                "spec": {
                    "nodeName": f"node-{i % nodes}",
                    "containers": [{"name": "app", "image": "registry.local/app:1.0"}],
                },
                "status": {
                    "phase": "Pending" if waiting else "Running",
                    "containerStatuses": [
                        {"name": "app", "image": "registry.local/app:1.0", "imageID": "",
                         "ready": not waiting, "restartCount": 0, "state": state}
                    ],
                },
            }
        )  # fmt: skip
    for e in range(events):
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"app-{e * 10:05d}.{e:016x}", "namespace": f"team-{e % 20}"},
                "involvedObject": {"kind": "Pod", "name": f"app-{e * 10:05d}"},
                "reason": "FailedCreatePodSandBox",
                "message": SANDBOX.format(sid=f"{e:064x}"),
                "type": "Warning",
                "count": 3,
                "source": {"component": "kubelet", "host": f"node-{e % nodes}"},
                "firstTimestamp": "2026-01-31T07:24:12Z",
                "lastTimestamp": "2026-01-31T07:27:02Z",
            }
        )
    return out


def timed(access: KubeAccess, page_size: int, rounds: int) -> tuple[float, int]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        facts = collect_cluster(access, page_size=page_size)
        samples.append(time.perf_counter() - started)
        if not facts.reachable or facts.partial:
            raise SystemExit(f"collection failed: {facts.error or facts.partial}")
    return statistics.median(samples), len(facts.pods)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with start_api(cluster_objects(args.pods), "127.0.0.1:0") as api:
        access = KubeAccess("bench", str(api.kubeconfig_path))
        before = len(api.requests)
        paged, count = timed(access, 500, args.rounds)
        paged_requests = (len(api.requests) - before) // args.rounds
        before = len(api.requests)
        unpaged, _ = timed(access, 0, args.rounds)
        unpaged_requests = (len(api.requests) - before) // args.rounds
    print(f"pods collected             : {count}")
    print(f"collect_cluster, 500/page  : {paged:.3f}s  ({paged_requests} requests)")
    print(f"collect_cluster, unpaged   : {unpaged:.3f}s  ({unpaged_requests} requests)")
    print(f"paged / unpaged            : {paged / unpaged:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
