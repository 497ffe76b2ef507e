"""CNI files and devices on one node: missing plugins or config, competing configs, leftovers.

The container runtime loads the lexically first config of one conf dir and runs the
plugins it names from one bin dir; k3s's containerd uses its own pair of directories.
These rules compare that with what is installed and with the devices that exist.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Iterator

from cnidoctor.analysis.cni_detect import cni_in_use, cnis_from_devices, device_owner
from cnidoctor.collectors.cni import CniBinCollector, CniConfigCollector
from cnidoctor.collectors.flannel import FlannelSubnetEnvCollector
from cnidoctor.collectors.k3s import K3sConfigCollector
from cnidoctor.collectors.network import LinksCollector
from cnidoctor.facts.base import FactStatus
from cnidoctor.facts.cni import (
    ETC_CNI_DIR,
    K3S_CNI_DIR,
    CniBins,
    CniConfig,
    CniConfigFile,
)
from cnidoctor.facts.k3s import K3sConfig
from cnidoctor.facts.network import Link, Links
from cnidoctor.models import Severity
from cnidoctor.rules.base import Hit, NodeContext, Rule

#: the plugins k3s unpacks into its data dir (one multicall `cni` binary and symlinks)
K3S_BUNDLED = frozenset(
    {"bandwidth", "bridge", "firewall", "flannel", "host-local", "loopback", "portmap"}
)
#: github.com/containernetworking/plugins
REFERENCE_PLUGINS = frozenset(
    {
        "bandwidth",
        "bridge",
        "dhcp",
        "dummy",
        "firewall",
        "host-device",
        "host-local",
        "ipvlan",
        "loopback",
        "macvlan",
        "portmap",
        "ptp",
        "sbr",
        "static",
        "tap",
        "tuning",
        "vlan",
        "vrf",
    }
)
_SHOWN = 12


def _names(names: list[str]) -> str:
    shown = sorted(names)
    more = f", ... ({len(shown) - _SHOWN} more)" if len(shown) > _SHOWN else ""
    return ", ".join(shown[:_SHOWN]) + more


def _describe_bin_dir(bins: CniBins, path: str) -> str:
    found = bins.dir(path)
    if found is None:
        return f"{path} (which does not exist)"
    if not found.plugins:
        empty = not found.not_executable
        return f"{path} (which is empty)" if empty else f"{path} (no executables)"
    return f"{path} (has: {_names(found.plugins)})"


def _on_node(node: NodeContext) -> str:
    return f"--field-selector spec.nodeName={shlex.quote(node.name)}"


class CniBinariesMissing(Rule):
    id = "cni.binaries-missing"
    severity = Severity.CRITICAL
    title = "a plugin named by the active CNI config is not in the CNI bin dir"
    explanation = (
        "The container runtime runs every plugin of the config it loads, looked up by name "
        "in its CNI bin dir (/opt/cni/bin, or k3s's data dir). When one is missing, every pod "
        'sandbox on the node fails with "failed to find plugin" and pods stay '
        "ContainerCreating, while the node itself may still report Ready."
    )
    needs = (CniConfigCollector, CniBinCollector)
    fix = ("reinstall the CNI plugins into the bin dir the runtime uses",)
    causes = ("node.ready-but-cni-broken",)

    def check(self, node: NodeContext) -> Iterator[Hit]:
        config: CniConfig = node.fact(CniConfigCollector)
        active = config.active
        if active is None or not active.loadable:
            return  # cni.config-missing reports that
        envelope = node.fact_envelope(CniBinCollector)
        if envelope is not None and envelope.status is FactStatus.ABSENT:
            bins = CniBins(dirs=[])  # no bin dir at all: everything is missing
        else:
            bins = node.fact(CniBinCollector)
        dirs = bins.runtime_dirs(config.is_k3s)
        available: set[str] = set()
        for path in dirs:
            found = bins.dir(path)
            available |= set(found.plugins) if found is not None else set()
        missing = [(b, why) for b, why in active.referenced_binaries() if b not in available]
        if not missing:
            return
        where = " nor ".join(_describe_bin_dir(bins, p) for p in dirs)
        evidence = [f"{why} referenced by {active.path} is not in {where}" for _, why in missing]
        fixes: list[str] = []
        for name, _ in missing:
            for other in bins.dirs:
                full = f"{other.path}/{name}"
                if other.path in dirs and name in other.not_executable:
                    evidence.append(f"{full} exists but is not executable")
                    fixes.append(f"chmod 755 {shlex.quote(full)}")
                elif other.path not in dirs and name in other.plugins:
                    evidence.append(f"{full} exists, but the runtime does not search {other.path}")
        names = {name for name, _ in missing}
        fixes += _install_fixes(node, names, config, bins, dirs)
        yield Hit(evidence=evidence, fix=fixes)


def _install_fixes(
    node: NodeContext, names: set[str], config: CniConfig, bins: CniBins, dirs: list[str]
) -> list[str]:
    fixes: list[str] = []
    target = dirs[0]
    if config.is_k3s and names & K3S_BUNDLED:
        current = bins.dir(f"{target}")
        data = current.link_target if current is not None and current.link_target else None
        fixes.append(
            "systemctl restart k3s (k3s-agent on agents): k3s unpacks its bundled plugins "
            f"({', '.join(sorted(K3S_BUNDLED))}) into {target}"
        )
        aside = shlex.quote(data) if data else "/var/lib/rancher/k3s/data/<hash>"
        fixes.append(
            "if they are still missing, k3s skips an existing data dir: stop k3s, "
            f"mv {aside} {aside}.broken, start k3s to unpack it again"
        )
        names = names - K3S_BUNDLED
    standard = names & REFERENCE_PLUGINS
    if standard:
        fixes.append(
            f"install the reference CNI plugins ({', '.join(sorted(standard))}) into {target}: "
            "the containernetworking-plugins package (check where your distribution puts "
            "them: Debian uses /usr/lib/cni) or cni-plugins-linux-<arch>-<version>.tgz from "
            f"github.com/containernetworking/plugins/releases unpacked into {target}"
        )
    on_node = _on_node(node)
    if "flannel" in names:
        fixes.append(
            "install the flannel plugin: the kube-flannel DaemonSet's install-cni-plugin init "
            f"container copies it on start (kubectl -n kube-flannel delete pod -l app=flannel "
            f"{on_node}), or put flannel-<arch> from github.com/flannel-io/cni-plugin/releases "
            f"at {target}/flannel"
        )
    if names & {"calico", "calico-ipam"}:
        fixes.append(
            "restart calico-node on this node, its install-cni init container copies calico "
            f"and calico-ipam: kubectl -n calico-system delete pod -l k8s-app=calico-node "
            f"{on_node} (namespace kube-system for manifest installs)"
        )
    if "cilium-cni" in names:
        fixes.append(
            f"restart the cilium agent on this node, it installs cilium-cni: kubectl -n "
            f"kube-system delete pod -l k8s-app=cilium {on_node}"
        )
    rest = names - REFERENCE_PLUGINS - {"flannel", "calico", "calico-ipam", "cilium-cni"}
    for name in sorted(rest):
        fixes.append(f"install the {name} plugin binary into {target} (it ships with its CNI)")
    if config.is_k3s and names - K3S_BUNDLED:
        fixes.append(
            f"on k3s, a CNI other than flannel must install into {target} and "
            f"{K3S_CNI_DIR} (cilium: cni.binPath and cni.confPath)"
        )
    return fixes


def _expected_cni(
    node: NodeContext, k3s: K3sConfig | None, links: Links | None
) -> tuple[bool, str | None, str]:
    """(meant to run a CNI, which one if known, why we think so)."""
    if node.cluster.cni != "auto":
        return True, node.cluster.cni, f"the cluster's CNI is {node.cluster.cni}"
    if k3s is not None:
        if k3s.flannel_enabled:
            backend = k3s.describe("flannel-backend")
            return True, "flannel", f"k3s runs its embedded flannel ({backend})"
        return True, None, "k3s is installed with flannel-backend=none: another CNI must provide it"
    found = cnis_from_devices(links)
    if found:
        return True, found[0] if len(found) == 1 else None, f"devices of {', '.join(found)} exist"
    return False, None, ""


class CniConfigMissing(Rule):
    id = "cni.config-missing"
    severity = Severity.CRITICAL
    title = "no usable CNI config in the conf dir the runtime reads"
    explanation = (
        "Without a loadable config in its conf dir the container runtime reports the network "
        'as not ready ("cni config uninitialized"): the node goes NotReady and no pod gets '
        "a network. The CNI writes this file when its agent starts, so an empty dir usually "
        "means the agent never ran here, or wrote into another directory."
    )
    needs = (CniConfigCollector, K3sConfigCollector, LinksCollector)
    fix = ("restart the CNI's agent on this node; it writes its config at start",)
    causes = ("node.ready-but-cni-broken",)

    def check(self, node: NodeContext) -> Iterator[Hit]:
        envelope = node.fact_envelope(CniConfigCollector)
        if envelope is None or envelope.status is not FactStatus.ABSENT:
            config: CniConfig | None = node.fact(CniConfigCollector)
        else:
            config = None
        k3s = node.fact_or_none(K3sConfigCollector)
        meant, expected, why = _expected_cni(node, k3s, node.fact_or_none(LinksCollector))
        if not meant:
            return
        title = None
        if config is None:
            runtime_dir = K3S_CNI_DIR if k3s is not None else ETC_CNI_DIR
            evidence = [f"{runtime_dir} does not exist ({envelope.reason if envelope else ''})"]
        else:
            runtime_dir = config.runtime_dir
            active = config.active
            if active is not None and active.loadable:
                return
            if active is not None:
                title = "the CNI config the runtime loads first cannot be loaded"
                problem = active.error or active.read_error
                evidence = [f"{active.path} is loaded first and is broken: {problem}"]
            elif not config.runtime.exists:
                evidence = [f"{runtime_dir} does not exist"]
            else:
                others = [f.filename for f in config.runtime.files]
                listing = f" (only: {_names(others)})" if others else " (empty)"
                evidence = [f"{runtime_dir} has no .conf/.conflist/.json file{listing}"]
            for other in config.dirs:
                if other.path != runtime_dir and other.configs:
                    evidence.append(
                        f"{other.path} has {_names([c.filename for c in other.configs])}, but "
                        f"the runtime reads {runtime_dir}"
                    )
        evidence.append(f"a CNI is expected: {why}")
        fix = _config_fixes(node, expected, runtime_dir, k3s)
        yield Hit(evidence=evidence, fix=fix, title=title)


def _config_fixes(
    node: NodeContext, expected: str | None, runtime_dir: str, k3s: K3sConfig | None
) -> list[str]:
    on_node = _on_node(node)
    if k3s is not None and k3s.flannel_enabled:
        return [
            f"k3s writes 10-flannel.conflist into {K3S_CNI_DIR} when its flannel starts: look "
            "for flannel errors in journalctl -u k3s (k3s-agent on agents)",
            "systemctl restart k3s (k3s-agent on agents)",
        ]
    fixes: list[str] = []
    if k3s is not None:
        fixes.append(
            f"k3s's containerd reads {K3S_CNI_DIR} and /var/lib/rancher/k3s/data/current/bin: "
            "install the CNI with those paths (cilium: cni.confPath and cni.binPath)"
        )
    if expected == "flannel":
        fixes.append(
            "the kube-flannel DaemonSet's install-cni init container writes "
            f"{runtime_dir}/10-flannel.conflist: check its pod on this node and restart it "
            f"(kubectl -n kube-flannel delete pod -l app=flannel {on_node})"
        )
    elif expected == "cilium":
        fixes.append(
            "the cilium agent writes 05-cilium.conflist once it is ready: check its pod on this "
            f"node (kubectl -n kube-system get pod -l k8s-app=cilium {on_node})"
        )
    elif expected == "calico":
        fixes.append(
            "calico-node's install-cni init container writes 10-calico.conflist: check its pod "
            f"on this node (kubectl -n calico-system get pod -l k8s-app=calico-node {on_node})"
        )
    else:
        fixes.append(f"install the cluster's CNI; its agent writes its config into {runtime_dir}")
    return fixes


def _belongs_to(config: CniConfigFile, cni: str) -> bool:
    """Canal is calico's plugin over flannel's devices: either name matches it."""
    if "canal" in config.filename and cni in ("calico", "flannel"):
        return True
    return config.cni == cni


def _summary(config: CniConfigFile) -> str:
    if not config.loadable:
        return f"{config.path} (not loadable: {config.error or config.read_error})"
    return f"{config.path} ({config.cni or 'unknown'}: plugins {', '.join(config.types)})"


class CniConfigConflict(Rule):
    id = "cni.config-conflict"
    severity = Severity.WARNING
    title = "several CNI configs, and the one loaded first is not the CNI in use"
    explanation = (
        "The runtime loads only the lexically first config of its conf dir. When a leftover "
        "config (an old CNI, podman's or containerd's example bridge) sorts before the CNI in "
        "use, new pods get addresses and routes from the wrong plugin and cannot reach the "
        "rest of the cluster."
    )
    needs = (CniConfigCollector, LinksCollector)
    fix = ("move the configs that do not belong to the CNI in use out of the conf dir",)

    def check(self, node: NodeContext) -> Iterator[Hit]:
        config: CniConfig = node.fact(CniConfigCollector)
        configs = config.runtime.configs
        if len(configs) < 2 or not configs[0].loadable:
            return  # one config is no conflict; a broken first one is cni.config-missing
        links = node.fact_or_none(LinksCollector)
        in_use = cni_in_use(node.cluster.cni, None, links)
        if in_use is None or _belongs_to(configs[0], in_use):
            return
        if node.cluster.cni != "auto":
            reason = "the cluster setting"
        else:
            owned = [lk.ifname for lk in links.links if device_owner(lk.ifname)] if links else []
            reason = f"devices {', '.join(owned)}"
        evidence = [
            f"loaded first: {_summary(configs[0])}",
            f"the CNI in use is {in_use} (from {reason})",
        ]
        evidence += [f"also present: {_summary(c)}" for c in configs[1:]]
        ours = [c for c in configs if _belongs_to(c, in_use)]
        if not ours:
            evidence.append(f"no config of {in_use} is in {config.runtime_dir}")
        foreign = [c for c in configs if not _belongs_to(c, in_use)]
        fixes = [f"mv {shlex.quote(c.path)} {shlex.quote(c.path + '.disabled')}" for c in foreign]
        if not ours:
            fixes.append(f"restart the {in_use} agent on this node so that it writes its config")
        wrong = configs[0].cni or "the wrong plugin"
        fixes.append(f"recreate the pods on this node that got their address from {wrong}")
        yield Hit(evidence=evidence, fix=fixes)


class CniStaleBridgeAddress(Rule):
    id = "cni.stale-bridge-address"
    severity = Severity.WARNING
    title = "cni0 carries an address outside the node's flannel subnet"
    explanation = (
        "The bridge plugin gives cni0 the gateway address of the node's pod subnet; when cni0 "
        "still holds an address from an earlier lease (a new podCIDR, a re-joined node, a "
        'reset cluster), sandbox creation fails with "cni0 already has an IP address '
        'different from ..." unless forceAddress is set, and pods get no network.'
    )
    needs = (LinksCollector, FlannelSubnetEnvCollector)
    fix = ("ip link delete cni0", "let the CNI recreate cni0 on the next pod")
    causes = ("node.ready-but-cni-broken",)

    def check(self, node: NodeContext) -> Iterator[Hit]:
        links: Links = node.fact(LinksCollector)
        env = node.fact(FlannelSubnetEnvCollector)
        network = env.subnet_network
        bridge = links.by_name("cni0")
        if network is None or bridge is None:
            return
        stale = [
            a
            for a in bridge.global_addresses("inet")
            if ipaddress.ip_address(a.local) not in network
        ]
        if not stale:
            return
        evidence = [
            f"cni0 has {a.cidr}, outside FLANNEL_SUBNET={env.subnet} of /run/flannel/subnet.env"
            for a in stale
        ]
        name = shlex.quote(node.name)
        fix = [
            f"kubectl drain {name} --ignore-daemonsets --delete-emptydir-data "
            "(pods attached to cni0 lose their network when it goes)",
            f"ip link delete {shlex.quote(bridge.ifname)}",
            f"kubectl uncordon {name}: the bridge plugin recreates cni0 with {env.subnet} "
            "on the next pod",
        ]
        yield Hit(evidence=evidence, fix=fix)


def _state(link: Link) -> str:
    return "up" if link.is_up else "down"


class CniStaleInterfaces(Rule):
    id = "cni.stale-interfaces"
    severity = Severity.WARNING
    title = "network devices of another CNI remain on the node"
    explanation = (
        "CNIs do not remove their devices when they are uninstalled. A leftover VXLAN device "
        'holds the UDP port the CNI in use needs ("failed to set interface flannel.1 to UP '
        'state: address already in use"), and leftover routes and addresses on the old '
        "devices capture traffic meant for the new overlay."
    )
    needs = (LinksCollector, CniConfigCollector)
    fix = ("delete the leftover devices with ip link delete, then restart the CNI agent",)
    causes = ("flannel.vxlan-iface-missing", "pods.cni-crashloop")

    def check(self, node: NodeContext) -> Iterator[Hit]:
        links: Links = node.fact(LinksCollector)
        in_use = cni_in_use(node.cluster.cni, node.fact_or_none(CniConfigCollector), links)
        stale: dict[str, Link] = {}
        evidence: list[str] = []
        severity = None
        if in_use is not None:
            for link in links.links:
                owner = device_owner(link.ifname)
                if owner is not None and owner != in_use:
                    stale[link.ifname] = link
                    evidence.append(
                        f"{link.ifname} ({link.kind or 'device'}, {_state(link)}) belongs to "
                        f"{owner}, but this node runs {in_use}"
                    )
        else:
            found = cnis_from_devices(links)
            if len(found) > 1:
                evidence.append(
                    f"devices of several CNIs exist ({', '.join(found)}) and the CNI in use "
                    "cannot be told: set cluster.cni"
                )
        by_port: dict[int, list[Link]] = {}
        for link in links.links:
            if link.vxlan is not None and link.vxlan.port is not None:
                by_port.setdefault(link.vxlan.port, []).append(link)
        for port, group in sorted(by_port.items()):
            if len(group) < 2:
                continue
            described = ", ".join(f"{lk.ifname} ({_state(lk)})" for lk in group)
            evidence.append(f"VXLAN devices share UDP port {port}: {described}")
            if in_use is None:
                continue
            own = [lk for lk in group if device_owner(lk.ifname) == in_use]
            if not own:
                continue
            if any(not lk.is_up for lk in own):
                severity = Severity.CRITICAL
            for lk in group:
                if device_owner(lk.ifname) != in_use and lk.ifname not in stale:
                    stale[lk.ifname] = lk
        if not evidence:
            return
        fix: list[str] = []
        deleted: set[str] = set()
        for name, link in stale.items():
            if link.kind == "veth" and link.link in deleted:
                continue  # deleting one end of a veth pair removes the other
            deleted.add(name)
            fix.append(f"ip link delete {shlex.quote(name)}")
        if in_use is not None and fix:
            fix.append(f"restart the {in_use} agent on this node so it recreates its own devices")
        if not fix:
            fix = ["decide which CNI this node runs (cluster.cni), then delete the other's devices"]
        yield Hit(evidence=evidence, fix=fix, severity=severity)


RULES: list[type[Rule]] = [
    CniConfigMissing,
    CniBinariesMissing,
    CniConfigConflict,
    CniStaleBridgeAddress,
    CniStaleInterfaces,
]
