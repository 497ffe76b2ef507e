"""Benchmark: collecting one node over real SSH, one batched session vs one per command.

Run as root:  python bench/bench_ssh.py [--rounds N]
A real sshd runs in a lab namespace (cnidoctor.lab.sshd); the client is the system ssh.
Prints the connections sshd accepted for each way, the times, and their ratio measured
in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from cnidoctor.collectors.registry import collectors_for
from cnidoctor.lab.sshd import ssh_pair
from cnidoctor.rules import all_rules


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_ssh: needs root to build the lab's network namespaces", file=sys.stderr)
        return 2
    commands = [c for collector in collectors_for(all_rules()) for c in collector.commands]
    with ssh_pair("cnd-bench") as pair:
        transport = pair.transport()
        timings: dict[str, list[float]] = {"batched": [], "per command": []}
        sessions: dict[str, int] = {}
        for name, run in (
            ("batched", lambda: transport.run_batch(commands)),
            ("per command", lambda: [transport.run_batch([c]) for c in commands]),
        ):
            before = pair.accepted()
            for _ in range(args.rounds):
                started = time.perf_counter()
                run()
                timings[name].append(time.perf_counter() - started)
            sessions[name] = (pair.accepted() - before) // args.rounds
    batched = statistics.median(timings["batched"])
    single = statistics.median(timings["per command"])
    print(f"one node over ssh: {len(commands)} commands")
    print(f"  batched     : {batched * 1000:8.1f} ms, {sessions['batched']} ssh session(s)")
    print(f"  per command : {single * 1000:8.1f} ms, {sessions['per command']} ssh session(s)")
    print(f"ratio per-command / batched over ssh: {single / batched:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
