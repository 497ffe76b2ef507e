"""NIC-level trouble under the overlay: checksum offload on flannel.1; NetworkManager or
udev .link files touching the CNI's devices."""

from __future__ import annotations

import shlex
from collections.abc import Iterator

from cnidoctor.collectors.kernel import EthtoolCollector, KernelCollector
from cnidoctor.collectors.netmgr import NetworkManagerCollector
from cnidoctor.collectors.network import LinksCollector
from cnidoctor.facts.base import FactStatus
from cnidoctor.facts.netmgr import CNI_DEVICE_GLOBS, NetworkManagerState
from cnidoctor.models import Severity
from cnidoctor.rules.base import Hit, NodeContext, Rule

OFFLOAD_FEATURE = "tx-checksum-ip-generic"


class OffloadBug(Rule):
    id = "nic.offload-bug"
    # info: the offload is the kernel's default and harmless on most NICs; the node's facts
    # alone cannot show the corruption (that takes a failing overlay probe or the kernel log)
    severity = Severity.INFO
    title = "checksum offload is on for flannel.1"
    explanation = (
        "On a number of kernels and NICs (vmxnet3, some virtio and Broadcom drivers) the "
        "checksum of VXLAN-encapsulated packets is computed wrong when flannel.1 hands it to "
        "the NIC: the receiver drops them ('UDP: bad checksum'), so cross-node pod and "
        "service traffic times out while the underlay works. On its own this is a risk to "
        "know of, not a diagnosis: turn the offload off when overlay traffic fails."
    )
    needs = (EthtoolCollector, KernelCollector)
    fix = (
        "ethtool -K flannel.1 tx-checksum-ip-generic off",
        "persist it with a udev rule or a systemd unit run after the CNI starts",
    )
    causes = ()

    def check(self, node: NodeContext) -> Iterator[Hit]:
        envelope = node.fact_envelope(EthtoolCollector)
        if envelope is not None and envelope.status is FactStatus.ABSENT:
            return  # no flannel.1 (or no ethtool): nothing to judge
        offloads = node.fact(EthtoolCollector)
        if not offloads.is_on(OFFLOAD_FEATURE):
            return
        dev = offloads.device
        evidence = [f"ethtool -k {dev}: {OFFLOAD_FEATURE}: on"]
        kernel = node.fact_or_none(KernelCollector)
        if kernel is not None:
            evidence.append(f"kernel {kernel.release}")
        rule = (
            f'ACTION=="add", SUBSYSTEM=="net", KERNEL=="{dev}", '
            f'RUN+="/usr/sbin/ethtool -K {dev} {OFFLOAD_FEATURE} off"'
        )
        fix = [
            shlex.join(["ethtool", "-K", dev, OFFLOAD_FEATURE, "off"]),
            "make it survive flannel restarts and reboots with a udev rule: "
            + shlex.join(["echo", rule])
            + " > /etc/udev/rules.d/90-flannel-offload.rules && udevadm control --reload",
            "(or a systemd unit running the ethtool command after the CNI started)",
        ]
        yield Hit(evidence=evidence, fix=fix)


NM_KEYFILE = "/etc/NetworkManager/conf.d/cni.conf"
LINK_OVERRIDE = "/etc/systemd/network/10-cni.link"


def _nm_fix() -> list[str]:
    specs = ";".join(f"interface-name:{g}" for g in CNI_DEVICE_GLOBS)
    return [
        f"printf '[keyfile]\\nunmanaged-devices={specs}\\n' > {NM_KEYFILE}",
        "systemctl reload NetworkManager",
    ]


def _link_fix() -> list[str]:
    return [
        "printf '[Match]\\nOriginalName=flannel* cni*\\n\\n[Link]\\nMACAddressPolicy=none\\n' > "
        + LINK_OVERRIDE,
        "udevadm control --reload (takes effect for devices created from now on: restart "
        "flannel/k3s so flannel.1 and cni0 are recreated)",
    ]


def _runs_flannel(node: NodeContext) -> bool:
    if node.cluster.cni == "flannel":
        return True
    if node.cluster.cni != "auto":
        return False
    links = node.fact_or_none(LinksCollector)
    return links is not None and links.by_name("flannel.1") is not None


class NetmgrInterferes(Rule):
    id = "netmgr.interferes"
    severity = Severity.WARNING
    title = "NetworkManager or a udev .link file manages the CNI's devices"
    explanation = (
        "The CNI creates cni0, flannel.1 and the pods' veths and expects to own them. "
        "NetworkManager managing them re-applies its own addresses and routes, and a .link "
        "file with MACAddressPolicy=persistent (the stock 99-default.link) gives flannel.1 a "
        "different MAC than the one flannel announced, so peers' fdb entries go stale."
    )
    needs = (NetworkManagerCollector, LinksCollector)
    fix = (
        "tell NetworkManager to leave CNI devices alone: unmanaged-devices="
        "interface-name:cni0;interface-name:flannel*;interface-name:veth*;"
        "interface-name:cali*;interface-name:cilium_*",
        "give virtual devices MACAddressPolicy=none in a systemd .link file",
    )
    causes = ("flannel.vxlan-fdb-stale",)

    def check(self, node: NodeContext) -> Iterator[Hit]:
        state: NetworkManagerState = node.fact(NetworkManagerCollector)
        managed = state.managed_cni_devices()
        if managed:
            evidence = [f"nmcli: {d.device} ({d.type}) {d.state}" for d in managed]
            if not state.unmanaged:
                evidence.append("no unmanaged-devices setting in the NetworkManager config")
            yield Hit(
                evidence=evidence,
                fix=_nm_fix(),
                title="NetworkManager manages the CNI's devices",
            )
        if not _runs_flannel(node):
            return
        evidence = []
        for ifname, kind in (("flannel.1", "vxlan"), ("cni0", "bridge")):
            link_file = state.first_link_file(ifname, kind)
            if link_file is None or link_file.mac_policy not in ("persistent", "random"):
                continue
            match = " ".join(f"{k}={v}" for k, v in link_file.match.items()) or "empty [Match]"
            evidence.append(
                f"{link_file.path} applies to {ifname} ({match}): "
                f"MACAddressPolicy={link_file.mac_policy}"
            )
        if evidence:
            yield Hit(
                evidence=evidence,
                fix=_link_fix(),
                title="a systemd .link file rewrites the MAC of flannel.1/cni0",
            )


RULES: list[type[Rule]] = [OffloadBug, NetmgrInterferes]
