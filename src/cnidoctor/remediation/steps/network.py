"""NIC and overlay settings that have a safe, documented fix: flannel.1's checksum offload."""

from __future__ import annotations

import shlex

from cnidoctor.remediation.model import Action, Risk, Step
from cnidoctor.remediation.shell import action
from cnidoctor.remediation.steps.base import Builder, StepContext, make_step
from cnidoctor.rules.flannel import VXLAN_DEVICE

#: the udev rule that re-applies the workaround whenever flannel recreates flannel.1
UDEV_RULE = (
    'ACTION=="add", SUBSYSTEM=="net", KERNEL=="flannel.*", '
    'RUN+="/usr/sbin/ethtool -K %k tx-checksum-ip-generic off"'
)
UDEV_FILE = "/etc/udev/rules.d/90-flannel-tx-checksum.rules"


def offload(ctx: StepContext) -> list[Step] | None:
    if ctx.node is None:
        return None
    return [
        make_step(
            ctx,
            key="vxlan-offload",
            title=f"turn off tx checksum offload on {VXLAN_DEVICE} (flannel's workaround)",
            risk=Risk.SAFE,
            actions=[action("ethtool", "-K", VXLAN_DEVICE, "tx-checksum-ip-generic", "off")],
            verify=[
                Action(run=f"ethtool -k {VXLAN_DEVICE} | grep -q '^tx-checksum-ip-generic: off'")
            ],
            undo=[shlex.join(["ethtool", "-K", VXLAN_DEVICE, "tx-checksum-ip-generic", "on"])],
            notes=[
                "flannel recreates flannel.1 on every start, which turns offload back on: "
                f"persist it by hand with a udev rule ({UDEV_FILE}: {UDEV_RULE}) or the "
                "equivalent networkd .link / NixOS setting (distribution-specific, not written "
                "by fix --apply)"
            ],
        )
    ]


BUILDERS: dict[str, Builder] = {"nic.offload-bug": offload}
