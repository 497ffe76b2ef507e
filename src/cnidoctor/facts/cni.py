"""CNI configuration files, CNI plugin binaries and flannel's subnet.env, as found on a node.

The container runtime reads one conf dir and one bin dir; which ones depends on whether
k3s runs its own containerd. The models keep every file and directory seen, and say
which config the runtime actually loads, so rules can compare "what is configured"
with "what is installed" and "what is running".
"""

from __future__ import annotations

import ipaddress
import posixpath

from pydantic import Field

from cnidoctor.facts.base import FactModel

#: the conf dir of a plain containerd/CRI-O/kubelet setup
ETC_CNI_DIR = "/etc/cni/net.d"
#: the conf dir k3s's embedded containerd reads (when the directory exists)
K3S_CNI_DIR = "/var/lib/rancher/k3s/agent/etc/cni/net.d"
#: the bin dir of a plain setup
OPT_CNI_BIN = "/opt/cni/bin"
#: where k3s unpacks its bundled binaries (`current` and `previous` are symlinks)
K3S_DATA_DIR = "/var/lib/rancher/k3s/data"
#: extensions libcni (and so containerd, CRI-O) loads from the conf dir
CONFIG_EXTENSIONS = (".conf", ".conflist", ".json")

#: plugin `type` -> the CNI (the network provider) it belongs to
PLUGIN_CNI = {
    "flannel": "flannel",
    "calico": "calico",
    "cilium-cni": "cilium",
    "weave-net": "weave",
    "weave-plugin-2.8.1": "weave",
    "antrea": "antrea",
    "kube-ovn": "kube-ovn",
    "ovn-k8s-cni-overlay": "ovn-kubernetes",
    "multus": "multus",
    "multus-shim": "multus",
}


class CniPlugin(FactModel):
    """One entry of a config's plugin chain, reduced to what diagnosis needs."""

    type: str = Field(description="the plugin binary name")
    ipam_type: str | None = Field(default=None, description="ipam.type, a binary too")
    subnets: list[str] = Field(
        default_factory=list, description="ipam subnet / ranges[][].subnet values"
    )
    routes: list[str] = Field(default_factory=list, description="ipam routes[].dst values")
    delegate: dict[str, object] | None = Field(
        default=None, description="flannel's delegate object (the config it hands to bridge)"
    )
    bridge: str | None = Field(default=None, description="bridge plugin: the bridge device name")


class CniConfigFile(FactModel):
    """One file in a conf dir; `error` is set when the runtime could not load it."""

    path: str
    content: str = ""
    read_error: str | None = Field(default=None, description="why the file could not be read")
    error: str | None = Field(default=None, description="why it is not a loadable CNI config")
    name: str | None = Field(default=None, description="the network name")
    cni_version: str | None = None
    plugins: list[CniPlugin] = Field(default_factory=list)

    @property
    def filename(self) -> str:
        return posixpath.basename(self.path)

    @property
    def directory(self) -> str:
        return posixpath.dirname(self.path)

    @property
    def is_config(self) -> bool:
        """Whether libcni considers it at all (by extension)."""
        return self.path.endswith(CONFIG_EXTENSIONS)

    @property
    def loadable(self) -> bool:
        return self.is_config and self.read_error is None and self.error is None

    @property
    def types(self) -> list[str]:
        return [p.type for p in self.plugins]

    @property
    def cni(self) -> str | None:
        """The network provider behind this config: flannel, calico, cilium, ..., or
        "bridge" for a plain bridge config (podman's, containerd's example), else None."""
        for plugin in self.plugins:
            if plugin.type in PLUGIN_CNI:
                return PLUGIN_CNI[plugin.type]
        for plugin in self.plugins:
            if plugin.type == "bridge":
                return "kube-router" if plugin.bridge == "kube-bridge" else "bridge"
        return None

    def referenced_binaries(self) -> list[tuple[str, str]]:
        """(binary, why) for every executable the runtime needs for this config, in order.

        flannel hands a delegate config to another plugin (`bridge` unless the delegate
        names a type) and gives it `host-local` IPAM unless the delegate brings its own.
        """
        out: list[tuple[str, str]] = []
        seen: set[str] = set()

        def add(binary: str, why: str) -> None:
            if binary and binary not in seen:
                seen.add(binary)
                out.append((binary, why))

        for plugin in self.plugins:
            add(plugin.type, f"plugin {plugin.type}")
            if plugin.ipam_type:
                add(plugin.ipam_type, f"IPAM plugin {plugin.ipam_type} of {plugin.type}")
            if plugin.type == "flannel":
                delegate = plugin.delegate or {}
                dtype = delegate.get("type")
                dtype = dtype if isinstance(dtype, str) and dtype else "bridge"
                add(dtype, f"plugin {dtype} (flannel's delegate)")
                ipam = delegate.get("ipam")
                itype = ipam.get("type") if isinstance(ipam, dict) else None
                itype = itype if isinstance(itype, str) and itype else "host-local"
                add(itype, f"IPAM plugin {itype} (flannel's delegate)")
        return out

    @property
    def uses_ipv6(self) -> bool:
        """Whether an IPAM range or route of this config is IPv6 (needs IPv6 in the kernel)."""
        for plugin in self.plugins:
            for value in (*plugin.subnets, *plugin.routes):
                try:
                    if ipaddress.ip_network(value, strict=False).version == 6:
                        return True
                except ValueError:
                    continue
        return False


class CniConfDir(FactModel):
    path: str
    exists: bool
    files: list[CniConfigFile] = Field(default_factory=list)
    subdirs: list[str] = Field(default_factory=list)

    @property
    def configs(self) -> list[CniConfigFile]:
        """The files libcni would consider, in the order it tries them (lexical)."""
        return sorted((f for f in self.files if f.is_config), key=lambda f: f.filename)


class CniConfig(FactModel):
    """Both conf dirs and the verdict on which config the runtime loads."""

    dirs: list[CniConfDir]
    runtime_dir: str = Field(description="the conf dir the container runtime reads")
    active_path: str | None = Field(
        default=None, description="the lexically first config in runtime_dir, which is loaded"
    )

    def dir(self, path: str) -> CniConfDir | None:
        return next((d for d in self.dirs if d.path == path), None)

    @property
    def runtime(self) -> CniConfDir:
        found = self.dir(self.runtime_dir)
        return found if found is not None else CniConfDir(path=self.runtime_dir, exists=False)

    @property
    def is_k3s(self) -> bool:
        """k3s's containerd reads its own conf dir (and its own bin dir)."""
        return self.runtime_dir == K3S_CNI_DIR

    @property
    def active(self) -> CniConfigFile | None:
        if self.active_path is None:
            return None
        return next((f for d in self.dirs for f in d.files if f.path == self.active_path), None)


class CniBinDir(FactModel):
    path: str
    link_target: str | None = Field(
        default=None, description="where the dir (or its parent, for data/current) points"
    )
    plugins: list[str] = Field(default_factory=list, description="executable files")
    not_executable: list[str] = Field(default_factory=list)


class CniBins(FactModel):
    dirs: list[CniBinDir]

    def dir(self, path: str) -> CniBinDir | None:
        return next((d for d in self.dirs if d.path == path), None)

    def runtime_dirs(self, k3s: bool) -> list[str]:
        """The bin dirs the runtime searches: /opt/cni/bin, or k3s's current data dir
        (plus data/cni, which newer k3s keeps stable across upgrades)."""
        if not k3s:
            return [OPT_CNI_BIN]
        wanted = [f"{K3S_DATA_DIR}/current/bin", f"{K3S_DATA_DIR}/cni"]
        present = [p for p in wanted if self.dir(p) is not None]
        if present:
            return present
        k3s_dirs = [d.path for d in self.dirs if d.path.startswith(K3S_DATA_DIR + "/")]
        return k3s_dirs or [f"{K3S_DATA_DIR}/current/bin"]


class FlannelSubnetEnv(FactModel):
    """`/run/flannel/subnet.env`: what flanneld leased to this node, read by the CNI plugin."""

    values: dict[str, str] = Field(description="every KEY=VALUE of the file")
    network: str | None = Field(default=None, description="FLANNEL_NETWORK (the cluster CIDR)")
    subnet: str | None = Field(
        default=None, description="FLANNEL_SUBNET: the node's gateway/prefix, e.g. 10.42.1.1/24"
    )
    mtu: int | None = None
    ipmasq: bool | None = None
    ipv6_network: str | None = None
    ipv6_subnet: str | None = None

    @property
    def subnet_network(self) -> ipaddress.IPv4Network | None:
        if self.subnet is None:
            return None
        iface = ipaddress.ip_interface(self.subnet)
        return iface.network if isinstance(iface, ipaddress.IPv4Interface) else None
