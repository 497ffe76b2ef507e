"""Capture a busy kube-proxy node's ruleset (200 iptables rules) in a scratch netns.

What kube-proxy (iptables mode) and flannel install for 21 ClusterIP services with two
endpoints each, plus 3 services without endpoints (REJECT rules in filter KUBE-SERVICES,
which FORWARD walks): loaded with iptables-nft-restore into a scratch network namespace
(deleted afterwards, also on failure), then read back with the collectors' own commands.
Used by bench/bench_analysis.py as the per-node firewall of its synthetic cluster.

Usage (root): python tests/data/iptables/capture_kube_proxy.py
Writes tests/data/iptables/kube-proxy-services.nft-save.txt and
tests/data/nft/kube-proxy-services.json.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent
NETNS = "cdxn-iptcap"
SERVICES = 21
WITHOUT_ENDPOINTS = 3


def _chain(kind: str, name: str) -> str:
    """kube-proxy's chain names: a hash of the service (or endpoint), base32-ish."""
    digest = hashlib.sha256(name.encode()).hexdigest().upper()
    return f"KUBE-{kind}-{digest[:16]}"


def ruleset() -> str:
    nat = [
        "*nat",
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        ":KUBE-MARK-MASQ - [0:0]",
        ":KUBE-NODEPORTS - [0:0]",
        ":KUBE-POSTROUTING - [0:0]",
        ":KUBE-SERVICES - [0:0]",
        ":FLANNEL-POSTRTG - [0:0]",
    ]
    rules = [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
        "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
        "-j MASQUERADE --random-fully",
        '-A FLANNEL-POSTRTG -s 10.42.0.0/16 -d 10.42.0.0/16 -m comment --comment "flanneld masq"'
        " -j RETURN",
        '-A FLANNEL-POSTRTG -s 10.42.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq"'
        " -j MASQUERADE --random-fully",
    ]
    for index in range(SERVICES):
        name = f"apps/svc-{index}:http"
        ip = f"10.43.{index // 200}.{10 + index % 200}"
        svc = _chain("SVC", name)
        nat.append(f":{svc} - [0:0]")
        rules.append(
            f'-A KUBE-SERVICES -d {ip}/32 -p tcp -m comment --comment "{name} cluster IP" '
            f"-m tcp --dport 80 -j {svc}"
        )
        rules.append(
            f'-A {svc} ! -s 10.42.0.0/16 -d {ip}/32 -p tcp -m comment --comment "{name} cluster '
            'IP" -m tcp --dport 80 -j KUBE-MARK-MASQ'
        )
        endpoints = [f"10.42.{(index + k) % 250}.{2 + index % 200}" for k in range(2)]
        for k, endpoint in enumerate(endpoints):
            sep = _chain("SEP", f"{name}-{endpoint}")
            nat.append(f":{sep} - [0:0]")
            probability = (
                " -m statistic --mode random --probability 0.50000000000" if k == 0 else ""
            )
            rules.append(
                f'-A {svc} -m comment --comment "{name} -> {endpoint}:8080"{probability} -j {sep}'
            )
            rules.append(
                f'-A {sep} -s {endpoint}/32 -m comment --comment "{name}" -j KUBE-MARK-MASQ'
            )
            rules.append(
                f'-A {sep} -p tcp -m comment --comment "{name}" -m tcp -j DNAT '
                f"--to-destination {endpoint}:8080"
            )
    rules.append(
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be '
        'the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS'
    )
    filter_ = [
        "*filter",
        ":INPUT ACCEPT [0:0]",
        ":FORWARD ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":FLANNEL-FWD - [0:0]",
        ":KUBE-EXTERNAL-SERVICES - [0:0]",
        ":KUBE-FIREWALL - [0:0]",
        ":KUBE-FORWARD - [0:0]",
        ":KUBE-NODEPORTS - [0:0]",
        ":KUBE-PROXY-FIREWALL - [0:0]",
        ":KUBE-SERVICES - [0:0]",
        '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer '
        'firewall" -j KUBE-PROXY-FIREWALL',
        '-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
        '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible '
        'service portals" -j KUBE-EXTERNAL-SERVICES',
        "-A INPUT -j KUBE-FIREWALL",
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer '
        'firewall" -j KUBE-PROXY-FIREWALL',
        '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals"'
        " -j KUBE-SERVICES",
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible'
        ' service portals" -j KUBE-EXTERNAL-SERVICES',
        '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
        '-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer '
        'firewall" -j KUBE-PROXY-FIREWALL',
        '-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" '
        "-j KUBE-SERVICES",
        "-A OUTPUT -j KUBE-FIREWALL",
        '-A FLANNEL-FWD -s 10.42.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
        '-A FLANNEL-FWD -d 10.42.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
        '-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming '
        'localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark '
        "0x4000/0x4000 -j ACCEPT",
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack'
        " --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    for index in range(WITHOUT_ENDPOINTS):
        name = f"apps/idle-{index}:http"
        filter_.append(
            f"-A KUBE-SERVICES -d 10.43.1.{index + 1}/32 -p tcp -m comment --comment "
            f'"{name} has no endpoints" -m tcp --dport 80 -j REJECT --reject-with '
            "icmp-port-unreachable"
        )
    return "\n".join([*nat, *rules, "COMMIT", *filter_, "COMMIT", ""])


def run(*argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", NETNS, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def main() -> None:
    subprocess.run(["ip", "netns", "add", NETNS], check=True, timeout=10)
    try:
        run("iptables-nft-restore", stdin=ruleset())
        saved = run("iptables-nft-save")
        nft = run("nft", "-j", "list", "ruleset")
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], check=False, timeout=10)
    (DATA / "iptables" / "kube-proxy-services.nft-save.txt").write_text(saved)
    (DATA / "nft" / "kube-proxy-services.json").write_text(nft)
    rules = sum(1 for line in saved.splitlines() if line.startswith("-A "))
    print(f"captured {rules} iptables rules")


if __name__ == "__main__":
    main()
