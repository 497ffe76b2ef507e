"""Benchmark: `cnidoctor matrix` vs incident 002's sequential connectivity loop.

Run as root:  python bench/bench_matrix.py [--rounds N]

A 12-node lab (three control-plane nodes with etcd, nine workers, one bridged segment,
stand-in listeners on the cluster ports) is built with the project's own lab code, twice:

1. three nodes drop every inbound packet (iptables INPUT DROP). The incident's runbook
   loop, `ping -c 1 -W 2 DST` for each (source, destination) pair one after the other,
   is run through the same namespaces with nsenter (no ssh handshake: the loop's best
   case); it waits 2 s per failed pair. The matrix probes ICMP, 6443, 10250, 2379, 2380
   and VXLAN for the same pairs, judges the failures (reading the silent nodes' firewall
   facts) and must be at least 30x faster;
2. no node drops anything: the matrix, although it probes more ports, must not be slower
   than the loop (both the median of --rounds runs).

Prints absolute times and the ratios measured in this run (this machine is shared: compare
the ratios). Every namespace is removed at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from types import FrameType

from cnidoctor.inventory import load_inventory
from cnidoctor.lab.build import build, destroy
from cnidoctor.lab.model import NodeSpec, Scenario, Segment, Uplink
from cnidoctor.probes.matrix import matrix_report, nodes_from_inventory

NODES = 12
SILENT = (4, 8, 12)  # 1-based: workers that drop everything inbound
TIMEOUT = 1.0


def scenario(silent: tuple[int, ...]) -> Scenario:
    nodes = tuple(
        NodeSpec(
            name=f"bench-{i:02d}",
            netns=f"cnd-bmx-n{i}",
            role="control-plane" if i <= 3 else "worker",
            uplinks=(Uplink(ifname="eth0", segment="lan", address=f"10.88.0.{i + 10}/24"),),
            pod_subnet=f"10.42.{i}.0/24",
            drop_inbound=i in silent,
        )
        for i in range(1, NODES + 1)
    )
    return Scenario(
        name="bench-matrix",
        tag="bmx",
        description="bench_matrix: 12 flannel nodes on one segment",
        incident=None,
        segments=(Segment(name="lan", bridge="br-lan", gateway="10.88.0.1/24"),),
        nodes=nodes,
        cluster={"pod_cidr": "10.42.0.0/16", "service_cidr": "10.43.0.0/16", "cni": "flannel"},
        serve_ports=True,
    )


def runbook_loop(lab: Scenario) -> tuple[float, int]:
    """Incident 002's Step 6, pair after pair, through nsenter; (seconds, failed pairs)."""
    failed = 0
    started = time.perf_counter()
    for source in lab.nodes:
        for target in lab.nodes:
            if target is source:
                continue
            argv = ["nsenter", f"--net=/run/netns/{source.netns}"]
            argv += ["ping", "-c", "1", "-W", "2", target.address]
            done = subprocess.run(argv, capture_output=True, timeout=10, check=False)
            failed += done.returncode != 0
    return time.perf_counter() - started, failed


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def measure(lab: Scenario, rounds: int) -> tuple[float, float, int, int, int]:
    """(matrix s, loop s, probes, failed probes, failed loop pairs), medians over rounds."""
    inventory = load_inventory(build(lab))
    nodes = nodes_from_inventory(inventory)
    matrix_times, loop_times = [], []
    probes = failed_probes = failed_pairs = 0
    for _ in range(rounds):
        started = time.perf_counter()
        result, _ = matrix_report(nodes, inventory.cluster, TIMEOUT)
        matrix_times.append(time.perf_counter() - started)
        probes = len(result.probes)
        failed_probes = len(result.failed)
        seconds, failed_pairs = runbook_loop(lab)
        loop_times.append(seconds)
    return (
        statistics.median(matrix_times),
        statistics.median(loop_times),
        probes,
        failed_probes,
        failed_pairs,
    )


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="clean-lab rounds (median)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_matrix needs root (it builds network namespaces)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupted)
    pairs = NODES * (NODES - 1)
    ok = True
    current = scenario(SILENT)
    destroy(current.name, current)  # a run killed earlier left it: take it down first
    try:
        matrix_s, loop_s, probes, failed_probes, failed_pairs = measure(current, 1)
        destroy(current.name, current)
        ratio = loop_s / matrix_s
        print(f"{NODES} nodes, {pairs} pairs, {len(SILENT)} nodes dropping all inbound traffic")
        print(f"  sequential ping -c 1 -W 2 loop: {loop_s:7.2f} s  ({failed_pairs} pairs failed)")
        print(
            f"  cnidoctor matrix (timeout {TIMEOUT:g}s): {matrix_s:7.2f} s  "
            f"({probes} probes, {failed_probes} failed, judged)"
        )
        print(f"  ratio loop/matrix: {ratio:.1f}x (required: >= 30x)")
        ok &= ratio >= 30
        current = scenario(())
        matrix_s, loop_s, probes, failed_probes, failed_pairs = measure(current, args.rounds)
        ratio = loop_s / matrix_s
        print(f"{NODES} nodes, {pairs} pairs, clean (median of {args.rounds} runs)")
        print(f"  sequential ping -c 1 -W 2 loop: {loop_s:7.3f} s  ({failed_pairs} pairs failed)")
        print(
            f"  cnidoctor matrix:              {matrix_s:7.3f} s  "
            f"({probes} probes: ICMP + limited-TTL, 6443, 10250, 2379, 2380, VXLAN; "
            f"{failed_probes} failed)"
        )
        print(f"  ratio loop/matrix: {ratio:.2f}x (required: >= 1, the matrix not slower)")
        ok &= ratio >= 1 and failed_probes == 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        ok = False
    finally:
        destroy(current.name, current)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
