"""Step builders, keyed by catalog id; every other finding becomes a manual step.

Each family module exports BUILDERS (id -> function). The manual reasons below say why a
finding without a builder is left to a human: that is part of the plan, not a gap in it.
"""

from __future__ import annotations

from cnidoctor.remediation.model import Risk, Step
from cnidoctor.remediation.steps import cni, firewall, flannel, kernel, network
from cnidoctor.remediation.steps.base import Builder, StepContext, make_step

BUILDERS: dict[str, Builder] = {
    **kernel.BUILDERS,
    **firewall.BUILDERS,
    **cni.BUILDERS,
    **flannel.BUILDERS,
    **network.BUILDERS,
}

_API = "acts on the Kubernetes API (kubectl), which `fix --apply` never touches"
_UPLINK = "needs a human decision: which interface is the node's uplink"
#: why a finding without a builder is manual
MANUAL_REASONS: dict[str, str] = {
    "route.multiple-default": _UPLINK + " (the other default route goes)",
    "iface.multi-nic-ambiguous": _UPLINK + " (the CNI is pinned to it)",
    "iface.wrong-interface-selected": _UPLINK,
    "egress.no-snat": _UPLINK + " (the CNI masquerades on it)",
    "route.prefix-inconsistent": "needs a human decision: the prefix every node should use",
    "addr.host-overlaps-cluster-cidr": "needs a human decision: renumber the host network "
    "or the cluster",
    "addr.node-ip-changed": "needs a human decision: pin the address or re-register the node",
    "route.duplicate-connected-route": "needs a human decision: which interface keeps the route",
    "mtu.mismatch": "needs a human decision: the MTU every node should use",
    "iptables.backend-mismatch": "needs a human decision: which iptables backend is stale",
    "cni.config-conflict": "needs a human decision: which CNI the node runs",
    "cni.config-missing": "the CNI's agent writes its config: restart it (or k3s)",
    "cni.stale-bridge-address": "deleting cni0 cuts every pod on the node: drain it first",
    "kernel.ipv6-disabled": "needs a reboot with another kernel command line",
    "netmgr.interferes": "network manager configuration is distribution-specific",
    "neigh.duplicate-mac": "on another host (router or switch): clear its neighbour cache",
    "underlay.vxlan-port-blocked": "outside the nodes (hypervisor or cloud firewall)",
    "node.podcidr-missing": _API,
    "node.ready-but-cni-broken": _API,
    "pods.stale-unknown": _API,
    "pods.cni-crashloop": _API,
    "kubelet.unreachable": "a symptom: check again once its cause is fixed",
    "api.unreachable": "a symptom: check again once its cause is fixed",
    "api.tls-handshake-timeout": "a symptom: check again once its cause is fixed",
}


def manual_step(ctx: StepContext) -> Step:
    """The finding's own fix, for a human: printed, never run."""
    finding = ctx.finding
    notes = [MANUAL_REASONS.get(finding.id, "no automatic fix is known for this finding")]
    if finding.caused_by:
        notes.append(
            f"follows from {', '.join(finding.caused_by)}: it may clear once that is fixed"
        )
    step = make_step(
        ctx,
        key=f"manual:{finding.key}",
        title=finding.title,
        risk=Risk.MANUAL,
        instructions=list(finding.fix),
        notes=notes,
    )
    if len(finding.nodes) != 1:
        step.node, step.spec = None, None
    return step


__all__ = ["BUILDERS", "MANUAL_REASONS", "StepContext", "manual_step"]
