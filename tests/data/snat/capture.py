"""Regenerate the golden captures of tests/data/snat (root, Linux): pod egress NAT rulesets.

Each case runs in a scratch network namespace (deleted afterwards, also on failure) with
two uplinks shaped like incident 003's nodes (ens19 10.50.10.11/24 with the preferred
default route, ens18 192.168.178.11/24 with a second one; veth pairs, no traffic) and a
cni0 bridge with the node's pod subnet; the ruleset is loaded with the real tools
(iptables-nft-restore, nft -f) and captured with exactly the collectors' argv. Nothing in
the host's own namespace is touched.

Usage: python tests/data/snat/capture.py   (writes tests/data/snat/*)
"""

# ruff: noqa: E501  (the rulesets below are verbatim iptables-save / nft lines)

from __future__ import annotations

import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
NETNS = "cnidoc-snatcap"

#: flanneld's own masquerade (k3s default): the pod CIDR to anything but multicast, any NIC
FLANNEL_MASQ = """*nat
:FLANNEL-POSTRTG - [0:0]
-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.42.1.0/24 -d 10.42.0.0/16 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.42.0.0/16 -d 10.42.1.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG ! -s 10.42.0.0/16 -d 10.42.1.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.42.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
-A FLANNEL-POSTRTG ! -s 10.42.0.0/16 -d 10.42.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
COMMIT
"""

#: kube-proxy's nat chains: it masquerades only what it marked (service hairpin, NodePort)
KUBE_PROXY_NAT = """*nat
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SERVICES -d 10.43.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j DNAT --to-destination 10.42.1.3:53
COMMIT
"""


def _masq_on(iface: str) -> str:
    return f"""*nat
-A POSTROUTING -s 10.42.0.0/16 ! -d 10.42.0.0/16 -o {iface} -m comment --comment "pod egress masquerade" -j MASQUERADE
COMMIT
"""


NFT_MASQ_ENS19 = """table ip podnat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 10.42.0.0/16 ip daddr != 10.42.0.0/16 oifname "ens19" counter masquerade
  }
}
"""

#: a native nft nat table that masquerades only a Docker bridge's network
NFT_DOCKER_ONLY = """table inet hostnat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 172.17.0.0/16 oifname != "docker0" masquerade
  }
}
"""

#: case -> (iptables-nft-restore input, nft -f input)
CASES: dict[str, tuple[str, str]] = {
    "flannel-masq": (KUBE_PROXY_NAT + FLANNEL_MASQ, ""),
    "masq-ens19": (KUBE_PROXY_NAT + _masq_on("ens19"), ""),
    "masq-ens18-only": (KUBE_PROXY_NAT + _masq_on("ens18"), ""),
    "no-masq": (KUBE_PROXY_NAT, ""),
    "nft-masq-ens19": ("", NFT_MASQ_ENS19),
    "nft-docker-only": ("", NFT_DOCKER_ONLY),
}


def run(*argv: str, data: str | None = None) -> str:
    done = subprocess.run(argv, input=data, capture_output=True, text=True, timeout=20, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def inside(*argv: str, data: str | None = None) -> str:
    return run("ip", "netns", "exec", NETNS, *argv, data=data)


def build() -> None:
    run("ip", "netns", "add", NETNS)
    ip = ("ip", "-n", NETNS)
    run(*ip, "link", "set", "lo", "up")
    for name, addr, gateway, metric in (
        ("ens19", "10.50.10.11/24", "10.50.10.1", "100"),
        ("ens18", "192.168.178.11/24", "192.168.178.1", "200"),
    ):
        # a veth pair inside the namespace (no dummy module everywhere): the peer has no address
        run(*ip, "link", "add", name, "type", "veth", "peer", "name", f"{name}-peer")
        run(*ip, "addr", "add", addr, "dev", name)
        run(*ip, "link", "set", f"{name}-peer", "up")
        run(*ip, "link", "set", name, "up")
        run(*ip, "route", "add", "default", "via", gateway, "dev", name, "metric", metric)
    run(*ip, "link", "add", "cni0", "type", "bridge")
    run(*ip, "addr", "add", "10.42.1.1/24", "dev", "cni0")
    run(*ip, "link", "set", "cni0", "up")


def main() -> None:
    try:
        build()
        (HERE / "two-uplinks.addr.json").write_text(inside("ip", "-j", "-d", "addr", "show"))
        (HERE / "two-uplinks.route4.json").write_text(
            inside("ip", "-4", "-j", "route", "show", "table", "all")
        )
        (HERE / "two-uplinks.route6.json").write_text(
            inside("ip", "-6", "-j", "route", "show", "table", "all")
        )
        for case, (ipt, nft) in CASES.items():
            inside("iptables-nft", "-t", "nat", "-F")
            inside("iptables-nft", "-t", "nat", "-X")
            inside("nft", "flush", "ruleset")
            if ipt:
                inside("iptables-nft-restore", "--noflush", data=ipt)
            if nft:
                inside("nft", "-f", "-", data=nft)
            (HERE / f"{case}.nft-save.txt").write_text(inside("iptables-nft-save"))
            (HERE / f"{case}.nft.json").write_text(inside("nft", "-j", "list", "ruleset"))
            print(case)
    finally:
        subprocess.run(["ip", "netns", "delete", NETNS], capture_output=True, check=False)


if __name__ == "__main__":
    main()
