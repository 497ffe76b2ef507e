"""Regenerate the golden captures of tests/data/{iptables,nft,ufw} (root, Linux).

Each scenario runs in a scratch network namespace (deleted afterwards, also on failure)
entered with a private mount namespace whose /etc/ufw, /etc/default/ufw and /run are
tmpfs/bind copies: `ufw enable` and `ufw allow` write only there, and ufw's sysctl file
is reduced to per-namespace `net/` keys, so the host's firewall, files and kernel
settings are never touched. The setup uses the real tools (ufw, iptables-nft,
iptables-legacy, nft); the captured commands are exactly the collectors' argv.

Usage: python tests/data/iptables/capture.py   (writes tests/data/{iptables,nft,ufw})
"""

# ruff: noqa: E501  (the rulesets below are verbatim iptables-save lines)

from __future__ import annotations

import shlex
import subprocess
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent
NETNS = "cnidoc-fwcap"

#: /etc/default/ufw as Debian ships it (incoming deny), pinned: host edits must not leak in
UFW_DEFAULTS = """IPV6=yes
DEFAULT_INPUT_POLICY="DROP"
DEFAULT_OUTPUT_POLICY="ACCEPT"
DEFAULT_FORWARD_POLICY="DROP"
DEFAULT_APPLICATION_POLICY="SKIP"
MANAGE_BUILTINS=no
IPT_SYSCTL=/etc/ufw/sysctl.conf
IPT_MODULES=""
"""

#: what a Docker daemon installs (iptables-nft backend), FORWARD policy DROP
DOCKER = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
"""

#: flanneld's forward chain: what makes the Docker FORWARD DROP harmless for pods
FLANNEL_FORWARD = """*filter
:FLANNEL-FWD - [0:0]
-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-A FLANNEL-FWD -s 10.42.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
-A FLANNEL-FWD -d 10.42.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
COMMIT
"""

#: kube-proxy (iptables mode) filter chains and flannel's chains on a healthy flannel node
KUBE_PROXY_FLANNEL = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:FLANNEL-FWD - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A INPUT -j KUBE-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FLANNEL-FWD -s 10.42.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
-A FLANNEL-FWD -d 10.42.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
COMMIT
"""
KUBE_PROXY_EXTRA_CHAINS = """*filter
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
COMMIT
"""

#: calico's and cilium's leftovers next to flannel's chains (a CNI switch without cleanup)
STALE_CNI = """*filter
:cali-INPUT - [0:0]
:cali-FORWARD - [0:0]
:cali-from-host-endpoint - [0:0]
:CILIUM_INPUT - [0:0]
:CILIUM_FORWARD - [0:0]
:FLANNEL-FWD - [0:0]
-A INPUT -m comment --comment "cali:Cz_u1IQiXIMmKD4c" -j cali-INPUT
-A INPUT -m comment --comment "cilium-feeder: CILIUM_INPUT" -j CILIUM_INPUT
-A FORWARD -m comment --comment "cali:wUHhoiAYhphO9Mso" -j cali-FORWARD
-A FORWARD -m comment --comment "cilium-feeder: CILIUM_FORWARD" -j CILIUM_FORWARD
-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-A cali-INPUT -m comment --comment "cali:msRIDfJRWnYwzW4g" -m mark --mark 0x10000/0x10000 -j ACCEPT
-A cali-INPUT -m comment --comment "cali:mA3BtE7nT1v4RbVL" -j cali-from-host-endpoint
-A CILIUM_INPUT -m mark --mark 0x200/0xf00 -m comment --comment "cilium: ACCEPT for proxy traffic" -j ACCEPT
-A CILIUM_FORWARD -o cilium_host -m comment --comment "cilium: any->cluster on cilium_host forward accept" -j ACCEPT
-A FLANNEL-FWD -s 10.42.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
COMMIT
"""

#: an old kube-proxy's rules left in the legacy backend of a node now on iptables-nft
LEGACY_LEFTOVER = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FIREWALL - [0:0]
-A INPUT -j KUBE-FIREWALL
-A KUBE-FIREWALL -m comment --comment "kubernetes firewall for dropping marked packets" -m mark --mark 0x8000/0x8000 -j DROP
COMMIT
"""

#: a hand-written native nftables firewall: policy drop, cluster TCP ports open, VXLAN not
NFT_NATIVE = """table inet filter {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state vmap { established : accept, related : accept, invalid : drop }
    iifname "lo" accept
    meta l4proto icmp accept
    tcp dport 22 accept
    tcp dport { 6443, 10250 } accept
    counter comment "dropped by policy"
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
  }
}
"""

#: native nftables with a named set, a jump and a port range: everything the cluster needs
NFT_JUMP = """table inet host {
  set peers {
    type ipv4_addr; flags interval;
    elements = { 10.0.0.0/24, 192.168.1.0/24 }
  }
  chain input {
    type filter hook input priority 0; policy drop;
    ct state established,related accept
    iif lo accept
    ip saddr @peers jump cluster
    log prefix "host-drop: " drop
  }
  chain cluster {
    tcp dport { 2379-2380, 6443 } accept
    tcp dport 10250 accept
    udp dport 8472 accept
    return
  }
}
"""

#: what firewalld leaves in nftables (its own table, reject at the end of its zone chain)
NFT_FIREWALLD_LIKE = """table inet firewalld {
  chain filter_INPUT {
    type filter hook input priority filter + 10; policy accept;
    ct state { established, related } accept
    ct status dnat accept
    iifname "lo" accept
    jump filter_INPUT_ZONES
    ct state invalid drop
    reject with icmpx admin-prohibited
  }
  chain filter_INPUT_ZONES {
    goto filter_IN_public
  }
  chain filter_IN_public {
    tcp dport 22 accept
    meta l4proto { icmp, ipv6-icmp } accept
  }
}
"""


def _ufw_setup(seed: Path, default_file: Path) -> str:
    """Private ufw state: tmpfs /etc/ufw with a seed copy, pinned defaults, private /run."""
    return "\n".join(
        [
            "set -e",
            "mount -t tmpfs -o mode=0755,size=4m cnd-fwcap-ufw /etc/ufw",
            f"cp -a {shlex.quote(str(seed))}/. /etc/ufw/",
            f"mount --bind {shlex.quote(str(default_file))} /etc/default/ufw",
            "mount -t tmpfs -o mode=0755,size=4m cnd-fwcap-run /run",
        ]
    )


def _restore(text: str, tool: str = "iptables-nft-restore") -> str:
    return f"{tool} --noflush <<'EOF'\n{text}EOF"


def _nft(text: str) -> str:
    return f"nft -f - <<'EOF'\n{text}EOF"


#: scenario name -> setup commands (sh), run inside the namespace before the captures
SCENARIOS: dict[str, list[str]] = {
    "empty": [],
    "ufw-enabled": ["ufw --force enable >/dev/null"],
    "ufw-allow-cluster": [
        "ufw --force enable >/dev/null",
        "ufw allow 6443/tcp >/dev/null",
        "ufw allow 10250/tcp >/dev/null",
        "ufw allow 8472/udp >/dev/null",
    ],
    "ufw-allow-from-subnet": [
        "ufw --force enable >/dev/null",
        "ufw allow from 192.168.1.0/24 to any port 10250 proto tcp >/dev/null",
        "ufw limit 6443/tcp >/dev/null",
    ],
    "docker-forward-drop": [_restore(DOCKER)],
    "docker-forward-drop-flannel": [_restore(DOCKER), _restore(FLANNEL_FORWARD)],
    "kube-proxy-flannel": [_restore(KUBE_PROXY_EXTRA_CHAINS), _restore(KUBE_PROXY_FLANNEL)],
    "stale-cni": [_restore(STALE_CNI)],
    "both-backends": [
        _restore(KUBE_PROXY_EXTRA_CHAINS),
        _restore(KUBE_PROXY_FLANNEL),
        _restore(LEGACY_LEFTOVER, "iptables-legacy-restore"),
    ],
    "nft-native-drop": [_nft(NFT_NATIVE)],
    "nft-native-jump": [_nft(NFT_JUMP)],
    "nft-firewalld-like": [_nft(NFT_FIREWALLD_LIKE)],
}

#: capture name -> argv (the collectors' commands)
CAPTURES: dict[str, tuple[str, ...]] = {
    "nft-save": ("iptables-nft-save",),
    "legacy-save": ("iptables-legacy-save",),
    "nft-save6": ("ip6tables-nft-save",),
    "legacy-save6": ("ip6tables-legacy-save",),
    "nft-json": ("nft", "-j", "list", "ruleset"),
    "ufw-conf": ("cat", "/etc/ufw/ufw.conf"),
    "default-ufw": ("cat", "/etc/default/ufw"),
}


def _net_only_sysctl(text: str) -> str:
    """ufw applies its sysctl.conf on enable: keep only per-namespace `net/` keys."""
    keep = [
        line
        for line in text.splitlines()
        if not line.strip() or line.lstrip().startswith(("#", "net/", "net."))
    ]
    return "\n".join(keep) + "\n"


def _seed(scratch: Path) -> tuple[Path, Path]:
    seed = scratch / "ufw-seed"
    seed.mkdir()
    for path in sorted(Path("/etc/ufw").rglob("*")):
        if path.is_file() and not path.is_symlink():
            target = seed / path.relative_to("/etc/ufw")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    for path in Path("/usr/share/ufw").glob("*.rules"):  # pristine package rules
        (seed / path.name).write_bytes(path.read_bytes())
    pristine_conf = Path("/usr/share/ufw/ufw.conf")
    if pristine_conf.is_file():
        (seed / "ufw.conf").write_bytes(pristine_conf.read_bytes())
    sysctl = seed / "sysctl.conf"
    if sysctl.exists():
        sysctl.write_text(_net_only_sysctl(sysctl.read_text()))
    for script in ("before.init", "after.init"):
        if (seed / script).exists():
            (seed / script).chmod(0o750)
    default = scratch / "default-ufw"
    default.write_text(UFW_DEFAULTS)
    return seed, default


def capture(name: str, setup: list[str], scratch: Path, seed: Path, default: Path) -> None:
    out = scratch / name
    out.mkdir()
    lines = [_ufw_setup(seed, default), *setup, "set +e"]
    for capture_name, argv in CAPTURES.items():
        o = shlex.quote(str(out / capture_name))
        lines.append(f"{shlex.join(argv)} >{o}.out 2>{o}.err; echo $? >{o}.rc")
    script = "\n".join(lines) + "\n"
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    try:
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                NETNS,
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
            ],
            check=True,
        )
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], check=True)
    for capture_name in CAPTURES:
        rc = (out / f"{capture_name}.rc").read_text().strip()
        text = (out / f"{capture_name}.out").read_text()
        if rc != "0":
            raise SystemExit(
                f"{name}: {capture_name} failed ({rc}): {(out / f'{capture_name}.err').read_text()}"
            )
        if capture_name == "nft-json":
            (DATA / "nft" / f"{name}.json").write_text(text)
        elif capture_name in ("ufw-conf", "default-ufw"):
            if name.startswith(("ufw", "empty")):
                (DATA / "ufw" / f"{name}.{capture_name}.txt").write_text(text)
        else:
            (DATA / "iptables" / f"{name}.{capture_name}.txt").write_text(text)
        stderr = (out / f"{capture_name}.err").read_text()
        if stderr.strip():
            (DATA / "iptables" / f"{name}.{capture_name}.stderr").write_text(stderr)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cnidoc-fwcap-") as tmp:
        scratch = Path(tmp)
        seed, default = _seed(scratch)
        for name, setup in SCENARIOS.items():
            capture(name, setup, scratch, seed, default)
            print(f"captured {name}")


if __name__ == "__main__":
    main()
