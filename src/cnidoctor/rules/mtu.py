"""MTU on one node: an overlay device (or flannel's lease) larger than its underlay allows.

VXLAN adds 50 bytes over IPv4 (outer IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14), 70
over IPv6. A full-size overlay packet that no longer fits the underlay is dropped (or
fragmented, then dropped by whatever blocks fragments): small requests work while TLS
handshakes and large responses hang.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Iterator

from cnidoctor.collectors.flannel import FlannelSubnetEnvCollector
from cnidoctor.collectors.network import LinksCollector, RoutesCollector
from cnidoctor.facts.cni import FlannelSubnetEnv
from cnidoctor.facts.network import Link, Links, Routes
from cnidoctor.models import Severity
from cnidoctor.rules.base import Hit, NodeContext, Rule

VXLAN_OVERHEAD_V4 = 50
VXLAN_OVERHEAD_V6 = 70


def vxlan_underlay(links: Links, vxlan: Link) -> Link | None:
    """The device VXLAN packets leave through: the pinned `dev`, else the holder of `local`."""
    info = vxlan.vxlan
    if info is None:
        return None
    if info.link:
        return links.by_name(info.link)
    if not info.local:
        return None  # external/collect_metadata devices (cilium_vxlan): no fixed underlay
    return next(
        (
            link
            for link in links.links
            if link.ifname != vxlan.ifname and any(a.local == info.local for a in link.addresses)
        ),
        None,
    )


def vxlan_overhead(vxlan: Link) -> int:
    local = vxlan.vxlan.local if vxlan.vxlan else None
    try:
        v6 = local is not None and ipaddress.ip_address(local).version == 6
    except ValueError:
        v6 = False
    return VXLAN_OVERHEAD_V6 if v6 else VXLAN_OVERHEAD_V4


class MtuMismatch(Rule):
    id = "mtu.mismatch"
    severity = Severity.WARNING
    title = "overlay MTU plus VXLAN overhead exceeds the underlay MTU"
    explanation = (
        "VXLAN wraps every pod packet in 50 more bytes, so the overlay MTU must be the "
        "underlay's minus 50. When it is larger (the underlay MTU was lowered, or the CNI "
        "picked it from another NIC), full-size packets are dropped: pings and small requests "
        "work while TLS handshakes and large responses hang."
    )
    needs = (LinksCollector, RoutesCollector, FlannelSubnetEnvCollector)
    fix = ("set the overlay MTU to the underlay MTU minus 50 (or raise the underlay MTU)",)
    causes = ("api.tls-handshake-timeout",)

    def check(self, node: NodeContext) -> Iterator[Hit]:
        links: Links = node.fact(LinksCollector)
        env: FlannelSubnetEnv | None = node.fact_or_none(FlannelSubnetEnvCollector)
        flannel_seen = False
        for link in links.links:
            if link.kind != "vxlan" or link.mtu is None:
                continue
            underlay = vxlan_underlay(links, link)
            if underlay is None or underlay.mtu is None:
                continue
            overhead = vxlan_overhead(link)
            limit = underlay.mtu - overhead
            is_flannel = link.ifname.startswith("flannel")
            env_line = self._env_line(env, limit, underlay) if is_flannel else None
            flannel_seen = flannel_seen or is_flannel
            if link.mtu <= limit and env_line is None:
                continue
            evidence = []
            if link.mtu > limit:
                evidence.append(
                    f"{link.ifname} mtu {link.mtu} + {overhead} bytes VXLAN overhead = "
                    f"{link.mtu + overhead} > {underlay.ifname} mtu {underlay.mtu}"
                )
            else:
                evidence.append(
                    f"{link.ifname} mtu {link.mtu} fits {underlay.ifname} mtu {underlay.mtu}"
                )
            if env_line:
                evidence.append(env_line)
            if link.mtu > limit:
                fix = _fix(link, underlay, limit, is_flannel, node)
            else:
                fix = _env_fix(limit, node)
            yield Hit(evidence=evidence, fix=fix)
        if not flannel_seen and env is not None and env.mtu is not None:
            underlay = self._default_device(node, links)
            if underlay is not None and underlay.mtu is not None:
                limit = underlay.mtu - VXLAN_OVERHEAD_V4
                line = self._env_line(env, limit, underlay)
                if line is not None:
                    yield Hit(
                        evidence=[
                            line,
                            "flannel.1 does not exist: compared with the device "
                            f"of the default route, {underlay.ifname}",
                        ],
                        fix=_env_fix(limit, node),
                    )

    @staticmethod
    def _env_line(env: FlannelSubnetEnv | None, limit: int, underlay: Link) -> str | None:
        if env is None or env.mtu is None or env.mtu <= limit:
            return None
        return (
            f"/run/flannel/subnet.env FLANNEL_MTU={env.mtu} > {underlay.ifname} mtu "
            f"{underlay.mtu} - {(underlay.mtu or 0) - limit} = {limit}: pods get interfaces "
            "larger than the overlay carries"
        )

    @staticmethod
    def _default_device(node: NodeContext, links: Links) -> Link | None:
        routes: Routes | None = node.fact_or_none(RoutesCollector)
        if routes is None:
            return None
        defaults = sorted(
            (r for r in routes.main_table("inet") if r.is_default and r.devices),
            key=lambda r: r.metric,
        )
        return links.by_name(defaults[0].devices[0]) if defaults else None


def _restart_flannel(node: NodeContext) -> str:
    service = "k3s" if node.role == "control-plane" else "k3s-agent"
    return (
        f"restart flannel so it derives the MTU from the underlay again: systemctl restart "
        f"{service} (k3s), or delete this node's kube-flannel pod"
    )


def _fix(link: Link, underlay: Link, limit: int, is_flannel: bool, node: NodeContext) -> list[str]:
    dev = shlex.quote(link.ifname)
    fix = [f"ip link set dev {dev} mtu {limit}"]
    if is_flannel:
        fix += [
            _restart_flannel(node),
            "then recreate the pods on this node so their interfaces take the new MTU",
        ]
    else:
        fix.append(f"set the CNI's overlay MTU to {limit} so it keeps it")
    if link.mtu is not None and underlay.mtu is not None:
        wanted = link.mtu + underlay.mtu - limit
        fix.append(
            f"or, if {underlay.ifname}'s MTU was lowered by mistake, restore it: "
            f"ip link set dev {shlex.quote(underlay.ifname)} mtu {wanted}"
        )
    return fix


def _env_fix(limit: int, node: NodeContext) -> list[str]:
    return [
        _restart_flannel(node) + f" (FLANNEL_MTU should become {limit})",
        "then recreate the pods on this node so their interfaces take the new MTU",
    ]


RULES: list[type[Rule]] = [MtuMismatch]
