"""Benchmark: collecting one lab node, batched vs one process per command, and analysing it.

Run as root:  python bench/bench_node.py [--rounds N]
Prints absolute times and ratios measured in the same run (this machine is noisy:
compare the ratios, not the seconds).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

from cnidoctor import lab
from cnidoctor.collect import collect_node
from cnidoctor.collectors.registry import collectors_for
from cnidoctor.diagnose import Target, analyse
from cnidoctor.inventory import load_inventory
from cnidoctor.rules import all_rules
from cnidoctor.transports import transport_for

SCENARIO = "healthy-node"


def median_time(fn: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_node: needs root to build the lab's network namespaces", file=sys.stderr)
        return 2

    inventory = load_inventory(lab.up(SCENARIO))
    try:
        entry = inventory.nodes[0]
        transport = transport_for(entry.via)
        rules = all_rules()
        collectors = collectors_for(rules)
        commands = [c for collector in collectors for c in collector.commands]

        batched = median_time(lambda: transport.run_batch(commands), args.rounds)
        one_by_one = median_time(lambda: [transport.run_batch([c]) for c in commands], args.rounds)
        collection = collect_node(entry.name, transport, collectors)
        target = Target(name=entry.name, spec=entry.via, address=entry.address, role=entry.role)
        analysis = median_time(
            lambda: analyse([collection], [target], inventory.cluster, rules), args.rounds * 10
        )
    finally:
        lab.down(SCENARIO)

    print(
        f"lab node {entry.name} ({entry.via}): "
        f"{len(commands)} commands from {len(collectors)} collectors"
    )
    print(f"  collection, one batched round trip : {batched * 1000:8.1f} ms")
    print(f"  collection, one process per command: {one_by_one * 1000:8.1f} ms")
    print(f"  analysis of one node's facts       : {analysis * 1000:8.2f} ms  ({len(rules)} rules)")
    print(f"ratio per-command / batched collection: {one_by_one / batched:.1f}x")
    print(f"ratio batched collection / analysis  : {batched / analysis:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
