"""What a node's private files hold: flannel's CNI config and subnet.env, stand-in plugins, ufw.

Contents follow the real tools' formats (kube-flannel.yml's cni-conf.json, flanneld's
subnet.env writer, flanneld's iptables chains, Debian's ufw defaults) so the collectors
parse the lab exactly as they parse a real node.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Mapping

from cnidoctor.lab.model import NodeSpec

#: kube-flannel.yml's cni-conf.json, as flannel's install-cni init container writes it
FLANNEL_CONFLIST: dict[str, object] = {
    "name": "cbr0",
    "cniVersion": "0.3.1",
    "plugins": [
        {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}

#: a stand-in CNI plugin: answers VERSION like a real one, refuses real work
PLUGIN_SCRIPT = """#!/bin/sh
# cnidoctor lab stand-in for the {name} CNI plugin: it answers VERSION and nothing else.
if [ "$CNI_COMMAND" = VERSION ]; then
  echo '{{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}}'
  exit 0
fi
echo '{{"code":999,"msg":"cnidoctor lab: {name} is a stand-in plugin"}}'
exit 1
"""

#: /etc/default/ufw as Debian ships it (incoming deny), pinned so host edits do not leak in
UFW_DEFAULTS = """# /etc/default/ufw (cnidoctor lab node: Debian defaults)
IPV6=yes
DEFAULT_INPUT_POLICY="DROP"
DEFAULT_OUTPUT_POLICY="ACCEPT"
DEFAULT_FORWARD_POLICY="DROP"
DEFAULT_APPLICATION_POLICY="SKIP"
MANAGE_BUILTINS=no
IPT_SYSCTL=/etc/ufw/sysctl.conf
IPT_MODULES=""
"""

#: ufw files taken from the package's pristine copies when /usr/share/ufw has them
UFW_PRISTINE = (
    "after.init",
    "after.rules",
    "after6.rules",
    "before.init",
    "before.rules",
    "before6.rules",
    "ufw.conf",
    "user.rules",
    "user6.rules",
)


def subnet_env(node: NodeSpec, pod_cidr: str) -> str:
    """/run/flannel/subnet.env as flanneld writes it (FLANNEL_SUBNET = cni0's address)."""
    return (
        f"FLANNEL_NETWORK={pod_cidr}\n"
        f"FLANNEL_SUBNET={node.cni0_address}\n"
        f"FLANNEL_MTU={node.flannel_mtu}\n"
        f"FLANNEL_IPMASQ={'true' if node.ip_masq else 'false'}\n"
    )


def flannel_rules(node: NodeSpec, pod_cidr: str) -> str:
    """flanneld's masquerade and forward chains, as iptables-restore --noflush input."""
    net, sub = pod_cidr, node.pod_subnet
    masq = '-m comment --comment "flanneld masq"'
    fwd = '-m comment --comment "flanneld forward"'
    # flanneld --ip-masq=false installs no nat chain at all
    nat = [
        "*nat",
        ":FLANNEL-POSTRTG - [0:0]",
        f"-A POSTROUTING {masq} -j FLANNEL-POSTRTG",
        f"-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 {masq} -j RETURN",
        f"-A FLANNEL-POSTRTG -s {sub} -d {net} {masq} -j RETURN",
        f"-A FLANNEL-POSTRTG -s {net} -d {sub} {masq} -j RETURN",
        f"-A FLANNEL-POSTRTG ! -s {net} -d {sub} {masq} -j RETURN",
        f"-A FLANNEL-POSTRTG -s {net} ! -d 224.0.0.0/4 {masq} -j MASQUERADE --random-fully",
        f"-A FLANNEL-POSTRTG ! -s {net} -d {net} {masq} -j MASQUERADE --random-fully",
        "COMMIT",
    ]
    return "\n".join(
        [
            *(nat if node.ip_masq else []),
            "*filter",
            ":FLANNEL-FWD - [0:0]",
            f"-A FORWARD {fwd} -j FLANNEL-FWD",
            f"-A FLANNEL-FWD -s {net} {fwd} -j ACCEPT",
            f"-A FLANNEL-FWD -d {net} {fwd} -j ACCEPT",
            "COMMIT",
            "",
        ]
    )


def net_only_sysctl(text: str) -> str:
    """Keep only `net/...` lines of ufw's sysctl.conf: those are per network namespace.

    ufw applies this file on enable; any other key would change the host's kernel.
    """
    kept = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith(("net/", "net.")):
            kept.append(line)
    return "\n".join(kept) + "\n"


def without_module(proc_modules: str, module: str) -> str:
    """/proc/modules minus one module's line: what lsmod shows where it is not loaded."""
    lines = [ln for ln in proc_modules.splitlines() if ln.split(" ", 1)[0] != module]
    return "\n".join(lines) + ("\n" if lines else "")


def tar_stream(files: Mapping[str, tuple[str, int]]) -> bytes:
    """A tar archive of {relative path: (text, mode)}, owned by root, to extract in a node.

    Only file members: extracting must never change the modes of existing directories.
    """
    buffer = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for path, (text, mode) in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), mode, now
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def conflist_text() -> str:
    return json.dumps(FLANNEL_CONFLIST, indent=2) + "\n"


#: /usr/local/sbin/modprobe in a node whose br_netfilter is masked (first on the transport's
#: PATH): the real fix command, `modprobe br_netfilter`, lifts the node's mask; it never loads
#: anything into the host's kernel
MODPROBE_SHIM = r"""#!/bin/sh
# cnidoctor lab: modprobe inside a lab node. "br_netfilter not loaded" is a mask over
# /proc/sys/net/bridge and /proc/modules in this node's own mount namespace; loading it lifts
# the mask for this node only. Other modules would load into the host's kernel: refused.
mounted() { awk -v m="$1" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo; }
status=0
for arg in "$@"; do
  case "$arg" in
    -r|--remove) echo "modprobe (cnidoctor lab): unloading is not simulated" >&2; exit 1 ;;
    -*) ;;
    br_netfilter)
      for m in /proc/sys/net/bridge /proc/modules; do
        if mounted "$m"; then umount "$m" || status=1; fi
      done
      if [ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
        echo "modprobe: FATAL: Module br_netfilter not found (not loaded on the lab host)" >&2
        status=1
      fi ;;
    *) echo "modprobe (cnidoctor lab): not loading $arg into the host's kernel" >&2; status=1 ;;
  esac
done
exit $status
"""
