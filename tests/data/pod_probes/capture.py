"""Regenerate the golden captures of tests/data/pod_probes (root, Linux): real probe runs.

Brings the lab scenario seed-003 up (its own namespaces only; taken down afterwards, also
on failure), runs the pod probe run exactly as `cnidoctor probe` does (discovery, the
agent in each node's pod, the lab's far end), and writes each node's raw results. Then
one more agent run from pve-k3s-w1's pod against targets that fail in known ways: a
listener on the control plane that accepts TCP and never speaks TLS (6444), a closed port
(6445), an address nobody holds (10.50.10.99) and a DNS service address without endpoint.

Usage: python tests/data/pod_probes/capture.py   (writes tests/data/pod_probes/*.json)
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

from cnidoctor import lab
from cnidoctor.collectors.pod_probes import PodProbesCollector, agent_command
from cnidoctor.diagnose import collect, targets_from_inventory
from cnidoctor.inventory import load_inventory
from cnidoctor.lab.farend import _in_netns, _tcp_listener
from cnidoctor.lab.podnet import far_end_for_inventory
from cnidoctor.probes.pod import AGENT_SOURCE, PodProbeOptions, run_pod_probes
from cnidoctor.rules.egress import EgressNoSnat
from cnidoctor.transports import transport_for
from cnidoctor.transports.base import CommandResult

HERE = Path(__file__).resolve().parent
AGENT = "<probe agent source>"


def slim(result: CommandResult) -> dict:
    """The raw result with the agent's inline source left out (the parser never reads it)."""
    raw = result.model_dump()
    raw["argv"] = [AGENT if len(a) > 2000 else a for a in raw["argv"]]
    return raw


def main() -> None:
    lab.down("seed-003")
    inventory_path = lab.up("seed-003")
    try:
        inventory = load_inventory(inventory_path)
        targets = targets_from_inventory(inventory)
        collections = collect(targets, [EgressNoSnat])
        far = far_end_for_inventory(inventory_path)
        run_pod_probes(targets, inventory.cluster, collections, PodProbeOptions(far_end=far))
        for c in collections:
            raw = [slim(r) for r in c.results[PodProbesCollector.name]]
            short = c.name.rsplit("-", 1)[-1]
            (HERE / f"seed-003-{short}.json").write_text(json.dumps(raw, indent=1) + "\n")
            print(c.name)
        discovery = collections[1].results[PodProbesCollector.name][0].stdout
        (HERE / "discovery-lab.txt").write_text(discovery)
        # a node whose API answers TCP but not TLS, a closed port, a dead address, no DNS
        mute = _in_netns("cnd-s003-cp", _tcp_listener(6444))
        accepted: list[socket.socket] = []
        stop = threading.Event()

        def hold() -> None:
            while not stop.is_set():
                try:
                    accepted.append(mute.accept()[0])
                except TimeoutError:
                    continue
                except OSError:
                    return

        holder = threading.Thread(target=hold, daemon=True)
        holder.start()
        try:
            spec = {
                "timeout": 2,
                "deadline": 6,
                "dns": {
                    "server": "10.43.0.99",
                    "port": 53,
                    "names": [["cluster", "kubernetes.default.svc.cluster.local"]],
                },
                "api": [
                    {"label": "API server", "host": "10.50.10.10", "port": 6444},
                    {"label": "API server", "host": "10.50.10.10", "port": 6445},
                    {"label": "API server", "host": "10.50.10.99", "port": 6443},
                ],
                "pods": [{"node": "pve-k3s-w2", "ip": "10.42.2.99"}],
                "skipped": [{"probe": "egress", "why": "no --egress-url given"}],
            }
            netns = next(
                s
                for s in collections[1].results[PodProbesCollector.name][1].argv
                if s.startswith("--net=")
            )[len("--net=") :]
            command = agent_command(netns, AGENT_SOURCE.read_text(), spec, 10)
            outcome = transport_for("netns:cnd-s003-w1").run_batch([command])
            raw = [
                slim(collections[1].results[PodProbesCollector.name][0]),
                slim(outcome.results[0]),
            ]
            (HERE / "seed-003-w1-broken.json").write_text(json.dumps(raw, indent=1) + "\n")
            print("broken")
        finally:
            stop.set()
            mute.close()
            for conn in accepted:
                conn.close()
    finally:
        lab.down("seed-003")


if __name__ == "__main__":
    main()
