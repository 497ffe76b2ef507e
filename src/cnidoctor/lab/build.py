"""Builds a scenario into namespaces and tears it down, recording each step first.

Layout of a built scenario (nothing in the host's own network namespace is touched):

* a switch namespace `cnd-TAG-sw` holding one bridge per segment, with the router's
  address on it (the nodes' default gateway);
* per node, a network namespace whose uplinks are veths into that switch, and a mount
  namespace bound at /run/cnidoctor/mnt/<netns> in which /run, /etc/ufw, the CNI dirs and
  /var/lib/rancher are private tmpfs mounts, so the node's files never touch the host's.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from pathlib import Path

import yaml

from cnidoctor.errors import CnidoctorError, UsageError
from cnidoctor.lab import files, system
from cnidoctor.lab.apiproc import start_api, stop_api
from cnidoctor.lab.listeners import start_listeners, stop_listeners
from cnidoctor.lab.model import Neighbour, NodeSpec, Router, Scenario
from cnidoctor.lab.state import MOUNT_DIR, LabState, lab_lock, scenarios_with_state
from cnidoctor.lab.system import LabError, in_netns, in_node

#: the node-private scratch dir (inside the node's private /run)
SCRATCH = "/run/cnidoctor-lab"
#: node directories that must be private (empty unless the scenario writes into them); the
#: last four are where `cnidoctor fix` and `guard` write (modules, sysctls, units, shims)
PRIVATE_DIRS = (
    "/etc/cni/net.d",
    "/opt/cni/bin",
    "/var/lib/rancher",
    "/etc/modules-load.d",
    "/etc/sysctl.d",
    "/etc/systemd/system",
    "/usr/local/sbin",
)
BRIDGE_SYSCTL = "/proc/sys/net/bridge/bridge-nf-call-iptables"
TOOLS = ("ip", "bridge", "nsenter", "unshare", "mount", "umount", "sysctl", "tar", "iptables")


def build(scenario: Scenario) -> Path:
    """Make the scenario; on any failure undo what was made and raise one clear line."""
    _preflight(scenario)
    with lab_lock():
        _refuse_collisions(scenario)
        state = LabState(scenario=scenario.name)
        state.save()
        try:
            _ensure_mount_root()
            _build_switch(scenario, state)
            for node in scenario.nodes:
                _build_node_net(scenario, node, state)
            for router in scenario.routers:
                _build_router(scenario, router, state)
            for node in scenario.nodes:
                _build_node_mounts(scenario, node, state)
            if scenario.serve_ports:
                start_listeners(scenario, state)
            if scenario.extras is not None:
                scenario.extras.build(scenario, state)
            kubeconfig = start_api(scenario, state) if scenario.api_objects else None
            _write_inventory(scenario, state.inventory, kubeconfig)
            state.complete = True
            state.save()
        except BaseException as exc:
            problems = teardown(state)
            hint = (
                f" (cleanup incomplete: {problems[0]}; run cnidoctor lab down {scenario.name})"
                if problems
                else ""
            )
            if isinstance(exc, CnidoctorError):
                raise type(exc)(f"{exc}{hint}") from exc
            if isinstance(exc, OSError):
                raise LabError(f"lab up {scenario.name}: {exc}{hint}") from exc
            raise
    return state.inventory


def destroy(name: str, fallback: Scenario | None) -> None:
    """Remove what `up` recorded; quiet when nothing is up; raises after trying every step."""
    with lab_lock():
        directory = LabState(scenario=name).directory
        if not directory.exists():
            return
        state = LabState.load(name)
        if state is None:
            # the state file is gone or damaged: the directory proves the lab was here
            state = LabState(scenario=name)
            if fallback is not None:
                state.netns = [n for n in fallback.netns_names if system.netns_exists(n)]
                state.mount_ns = list(state.netns)
        problems = teardown(state)
    if problems:
        raise LabError(f"lab down {name}: {problems[0]}")


def teardown(state: LabState) -> list[str]:
    """Undo everything in `state`, in reverse, continuing past failures; returns them."""
    problems: list[str] = []
    for stopped in (stop_api(state.api_pid), stop_listeners(state.listener_pid)):
        if stopped:
            problems.append(stopped)
    for name in reversed(state.mount_ns):
        path = MOUNT_DIR / name
        if system.is_mounted(str(path)):
            done = system.run(["umount", str(path)], check=False)
            if done.rc != 0:
                done = system.run(["umount", "--lazy", str(path)], check=False)
            if done.rc != 0:
                problems.append(f"cannot unmount {path}: {done.stderr.strip()}")
                continue
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            problems.append(f"cannot remove {path}: {exc.strerror}")
    for name in reversed(state.netns):
        if system.netns_exists(name):
            done = system.run(["ip", "netns", "delete", name], check=False)
            if done.rc != 0:
                problems.append(f"cannot delete network namespace {name}: {done.stderr.strip()}")
    if not any(name != state.scenario for name in scenarios_with_state()):
        _release_mount_root()
    if not problems:
        shutil.rmtree(state.directory, ignore_errors=True)
    return problems


def _release_mount_root() -> None:
    """The last lab down unmounts the mount root, whichever lab made it (labs come down in
    any order, and a crashed one may have left it): it is the lab's own directory."""
    root = str(MOUNT_DIR)
    if system.is_mounted(root) and not _mounts_below(root):
        system.run(["umount", root], check=False)


def _mounts_below(root: str) -> bool:
    return any(point.startswith(root + "/") for point, _ in system.mount_points())


# -- checks ------------------------------------------------------------------------------


def _preflight(scenario: Scenario) -> None:
    if os.geteuid() != 0:
        raise UsageError("the lab needs root: it creates network and mount namespaces")
    tools = list(TOOLS)
    if any(node.ufw_enabled for node in scenario.nodes):
        tools.append("ufw")
    if any(n.flannel_running and not n.vxlan_tx_checksum for n in scenario.nodes):
        tools.append("ethtool")
    missing = system.missing_tools(tools)
    if missing:
        raise UsageError(f"lab {scenario.name} needs {', '.join(missing)} installed")
    if any(n.br_netfilter for n in scenario.nodes) and not os.path.exists(BRIDGE_SYSCTL):
        raise UsageError(
            f"lab {scenario.name} needs br_netfilter on the host for its healthy nodes "
            "(modprobe br_netfilter)"
        )


def _refuse_collisions(scenario: Scenario) -> None:
    if LabState(scenario=scenario.name).directory.exists():
        state = LabState.load(scenario.name)
        if state is not None and state.complete:
            raise UsageError(
                f"lab {scenario.name} is already up (cnidoctor lab down {scenario.name})"
            )
        raise UsageError(
            f"lab {scenario.name} is partly up from an interrupted run: "
            f"run cnidoctor lab down {scenario.name} first"
        )
    for name in scenario.netns_names:
        if system.netns_exists(name):
            raise UsageError(
                f"network namespace {name} exists but was not made by the lab: "
                f"remove it (ip netns delete {name}) or free the name"
            )
        if (MOUNT_DIR / name).exists():
            raise UsageError(f"{MOUNT_DIR / name} exists but was not made by the lab")


# -- host side: the mount root -------------------------------------------------------------


def _ensure_mount_root() -> None:
    """MOUNT_DIR must be a private mount: only there can mount namespaces be bound to files."""
    root = str(MOUNT_DIR)
    MOUNT_DIR.mkdir(parents=True, exist_ok=True)
    if system.is_private_mount(root):
        return
    if not system.is_mounted(root):
        system.run(["mount", "--bind", root, root])
    system.run(["mount", "--make-private", root])


# -- network -------------------------------------------------------------------------------


def _build_switch(scenario: Scenario, state: LabState) -> None:
    sw = scenario.switch_netns
    system.add_netns(state, sw, "net.ipv4.ip_forward=1")
    for segment in scenario.segments:
        system.run(["ip", "-n", sw, "link", "add", segment.bridge, "type", "bridge"])
        system.run(["ip", "-n", sw, "addr", "add", segment.gateway, "dev", segment.bridge])
        system.run(["ip", "-n", sw, "link", "set", segment.bridge, "up"])


def _build_node_net(scenario: Scenario, node: NodeSpec, state: LabState) -> None:
    ns, sw = node.netns, scenario.switch_netns
    bridge_nf = (
        ("net.bridge.bridge-nf-call-iptables=1", "net.bridge.bridge-nf-call-ip6tables=1")
        if node.br_netfilter
        else ()
    )
    system.add_netns(
        state,
        ns,
        f"net.ipv4.conf.all.rp_filter={node.rp_filter}",
        f"net.ipv4.conf.default.rp_filter={node.rp_filter}",
        f"net.ipv4.ip_forward={int(node.ip_forward)}",
        *bridge_nf,
    )
    for uplink in node.uplinks:
        segment = scenario.segment(uplink.segment)
        port = scenario.switch_port(node, uplink)
        system.run(
            [
                "ip",
                "-n",
                sw,
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                uplink.ifname,
                "netns",
                ns,
            ]
        )
        system.run(["ip", "-n", sw, "link", "set", port, "master", segment.bridge, "up"])
        mac = ["address", uplink.mac] if uplink.mac else []
        system.run(
            ["ip", "-n", ns, "link", "set", uplink.ifname, *mac, "mtu", str(uplink.mtu), "up"]
        )
        system.run(["ip", "-n", ns, "addr", "add", uplink.address, "dev", uplink.ifname])
        if uplink.default_metric is not None:
            route = [
                "ip",
                "-n",
                ns,
                "route",
                "add",
                "default",
                "via",
                segment.gateway_ip,
                "dev",
                uplink.ifname,
                "proto",
                uplink.proto,
            ]
            if uplink.proto == "dhcp":
                route += ["src", uplink.ip]
            system.run([*route, "metric", str(uplink.default_metric)])
    _seed_neighbours(ns, node.underlay, node.neighbours)
    if node.flannel_running:
        _build_flannel_links(scenario, node)


def _seed_neighbours(ns: str, dev: str, entries: tuple[Neighbour, ...]) -> None:
    for entry in entries:
        system.run(
            [
                *("ip", "-n", ns, "neigh", "replace", entry.ip, "lladdr", entry.mac),
                *("dev", dev, "nud", "permanent"),
            ]
        )


def _build_router(scenario: Scenario, router: Router, state: LabState) -> None:
    """A router namespace on a segment: one veth into the switch, forwarding as configured."""
    ns, sw = router.netns, scenario.switch_netns
    # redirects on, as routers do
    system.add_netns(
        state,
        ns,
        f"net.ipv4.ip_forward={int(router.forwarding)}",
        "net.ipv4.conf.all.send_redirects=1",
        "net.ipv4.conf.default.send_redirects=1",
    )
    port = scenario.router_port(router)
    system.run(
        [
            *("ip", "-n", sw, "link", "add", port, "type", "veth"),
            *("peer", "name", router.ifname, "netns", ns),
        ]
    )
    bridge = scenario.segment(router.segment).bridge
    system.run(["ip", "-n", sw, "link", "set", port, "master", bridge, "up"])
    mac = ["address", router.mac] if router.mac else []
    system.run(["ip", "-n", ns, "link", "set", router.ifname, *mac, "up"])
    system.run(["ip", "-n", ns, "addr", "add", router.address, "dev", router.ifname])
    _seed_neighbours(ns, router.ifname, router.neighbours)


def _build_flannel_links(scenario: Scenario, node: NodeSpec) -> None:
    """flannel.1 and cni0 as flanneld and the bridge plugin leave them, plus peer entries."""
    ns, mtu = node.netns, str(node.flannel_mtu)
    system.run(
        [
            "ip",
            "-n",
            ns,
            "link",
            "add",
            "flannel.1",
            "address",
            node.vtep_mac,
            "mtu",
            mtu,
            "type",
            "vxlan",
            "id",
            "1",
            "local",
            node.address,
            "dev",
            node.underlay,
            "dstport",
            "8472",
            "nolearning",
        ]
    )
    system.run(["ip", "-n", ns, "addr", "add", node.vtep_address, "dev", "flannel.1"])
    system.run(["ip", "-n", ns, "link", "set", "flannel.1", "up"])
    if not node.vxlan_tx_checksum:
        system.run(in_netns(ns, ["ethtool", "-K", "flannel.1", "tx-checksum-ip-generic", "off"]))
    system.run(["ip", "-n", ns, "link", "add", "cni0", "mtu", mtu, "type", "bridge"])
    system.run(["ip", "-n", ns, "addr", "add", node.cni0_address, "dev", "cni0"])
    system.run(["ip", "-n", ns, "link", "set", "cni0", "up"])
    for peer in scenario.nodes:
        if peer is node or not peer.flannel_running:
            continue
        vtep = str(ipaddress.ip_interface(peer.vtep_address).ip)
        system.run(
            [
                "ip",
                "-n",
                ns,
                "route",
                "add",
                peer.pod_subnet,
                "via",
                vtep,
                "dev",
                "flannel.1",
                "onlink",
            ]
        )
        system.run(
            [
                "ip",
                "-n",
                ns,
                "neigh",
                "replace",
                vtep,
                "lladdr",
                peer.vtep_mac,
                "dev",
                "flannel.1",
                "nud",
                "permanent",
            ]
        )
        system.run(
            [
                "bridge",
                "-n",
                ns,
                "fdb",
                "append",
                peer.vtep_mac,
                "dev",
                "flannel.1",
                "dst",
                peer.address,
                "self",
                "permanent",
            ]
        )


# -- node-private files --------------------------------------------------------------------


def _build_node_mounts(scenario: Scenario, node: NodeSpec, state: LabState) -> None:
    ns = node.netns
    mnt = str(MOUNT_DIR / ns)
    state.will_make_mount_ns(ns)
    Path(mnt).touch()
    system.run(in_netns(ns, ["unshare", f"--mount={mnt}", "--propagation", "private", "true"]))

    def node_run(*argv: str, data: bytes | None = None, check: bool = True) -> system.Ran:
        return system.run(in_node(ns, mnt, argv), input=data, check=check)

    # drop this namespace's copies of the host's netns bind mounts (they pin namespaces)
    node_run("umount", "--recursive", "--lazy", "/run/netns", check=False)
    # a node boots with an empty /run: no host locks, sockets or flannel state leak in
    node_run("mount", "-t", "tmpfs", "-o", "mode=0755,size=16m", "cnd-run", "/run")
    node_run("mkdir", "-p", "/run/flannel", SCRATCH)
    for index, directory in enumerate(PRIVATE_DIRS):
        _private_dir(node_run, directory, index)

    pod_cidr = scenario.cluster.get("pod_cidr", "10.42.0.0/16")
    written: dict[str, tuple[str, int]] = {
        "etc/cni/net.d/10-flannel.conflist": (files.conflist_text(), 0o644),
    }
    for plugin in node.cni_plugins:
        written[f"opt/cni/bin/{plugin}"] = (files.PLUGIN_SCRIPT.format(name=plugin), 0o755)
    if node.flannel_running:
        written["run/flannel/subnet.env"] = (files.subnet_env(node, pod_cidr), 0o644)
    if not node.br_netfilter:
        written["usr/local/sbin/modprobe"] = (files.MODPROBE_SHIM, 0o755)
    node_run("tar", "-x", "-f", "-", "-C", "/", data=files.tar_stream(written))

    if os.path.isdir("/etc/ufw"):
        _private_ufw(node_run)
    if not node.br_netfilter:
        _mask_br_netfilter(node_run)
    if node.flannel_running:
        rules = files.flannel_rules(node, pod_cidr).encode()
        node_run("iptables-restore", "--noflush", data=rules)
    if node.ufw_enabled:
        node_run("ufw", "--force", "enable")
    if node.drop_inbound:
        node_run("iptables", "-w", "5", "-I", "INPUT", "1", "-j", "DROP")


def _private_dir(node_run: system.NodeRunner, directory: str, index: int) -> None:
    """An empty private tmpfs at `directory`, without creating anything on the host.

    Where the directory does not exist on the host, its nearest existing ancestor is
    overlaid (writes go to the node's tmpfs) and the directory is made in the overlay.
    """
    if os.path.isdir(directory):
        node_run("mount", "-t", "tmpfs", "-o", "mode=0755,size=16m", "cnd-private", directory)
        return
    ancestor = os.path.dirname(directory)
    while not os.path.isdir(ancestor):
        ancestor = os.path.dirname(ancestor)
    if ancestor == "/":
        raise LabError(f"cannot make {directory} private: no parent directory to overlay")
    upper, work = f"{SCRATCH}/overlay{index}/upper", f"{SCRATCH}/overlay{index}/work"
    node_run("mkdir", "-p", upper, work)
    node_run(
        "mount",
        "-t",
        "overlay",
        "-o",
        f"lowerdir={ancestor},upperdir={upper},workdir={work}",
        "cnd-overlay",
        ancestor,
    )
    node_run("mkdir", "-p", directory)
    node_run("mount", "-t", "tmpfs", "-o", "mode=0755,size=16m", "cnd-private", directory)


def _private_ufw(node_run: system.NodeRunner) -> None:
    """A private /etc/ufw seeded with the package defaults, and pinned /etc/default/ufw.

    `ufw enable` writes ufw.conf and applies sysctl.conf: both must stay in the node.
    """
    seed: dict[str, tuple[str, int]] = {}
    host = Path("/etc/ufw")
    for path in sorted(host.rglob("*")):
        if path.is_file() and not path.is_symlink():
            seed[str(path.relative_to(host))] = (path.read_text(errors="replace"), 0o640)
    pristine = Path("/usr/share/ufw")
    for name in files.UFW_PRISTINE:
        if (pristine / name).is_file():
            seed[name] = ((pristine / name).read_text(errors="replace"), 0o640)
    for script in ("before.init", "after.init"):
        if script in seed:
            seed[script] = (seed[script][0], 0o750)
    if "sysctl.conf" in seed:
        seed["sysctl.conf"] = (files.net_only_sysctl(seed["sysctl.conf"][0]), 0o644)
    node_run("mount", "-t", "tmpfs", "-o", "mode=0755,size=4m", "cnd-ufw", "/etc/ufw")
    node_run("tar", "-x", "-f", "-", "-C", "/etc/ufw", data=files.tar_stream(seed))
    if os.path.isfile("/etc/default/ufw"):
        _bind_file(node_run, files.UFW_DEFAULTS, 0o644, "/etc/default/ufw")


def _bind_file(node_run: system.NodeRunner, content: str, mode: int, target: str) -> None:
    """`content` over the node's `target`, for the node only: written into the node's
    scratch directory (a tmpfs of its mount namespace) and bind-mounted there."""
    name = os.path.basename(target)
    node_run("tar", "-x", "-f", "-", "-C", SCRATCH, data=files.tar_stream({name: (content, mode)}))
    node_run("mount", "--bind", f"{SCRATCH}/{name}", target)


def _mask_br_netfilter(node_run: system.NodeRunner) -> None:
    """Make br_netfilter look unloaded in the node: an empty /proc/sys/net/bridge.

    Mounted from inside the node's network namespace: /proc/sys/net is per namespace.
    """
    if os.path.isdir("/proc/sys/net/bridge"):
        node_run(
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "ro,mode=0555,size=4k",
            "cnd-no-br-netfilter",
            "/proc/sys/net/bridge",
        )
    modules = Path("/proc/modules")
    if modules.is_file():
        text = modules.read_text()
        if any(line.startswith("br_netfilter ") for line in text.splitlines()):
            masked = files.without_module(text, "br_netfilter")
            _bind_file(node_run, masked, 0o444, "/proc/modules")


# -- inventory -----------------------------------------------------------------------------


def _write_inventory(scenario: Scenario, path: Path, kubeconfig: Path | None) -> None:
    """The contract's inventory format, one node per scenario node, reached via netns:."""
    cluster: dict[str, str] = {"name": f"lab-{scenario.name}", **scenario.cluster}
    if kubeconfig is not None:
        cluster["kubeconfig"] = str(kubeconfig)
    nodes: list[dict[str, object]] = []
    for n in scenario.nodes:
        entry: dict[str, object] = {"name": n.name, "address": n.address, "role": n.role}
        if n.etcd is not None:
            entry["etcd"] = n.etcd
        nodes.append({**entry, "via": f"netns:{n.netns}"})
    document: dict[str, object] = {"cluster": cluster, "nodes": nodes}
    if scenario.routers:
        document["routers"] = [
            {"name": r.name, "via": f"netns:{r.netns}"} for r in scenario.routers
        ]
    header = f"# cnidoctor lab {scenario.name}: {scenario.description}\n"
    path.write_text(header + yaml.safe_dump(document, sort_keys=False))
