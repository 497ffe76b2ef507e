"""Benchmark: `cnidoctor fix` - building a plan, and --apply on the lab (first run, then the
second run that changes nothing).

Run as root:  python bench/bench_fix.py [--rounds N]
Plans are built from the snapshots under tests/data/remediation (pure analysis, no root
needed for that part). Each apply round builds the scenario afresh and takes it down.
The machine is shared and noisy: the medians matter, not single samples.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from itertools import pairwise
from pathlib import Path

from cnidoctor import lab
from cnidoctor.diagnose import analyse_full, collect_all, diagnose, targets_from_inventory
from cnidoctor.inventory import load_inventory
from cnidoctor.kube.client import collect_from
from cnidoctor.remediation import build_plan
from cnidoctor.remediation.apply import Applier, ApplyOptions
from cnidoctor.remediation.model import Step
from cnidoctor.rules import all_rules
from cnidoctor.snapshot import load_snapshot

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "remediation"


def plan_from_snapshot(name: str, rounds: int) -> tuple[float, int]:
    snapshot = load_snapshot(DATA / f"{name}.snapshot.json")
    targets = snapshot.target_list()
    rules = all_rules()
    samples, steps = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        analysis = analyse_full(
            snapshot.collections, targets, snapshot.cluster, rules, snapshot.kube
        )
        steps = len(build_plan(analysis, targets).steps)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), steps


def apply_once(name: str) -> dict[str, float]:
    """Times of one fresh scenario: diagnose+plan, apply (per step), final re-diagnosis,
    and the whole second run."""
    lab.down(name)
    inventory = load_inventory(lab.up(name))
    try:
        targets = targets_from_inventory(inventory)
        rules = all_rules()
        kubeconfig = inventory.cluster.kubeconfig
        api = (lambda: collect_from(None, kubeconfig)) if kubeconfig else None
        out: dict[str, float] = {}
        marks: list[tuple[Step | None, float]] = []

        def run() -> float:
            started = time.perf_counter()
            collections, kube = collect_all(targets, rules, api=api)
            analysis = analyse_full(collections, targets, inventory.cluster, rules, kube)
            plan = build_plan(analysis, targets)
            out.setdefault("diagnose+plan", time.perf_counter() - started)
            t0 = time.perf_counter()
            marks.append((None, t0))
            options = ApplyOptions(
                allow_disruptive=True,
                confirm=lambda node, steps: True,
                progress=lambda step: marks.append((step, time.perf_counter())),
            )
            Applier(plan, targets, inventory.cluster, rules, collections, kube, options).run()
            out.setdefault("apply", time.perf_counter() - t0)
            t1 = time.perf_counter()
            diagnose(targets, inventory.cluster, rules, api=api)
            out.setdefault("re-diagnosis", time.perf_counter() - t1)
            return time.perf_counter() - started

        out["first run"] = run()
        for (_, before), (step, at) in pairwise(marks):
            if step is None:
                break  # the second run's marks start here
            if step.state.value in ("done", "not-possible"):
                out[f"step {step.number} {step.key} ({step.state.value})"] = at - before
        out["second run (no-op)"] = run()
        return out
    finally:
        lab.down(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for name in ("seed-000", "seed-001"):
        seconds, steps = plan_from_snapshot(name, max(args.rounds, 5))
        print(f"{name}: plan from snapshot ({steps} steps): {seconds * 1000:.1f} ms")
    if os.geteuid() != 0:
        print("apply on the lab: skipped (needs root)")
        return 0
    for name in ("seed-000", "seed-001"):
        runs = [apply_once(name) for _ in range(args.rounds)]
        for key in runs[0]:
            values = [r[key] for r in runs if key in r]
            print(f"{name}: {key}: median {statistics.median(values) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
