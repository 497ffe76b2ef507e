"""Regenerate the golden captures of tests/data/matrix (root, Linux, iputils ping).

Everything comes from a freshly built seed-002 lab (incident 002's routing loop) and is
taken down afterwards:
- `ping-*.txt`: the node's own `ping -n -c 1` (stdout and stderr), the exit status in
  the file name's table below (PING_CASES);
- `<case>.args` / `<case>.out`: the matrix prober run from one node alone (the probe
  specs it was given, one per line, and the protocol lines it printed), python and bash.

The loop's ICMP redirects back off for 20 s per source (Linux ip_rt_redirect_silence),
so the captures that need a redirect wait that long in between.

Usage: python tests/data/matrix/capture.py   (writes the files next to this one)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from cnidoctor import lab
from cnidoctor.probes.matrix_prober import wrapper

HERE = Path(__file__).parent
SCENARIO = "seed-002"
NETNS = {"n1": "cnd-s002-n1", "n2": "cnd-s002-n2", "n3": "cnd-s002-n3", "n4": "cnd-s002-n4"}
#: (file, node, ping arguments, seconds to wait first): n4 is nl-k8s-04 (10.10.0.3)
PING_CASES = (
    ("ping-redirect", "n4", ["-W", "1", "10.10.0.2"], 21),
    ("ping-ttl-exceeded", "n4", ["-W", "1", "-t", "1", "10.10.0.2"], 3),
    ("ping-reply", "n3", ["-W", "1", "10.10.0.4"], 0),
    ("ping-host-unreachable", "n3", ["-W", "4", "10.10.0.99"], 0),
    ("ping-net-unreachable", "n3", ["-W", "1", "192.0.2.1"], 0),
    ("ping-redirect-loop", "n2", ["-W", "1", "10.10.0.2"], 21),
)
#: nl-k8s-04's probes: to the looping nl-k8s-01, and to the healthy nl-k8s-03
PROBES = (
    "p0,icmp,10.10.0.2,0",
    "p1,tcp,10.10.0.2,6443",
    "p2,tcp,10.10.0.2,10250",
    "p3,udp,10.10.0.2,8472",
    "p4,icmp,10.10.0.5,0",
    "p5,tcp,10.10.0.5,6443",
    "p6,tcp,10.10.0.5,10250",
    "p7,tcp,10.10.0.5,2379",
    "p8,udp,10.10.0.5,8472",
    "p9,tcp,10.10.0.5,1",
)


def in_node(node: str, argv: list[str]) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{NETNS[node]}", *argv]


def prober(node: str, prober: str, index: str) -> str:
    """Run the wrapper in the node alone: READY, then GO, then everything it printed."""
    args = ["1", "a1b2c3d4e5f6", index, "8472", "1,2,3", *PROBES]
    proc = subprocess.Popen(
        in_node(node, ["sh", "-s"]), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(wrapper(args, prober))
    proc.stdin.flush()
    first = proc.stdout.readline()
    proc.stdin.write("GO\n")
    proc.stdin.close()
    rest = proc.stdout.read()
    proc.wait(timeout=10)
    return first + rest


def main() -> int:
    lab.down(SCENARIO)
    lab.up(SCENARIO)
    try:
        (HERE / "seed-002-python.args").write_text("\n".join(PROBES) + "\n")
        (HERE / "seed-002-python.out").write_text(prober("n4", "auto", "3"))
        time.sleep(21)
        (HERE / "seed-002-bash.args").write_text("\n".join(PROBES) + "\n")
        (HERE / "seed-002-bash.out").write_text(prober("n4", "bash", "3"))
        for name, node, args, wait in PING_CASES:
            time.sleep(wait)
            done = subprocess.run(
                in_node(node, ["ping", "-n", "-c", "1", *args]),
                capture_output=True,
                text=True,
                timeout=10,
            )
            (HERE / f"{name}.txt").write_text(done.stdout + done.stderr)
            print(f"{name}: rc={done.returncode}", file=sys.stderr)
    finally:
        lab.down(SCENARIO)
    return 0


if __name__ == "__main__":
    sys.exit(main())
