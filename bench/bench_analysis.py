"""Benchmark (b): analysing a synthetic snapshot of many nodes (parsing + every rule + linking).

Each node's raw outputs are the real captures under tests/data, templated per node: its
`ip -j -d addr` (eth0, flannel.1, cni0, 8 pod veths), 40 IPv4 routes, 300 neighbours,
flannel.1's fdb, 200 iptables rules with their `nft -j` form (kube-proxy for 21
services, captured by tests/data/iptables/capture_kube_proxy.py), sysctls, kernel, k3s,
CNI config and bin dir, NetworkManager, ufw, ethtool and subnet.env; the API lists every
node with flannel's annotations. Three nodes carry faults (a /8 prefix, jumbo frames, a
flannel.1 MAC that changed under its peers) so the cross-node rules have work to do.

As on a real cluster, no two nodes print the same text: each has its own addresses,
MACs (and the IPv6 link-local addresses made from them), pod subnet and flannel rule, its
own iptables timestamp and chain counters, nft counters and drifting handles, and
neighbour states; what repeats between nodes is what repeats in reality (kube-proxy's
rules, the peers in every neighbour table and fdb).

`cnidoctor.diagnose.analyse` is timed on 500, 1,000 and 2,000 nodes, each size in a
fresh process (so its peak RSS is its own): the first analysis of the process (its parsers
meet every text for the first time, as `diagnose --from` does) and the best of --repeat
runs, next to the bare decoding of the same outputs (orjson, nothing built): the ratio says
how much of the time is cnidoctor's own work. Also the peak RSS of the process (snapshot
included) and tracemalloc's peak of one analysis, and the growth 500 -> 2,000 nodes
(linear is 4x).

Run:  python bench/bench_analysis.py [--sizes 500 1000 2000] [--repeat 3]
      python bench/bench_analysis.py --profile 2000     (cProfile, top functions)
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import re
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson

from cnidoctor.collect import NodeCollection
from cnidoctor.collectors.base import Collector
from cnidoctor.collectors.cni import CniBinCollector, CniConfigCollector
from cnidoctor.collectors.fdb import FdbCollector
from cnidoctor.collectors.firewall import FirewalldCollector, UfwCollector
from cnidoctor.collectors.flannel import FlannelSubnetEnvCollector
from cnidoctor.collectors.iptables import IptablesCollector
from cnidoctor.collectors.k3s import K3sConfigCollector
from cnidoctor.collectors.kernel import EthtoolCollector, KernelCollector, KubeProxyModeCollector
from cnidoctor.collectors.netmgr import NetworkManagerCollector
from cnidoctor.collectors.network import LinksCollector, NeighboursCollector, RoutesCollector
from cnidoctor.collectors.nftables import NftablesCollector
from cnidoctor.collectors.registry import collectors_for
from cnidoctor.collectors.sysctl import SysctlCollector
from cnidoctor.diagnose import Target, analyse
from cnidoctor.facts.cluster import ClusterFacts, KubeNode
from cnidoctor.models import ClusterConfig, Report
from cnidoctor.rules import all_rules
from cnidoctor.transports.base import CommandResult

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
POD_CIDR = "10.128.0.0/13"  # room for 2,048 node subnets of /24
SERVICE_CIDR = "10.43.0.0/16"
GATEWAY = "10.10.0.1"
ROUTES, NEIGHBOURS, VETHS = 40, 300, 8
#: the nodes that carry a fault
SLASH8, JUMBO, MAC_CHURN = 7, 11, 13
CONTROL_PLANES = 3
#: what a busy node's cache holds for its peers, varying by node and peer
STATES = ("REACHABLE", "STALE", "DELAY")


def text(relative: str) -> str:
    return (DATA / relative).read_text()


def node_ip(i: int) -> str:
    return f"10.10.{i // 250}.{i % 250 + 2}"


def mac(prefix: str, i: int) -> str:
    return f"{prefix}:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"


def link_local(address: str) -> str:
    """The fe80::/64 address the kernel derives from a MAC (EUI-64)."""
    octets = [int(part, 16) for part in address.split(":")]
    octets[0] ^= 0x02
    eui = [*octets[:3], 0xFF, 0xFE, *octets[3:]]
    groups = [f"{(eui[k] << 8) | eui[k + 1]:x}" for k in range(0, 8, 2)]
    return "fe80::" + ":".join(groups)


def with_link_local(link: dict[str, Any]) -> dict[str, Any]:
    """`link` with its IPv6 link-local address derived from its own MAC, as on a real node."""
    for address in link.get("addr_info", []):
        if address["family"] == "inet6" and address["local"].startswith("fe80:"):
            address["local"] = link_local(link["address"])
    return link


def pod_subnet(i: int) -> str:
    """The node's /24 inside POD_CIDR: its flannel.1 holds .0, cni0 .1."""
    return f"10.{128 + i // 256}.{i % 256}"


class Templates:
    """The real captures every node is made from (loaded once)."""

    def __init__(self) -> None:
        links = json.loads(text("crossnode/healthy/n1.addr.json"))
        self.links = {link["ifname"]: link for link in links}
        veth = next(
            link
            for link in json.loads(text("ip_addr/incident002-slash8.json"))
            if link["ifname"].startswith("veth")
        )
        self.veth = veth
        routes = json.loads(text("crossnode/healthy/n1.route4.json"))
        self.route_default = routes[0]
        self.route_connected = routes[1]
        self.route_cni = routes[2]
        self.route_flannel = routes[3]
        self.route_local = [r for r in routes if r.get("table") == "local"]
        self.routes6 = text("crossnode/healthy/n1.route6.json")
        neigh = json.loads(text("crossnode/healthy/n2.neigh.json"))
        self.neigh_eth0 = next(n for n in neigh if n["dev"] == "eth0")
        self.neigh_flannel = next(n for n in neigh if n["dev"] == "flannel.1")
        self.fdb = json.loads(text("bridge_fdb/flannel-peers.json"))[0]
        # the captured ruleset, moved to this cluster's pod CIDR
        self.iptables = (
            text("iptables/kube-proxy-services.nft-save.txt")
            .replace("10.42.0.0/16", POD_CIDR)
            .replace("10.42.", "10.128.")
        )
        self.nft = (
            text("nft/kube-proxy-services.json")
            .replace('"addr": "10.42.0.0", "len": 16', '"addr": "10.128.0.0", "len": 13')
            .replace('"10.42.', '"10.128.')
        )
        masq = "-j MASQUERADE --random-fully\n"
        self.ipt_anchor = next(
            line + "\n"
            for line in self.iptables.splitlines()
            if "FLANNEL-POSTRTG" in line and line.endswith("-j MASQUERADE --random-fully")
        )
        assert masq in self.ipt_anchor
        items = json.loads(self.nft)["nftables"]
        last = [i for i in items if i.get("rule", {}).get("chain") == "FLANNEL-POSTRTG"][-1]
        self.nft_anchor = json.dumps(last)
        assert self.nft_anchor in self.nft
        self.sysctls = text("sysctl/healthy.txt")
        self.subnet_env = text("flannel/k3s.txt")


def node_firewall(t: Templates, i: int) -> tuple[str, str]:
    """Node i's iptables-nft-save and nft -j outputs: the cluster's ruleset with this node's
    own flannel rule (its pod subnet), its own counters, handles and timestamp: the texts
    differ between nodes as they do on a real cluster, only the rules repeat."""
    pod = pod_subnet(i)
    own = (
        f'-A FLANNEL-POSTRTG ! -s {POD_CIDR} -d {pod}.0/24 -m comment --comment "flanneld masq"'
        " -j RETURN\n"
    )
    ipt = t.iptables.replace(t.ipt_anchor, t.ipt_anchor + own)
    ipt = re.sub(
        r" on \w+ \w+ +\d+ [\d:]+ \d+",
        f" on Mon Nov 23 19:{i // 60 % 60:02d}:{i % 60:02d} 2026",
        ipt,
    )
    ipt = re.sub(
        r"^(:[A-Z]+ (?:ACCEPT|DROP)) \[0:0\]", rf"\1 [{i * 37}:{i * 5200}]", ipt, flags=re.M
    )
    item = {
        "rule": {
            "family": "ip",
            "table": "nat",
            "chain": "FLANNEL-POSTRTG",
            "handle": 900,
            "expr": [
                {
                    "match": {
                        "op": "!=",
                        "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                        "right": {"prefix": {"addr": "10.128.0.0", "len": 13}},
                    }
                },
                {
                    "match": {
                        "op": "==",
                        "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                        "right": {"prefix": {"addr": f"{pod}.0", "len": 24}},
                    }
                },
                {"xt": {"type": "match", "name": "comment"}},
                {"counter": {"packets": 0, "bytes": 0}},
                {"return": None},
            ],
        }
    }
    nft = t.nft.replace(t.nft_anchor, t.nft_anchor + ", " + json.dumps(item))
    counts = iter(range(1, 1 << 30))
    nft = re.sub(
        r'"packets": 0, "bytes": 0',
        lambda _: f'"packets": {(n := next(counts) * (i + 3)) % 9973}, "bytes": {n * 61}',
        nft,
    )
    shift = i % 7  # rules replaced at different times: handles drift between nodes
    nft = re.sub(
        r'("chain": "[^"]*", "handle": )(\d+)', lambda m: f"{m[1]}{int(m[2]) + shift}", nft
    )
    return ipt, nft


def compact(value: Any) -> str:
    """JSON as iproute2 prints it (`ip -j`, `bridge -j`): no spaces, one line."""
    return json.dumps(value, separators=(",", ":")) + "\n"


def ok(stdout: str) -> CommandResult:
    return CommandResult(argv=[], rc=0, stdout=stdout)


def failed(rc: int, stderr: str) -> CommandResult:
    return CommandResult(argv=[], rc=rc, stderr=stderr)


def node_outputs(t: Templates, i: int, n: int) -> dict[type[Collector], list[CommandResult]]:
    """Node i's raw outputs, in the collectors' formats."""
    ip = node_ip(i)
    pod = pod_subnet(i)
    prefix = 8 if i == SLASH8 else 16
    underlay_mtu = 9000 if i == JUMBO else 1500
    vtep = mac("6a:3e:2d", i if i != MAC_CHURN else 0xFFFFFF - i)

    eth0 = copy.deepcopy(t.links["eth0"])
    eth0.update(address=mac("52:54:00", i), mtu=underlay_mtu)
    eth0["addr_info"][0].update(local=ip, prefixlen=prefix)
    flannel = copy.deepcopy(t.links["flannel.1"])
    flannel.update(address=vtep, mtu=underlay_mtu - 50)
    flannel["linkinfo"]["info_data"]["local"] = ip
    flannel["addr_info"][0]["local"] = f"{pod}.0"
    cni0 = copy.deepcopy(t.links["cni0"])
    cni0["addr_info"][0]["local"] = f"{pod}.1"
    cni0.update(address=mac("a6:19:76", i))
    links = [t.links["lo"], eth0, flannel, cni0]
    for k in range(VETHS):
        veth = copy.deepcopy(t.veth)
        veth_mac = mac("86:ba:af", i * VETHS + k)
        veth.update(ifindex=10 + k, ifname=f"veth{i:04x}{k:04x}", address=veth_mac)
        links.append(veth)
    links = [links[0], *(with_link_local(link) for link in links[1:])]

    peers = [(i + k) % n for k in range(1, n) if (i + k) % n != i]
    routes = [
        t.route_default,
        {**t.route_connected, "dst": f"10.{10 if prefix == 16 else 0}.0.0/{prefix}"},
        {**t.route_cni, "dst": f"{pod}.0/24", "prefsrc": f"{pod}.1"},
    ]
    local = [{**r} for r in t.route_local]
    for r in local:
        for key in ("dst", "prefsrc"):
            r[key] = r[key].replace("10.10.0.2", ip).replace("10.42.0.", f"{pod}.")
    flannel_peers = peers[: ROUTES - len(routes) - len(local)]
    routes += [
        {**t.route_flannel, "dst": f"{pod_subnet(p)}.0/24", "gateway": f"{pod_subnet(p)}.0"}
        for p in flannel_peers
    ]
    routes += local

    vxlan_peers = peers[: (NEIGHBOURS - 1) // 2]
    neigh = [{**t.neigh_eth0, "dst": GATEWAY, "lladdr": "00:e0:4c:68:00:01"}]
    neigh += [
        {
            **t.neigh_eth0,
            "dst": node_ip(p),
            "lladdr": mac("52:54:00", p),
            "state": [STATES[(i + p) % 3]],
        }
        for p in peers[: NEIGHBOURS - 1 - len(vxlan_peers)]
    ]
    # peers keep the VtepMAC the churned node had before: its real one changed
    neigh += [
        {**t.neigh_flannel, "dst": f"{pod_subnet(p)}.0", "lladdr": mac("6a:3e:2d", p)}
        for p in vxlan_peers
    ]
    fdb = [{**t.fdb, "mac": mac("6a:3e:2d", p), "dst": node_ip(p)} for p in vxlan_peers]
    env = t.subnet_env.replace("10.42.0.0/16", POD_CIDR).replace("10.42.1.1/24", f"{pod}.1/24")
    role = "server" if i < CONTROL_PLANES else "agent"
    missing_ufw = "cat: /etc/ufw/ufw.conf: No such file or directory"
    iptables, nft = node_firewall(t, i)
    return {
        LinksCollector: [ok(compact(links))],
        RoutesCollector: [ok(compact(routes)), ok(t.routes6)],
        NeighboursCollector: [ok(compact(neigh))],
        FdbCollector: [ok(compact(fdb))],
        IptablesCollector: [ok(iptables), ok(""), ok(iptables), ok(""), ok(""), ok("")],
        NftablesCollector: [ok(nft)],
        UfwCollector: [failed(1, missing_ufw), failed(1, missing_ufw.replace("ufw/ufw.conf", "d"))],
        FirewalldCollector: [failed(127, "sh: 1: firewall-cmd: not found")],
        SysctlCollector: [ok(t.sysctls)],
        KernelCollector: [
            ok(text("kernel/uname.txt")),
            ok(text("kernel/cmdline.txt")),
            ok(text("kernel/paths-default.txt")),
            failed(1, text("kernel/modules-missing.stderr")),
        ],
        KubeProxyModeCollector: [ok(text("kernel/kube-proxy-none.txt"))],
        CniConfigCollector: [ok(text("cni/k3s-flannel.txt"))],
        CniBinCollector: [ok(text("cni/bin-k3s.txt"))],
        K3sConfigCollector: [ok(text(f"k3s/{role}.txt"))],
        NetworkManagerCollector: [
            failed(8, text("netmgr/nmcli-not-running.stderr")),
            ok(text("netmgr/nmconf-none.txt")),
            ok(text("netmgr/links-stock.txt")),
        ],
        EthtoolCollector: [ok(text("ethtool/flannel1-txcsum-off.txt"))],
        FlannelSubnetEnvCollector: [ok(env)],
    }


def kube_node(i: int) -> KubeNode:
    labels = {"node-role.kubernetes.io/control-plane": "true"} if i < CONTROL_PLANES else {}
    annotations = {
        "flannel.alpha.coreos.com/backend-type": "vxlan",
        "flannel.alpha.coreos.com/backend-data": json.dumps(
            {"VNI": 1, "VtepMAC": mac("6a:3e:2d", i)}
        ),
        "flannel.alpha.coreos.com/public-ip": node_ip(i),
        "flannel.alpha.coreos.com/kube-subnet-manager": "true",
    }
    return KubeNode.from_object(
        {
            "kind": "Node",
            "metadata": {"name": f"node-{i:04d}", "labels": labels, "annotations": annotations},
            "spec": {"podCIDR": f"{pod_subnet(i)}.0/24"},
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": node_ip(i)},
                    {"type": "Hostname", "address": f"node-{i:04d}"},
                ],
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }
    )


def build_snapshot(
    n: int,
) -> tuple[list[NodeCollection], list[Target], ClusterConfig, ClusterFacts]:
    t = Templates()
    collectors = collectors_for(all_rules())
    collections, targets = [], []
    for i in range(n):
        name = f"node-{i:04d}"
        outputs = node_outputs(t, i, n)
        results = {}
        for collector in collectors:
            # a collector this benchmark does not model (another CNI's CLI): not installed
            raw = outputs.get(collector) or [
                failed(127, f"sh: 1: {c.argv[0]}: not found") for c in collector.commands
            ]
            results[collector.name] = [
                r.model_copy(update={"argv": list(c.argv)})
                for r, c in zip(raw, collector.commands, strict=True)
            ]
        collections.append(
            NodeCollection(name=name, spec=f"ssh://{node_ip(i)}", collected=True, results=results)
        )
        role = "control-plane" if i < CONTROL_PLANES else "worker"
        targets.append(Target(name=name, spec=f"ssh://{node_ip(i)}", address=node_ip(i), role=role))
    cluster = ClusterConfig(
        name="bench", pod_cidr=POD_CIDR, service_cidr=SERVICE_CIDR, cni="flannel"
    )
    kube = ClusterFacts(reachable=True, nodes=[kube_node(i) for i in range(n)])
    return collections, targets, cluster, kube


def run_analysis(n: int, snapshot: tuple[Any, ...]) -> Report:
    collections, targets, cluster, kube = snapshot
    return analyse(collections, targets, cluster, all_rules(), kube)


#: the outputs that are JSON documents (`ip -j`, `bridge -j`, `nft -j`)
JSON_OUTPUTS = ("links", "routes", "neighbours", "vxlan_fdb", "nftables")


def decode_only(snapshot: tuple[Any, ...]) -> float:
    """Seconds to decode the snapshot's JSON outputs with orjson and split its iptables-save
    texts into lines: what any analysis of raw outputs pays before building one fact."""
    collections = snapshot[0]
    started = time.perf_counter()
    for collection in collections:
        for name in JSON_OUTPUTS:
            for result in collection.results[name]:
                if result.stdout.strip():
                    orjson.loads(result.stdout)
        for result in collection.results["iptables"]:
            result.stdout.splitlines()
    return time.perf_counter() - started


def child(n: int, repeat: int) -> dict[str, Any]:
    """One size, in this (fresh) process: timings (the first analysis of the process, whose
    parsers meet every text for the first time, and the best of all), the bare decoding of
    the same outputs, peak RSS, tracemalloc peak."""
    run_analysis(20, build_snapshot(20))  # imports and first-use caches, not timed
    snapshot = build_snapshot(n)
    times = []
    report = None
    for _ in range(repeat):
        report = None
        gc.collect()
        started = time.perf_counter()
        report = run_analysis(n, snapshot)
        times.append(time.perf_counter() - started)
    assert report is not None
    decode_s = min(decode_only(snapshot) for _ in range(repeat))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = None
    gc.collect()
    tracemalloc.start()
    report = run_analysis(n, snapshot)
    traced_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    ids: dict[str, int] = {}
    for finding in report.findings:
        ids[finding.id] = ids.get(finding.id, 0) + 1
    return {
        "nodes": n,
        "first_s": times[0],
        "best_s": min(times),
        "decode_s": decode_s,
        "times": times,
        "peak_rss_mb": rss_mb,
        "analysis_peak_mb": traced_mb,
        "findings": ids,
        "skipped": sum(len(s.rules_skipped) for s in report.nodes),
    }


def profile(n: int) -> None:
    import cProfile
    import pstats

    snapshot = build_snapshot(n)
    profiler = cProfile.Profile()
    profiler.enable()
    run_analysis(n, snapshot)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--profile", type=int, metavar="NODES")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.repeat)))
        return 0
    if args.profile:
        profile(args.profile)
        return 0
    rows = []
    for n in args.sizes:
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(n), "--repeat", str(args.repeat)],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(
        f"analysis of a synthetic snapshot (per node: {ROUTES} routes, {NEIGHBOURS} neighbours, "
        f"200 iptables rules; {len(all_rules())} rules; best of {args.repeat})"
    )
    print(
        f"{'nodes':>6} {'first s':>8} {'best s':>8} {'ms/node':>8} {'decode s':>9} "
        f"{'x decode':>9} {'peak RSS MB':>12} {'analysis MB':>12}"
    )
    for row in rows:
        print(
            f"{row['nodes']:>6} {row['first_s']:>8.2f} {row['best_s']:>8.2f} "
            f"{row['best_s'] * 1000 / row['nodes']:>8.3f} {row['decode_s']:>9.2f} "
            f"{row['best_s'] / row['decode_s']:>9.2f} "
            f"{row['peak_rss_mb']:>12.0f} {row['analysis_peak_mb']:>12.0f}"
        )
    print(
        "decode s: orjson of every JSON output (nft's included) and iptables-save split into "
        "lines, nothing built: what a plain parse of these raw outputs pays first"
    )
    print("findings at the largest size:", json.dumps(rows[-1]["findings"], sort_keys=True))
    first, last = rows[0], rows[-1]
    if last["nodes"] != first["nodes"]:
        size = last["nodes"] / first["nodes"]
        growth = last["best_s"] / first["best_s"]
        control = last["decode_s"] / first["decode_s"]
        print(
            f"growth {first['nodes']} -> {last['nodes']} nodes ({size:.0f}x the nodes): "
            f"{growth:.2f}x the time (linear = {size:.1f}x; the bare decoding: {control:.2f}x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
