"""The CNI settings that pin its interface and govern its masquerading, wherever they live.

flannel: k3s's `flannel-iface` (config files on the node, or the `k3s.io/node-args`
annotation the API shows for every node), kube-flannel's `--iface`/`--iface-regex`/
`--iface-can-reach` in its DaemonSet. cilium: `devices` and `enable-ipv4-masquerade`/
`enable-bpf-masquerade` in the cilium-config ConfigMap, and what the agent itself reports
(`cilium-dbg status`). calico: `IP_AUTODETECTION_METHOD` of the calico-node DaemonSet or
`nodeAddressAutodetectionV4` of the operator's Installation (default: first-found).

Each answer names the setting, its value and where it was read, so a finding can say
exactly which setting pins (or fails to pin) the interface.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cnidoctor.facts.cilium import CiliumStatus
from cnidoctor.facts.cluster import ClusterFacts, KubeNode, flag_value

CILIUM_CONFIG = "kube-system/cilium-config"
CALICO_DAEMONSETS = ("calico-system/calico-node", "kube-system/calico-node")
FLANNEL_DAEMONSETS = ("kube-flannel/kube-flannel-ds", "kube-system/kube-flannel-ds")
#: calico autodetection methods that leave the choice to interface order
CALICO_UNPINNED = ("first-found", "firstfound")


@dataclass(frozen=True)
class CniSetting:
    """One interface setting: its name, value (None = not set) and whether it pins."""

    cni: str
    key: str
    value: str | None
    source: str
    pins: bool

    def describe(self) -> str:
        state = "not set" if self.value is None else f"= {self.value}"
        verdict = "pins the interface" if self.pins else "does not pin the interface"
        return f"{self.cni} {self.key} {state} ({self.source}): {verdict}"


def interface_setting(
    cni: str, kube_node: KubeNode | None, api: ClusterFacts | None
) -> CniSetting | None:
    """The setting that decides which interface `cni` uses, when the API shows one."""
    if cni == "cilium":
        return cilium_devices(api)
    if cni == "calico":
        return calico_autodetection(api)
    if cni in ("flannel", "auto"):
        return k3s_flannel_iface(kube_node) or kube_flannel_iface(api)
    return None


def k3s_flannel_iface(kube_node: KubeNode | None) -> CniSetting | None:
    """k3s records its effective flags (config file included) in `k3s.io/node-args`."""
    if kube_node is None:
        return None
    words = kube_node.k3s_node_args
    if words is None:
        return None
    value = flag_value(words, "flannel-iface")
    source = f"API: node {kube_node.name} annotation k3s.io/node-args {json.dumps(words)}"
    return CniSetting("flannel", "--flannel-iface (k3s)", value, source, value is not None)


def kube_flannel_iface(api: ClusterFacts | None) -> CniSetting | None:
    if api is None:
        return None
    for key in FLANNEL_DAEMONSETS:
        ds = api.daemonsets.get(key)
        if ds is None:
            continue
        for flag in ("iface", "iface-regex", "iface-can-reach"):
            value = ds.flag(flag)
            if value is not None:
                return CniSetting("flannel", f"--{flag}", value, f"API: DaemonSet {key}", True)
        return CniSetting("flannel", "--iface", None, f"API: DaemonSet {key}", False)
    return None


def cilium_config(api: ClusterFacts | None) -> dict[str, str] | None:
    return api.config_maps.get(CILIUM_CONFIG) if api is not None else None


def cilium_devices(api: ClusterFacts | None) -> CniSetting | None:
    config = cilium_config(api)
    if config is None:
        return None
    value = (config.get("devices") or "").strip() or None
    source = f"API: ConfigMap {CILIUM_CONFIG}"
    return CniSetting("cilium", "devices", value, source, value is not None)


def calico_autodetection(api: ClusterFacts | None) -> CniSetting | None:
    """IP_AUTODETECTION_METHOD (manifest installs) or the Installation's method (operator)."""
    if api is None:
        return None
    if api.calico_installation is not None:
        method = api.calico_installation.get("nodeAddressAutodetectionV4")
        source = "API: Installation default spec.calicoNetwork.nodeAddressAutodetectionV4"
        if not isinstance(method, dict) or not method:
            return CniSetting("calico", "nodeAddressAutodetectionV4", None, source, False)
        name, value = next(iter(method.items()))
        text = f"{name}: {json.dumps(value)}"
        pins = not (name == "firstFound" and value is True)
        return CniSetting("calico", "nodeAddressAutodetectionV4", text, source, pins)
    for key in CALICO_DAEMONSETS:
        ds = api.daemonsets.get(key)
        if ds is None:
            continue
        value = ds.env("IP_AUTODETECTION_METHOD")
        ip = ds.env("IP")
        source = f"API: DaemonSet {key} env"
        if value is None and ip not in (None, "autodetect"):
            return CniSetting("calico", "IP", ip, source, True)
        pins = value is not None and value.strip().lower() not in CALICO_UNPINNED
        if value is None:
            source += "; unset means first-found"
        return CniSetting("calico", "IP_AUTODETECTION_METHOD", value, source, pins)
    return None


@dataclass(frozen=True)
class CiliumMasquerade:
    """What is known of cilium's masquerading on one node, and from where."""

    enabled: bool | None
    bpf: bool | None
    #: the devices BPF masquerading runs on: the agent's own list, else `devices`
    devices: tuple[str, ...]
    evidence: tuple[str, ...]


def cilium_masquerade(api: ClusterFacts | None, status: CiliumStatus | None) -> CiliumMasquerade:
    """The agent's status wins (it is what runs); the ConfigMap is what was asked for."""
    evidence: list[str] = []
    enabled: bool | None = None
    bpf: bool | None = None
    devices: tuple[str, ...] = ()
    config = cilium_config(api)
    if config is not None:
        masq = config.get("enable-ipv4-masquerade")
        bpf_masq = config.get("enable-bpf-masquerade")
        enabled = None if masq is None else masq.strip().lower() == "true"
        bpf = None if bpf_masq is None else bpf_masq.strip().lower() == "true"
        devices = tuple((config.get("devices") or "").split())
        shown = ", ".join(
            f"{k}={config[k]!r}"
            for k in ("enable-ipv4-masquerade", "enable-bpf-masquerade", "devices")
            if k in config
        )
        evidence.append(f"{CILIUM_CONFIG}: {shown or 'no masquerade or devices key'}")
    if status is not None:
        evidence.append(f"{status.source}: {status.line}")
        if status.masquerading == "Disabled" or status.ipv4_masquerade is False:
            enabled = False
        elif status.masquerading in ("BPF", "IPTables"):
            enabled, bpf = True, status.masquerading == "BPF"
            if bpf and status.masquerade_devices:
                devices = tuple(status.masquerade_devices)
    return CiliumMasquerade(enabled, bpf, devices, tuple(evidence))
