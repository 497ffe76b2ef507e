"""flannel's node state: rebuild subnet.env from the API's podCIDR (safe), keep it across
reboots with the guard (safe, needs systemd), restart k3s so flannel re-reads it
(disruptive). Incident 001, minus the 01:30 hand-typing."""

from __future__ import annotations

import shlex

from cnidoctor.collectors.flannel import SUBNET_ENV, FlannelSubnetEnvCollector
from cnidoctor.collectors.k3s import K3sConfigCollector
from cnidoctor.collectors.network import LinksCollector
from cnidoctor.remediation import guard
from cnidoctor.remediation.model import Action, Check, Risk, Step
from cnidoctor.remediation.shell import action, action_call
from cnidoctor.remediation.steps.base import Builder, StepContext, make_step
from cnidoctor.rules.base import NodeContext
from cnidoctor.rules.flannel import (
    VXLAN_DEVICE,
    cluster_network,
    node_pod_cidr,
    subnet_env_content,
)

#: waits (bounded) for flannel to bring flannel.1 back after a restart
WAIT_FOR_VXLAN = (
    "i=0; until ip link show "
    + shlex.quote(VXLAN_DEVICE)
    + ' >/dev/null 2>&1; do i=$((i+1)); [ "$i" -lt 60 ] || exit 1; sleep 1; done'
)


def k3s_unit(node: NodeContext) -> str | None:
    """k3s.service or k3s-agent.service when the node runs k3s (its files or the API say
    so), else None (kube-flannel or another distribution)."""
    k3s = node.fact_or_none(K3sConfigCollector)
    kube = node.kube
    role: str | None = None
    if k3s is not None and (k3s.units or k3s.binary or k3s.data_dir):
        role = k3s.role or ("server" if node.role == "control-plane" else "agent")
    elif kube is not None and (
        "+k3s" in (kube.kubelet_version or "")
        or any(key.startswith("k3s.io/") for key in kube.annotations)
    ):
        role = _role_from_node_args(kube.k3s_node_args) or (
            "server" if node.role == "control-plane" else "agent"
        )
    if role is None:
        return None
    return "k3s.service" if role == "server" else "k3s-agent.service"


def _role_from_node_args(args: list[str] | None) -> str | None:
    return args[0] if args and args[0] in ("server", "agent") else None


def restart_flannel_step(ctx: StepContext, wait_for_vxlan: bool) -> Step:
    """Restart what runs flannel on the node: k3s (disruptive), or kube-flannel's pod
    (through the API: manual, `fix --apply` only acts on nodes)."""
    node = ctx.node
    assert node is not None
    unit = k3s_unit(node)
    if unit is None:
        selector = shlex.quote(f"spec.nodeName={node.name}")
        return make_step(
            ctx,
            key="restart-flannel",
            title=f"restart the kube-flannel pod on {node.name}",
            risk=Risk.MANUAL,
            instructions=[
                f"kubectl -n kube-flannel delete pod -l app=flannel --field-selector {selector}"
            ],
            notes=["runs against the API: `fix --apply` only acts on nodes"],
        )
    short = unit.removesuffix(".service")
    return make_step(
        ctx,
        key="restart-flannel",
        title=f"restart {short} on {node.name} (k3s's embedded flannel re-reads subnet.env)",
        risk=Risk.DISRUPTIVE,
        requires=[
            Check(
                run=f"test -d /run/systemd/system && systemctl cat {unit} >/dev/null 2>&1",
                reason=f"no {unit} on the node (systemd not running, or k3s not installed as "
                f"{unit}): restart {short} on {node.name} by hand",
            )
        ],
        actions=[action("systemctl", "restart", unit, timeout=120)],
        verify=[Action(run=f"systemctl is-active --quiet {unit}")]
        + ([Action(run=WAIT_FOR_VXLAN, timeout=65)] if wait_for_vxlan else []),
        undo=["# nothing to undo: a restart"],
        notes=["pods on the node keep running; the node's pod network restarts with k3s"],
    )


def _guard_settings(node: NodeContext) -> guard.GuardSettings:
    env = node.fact_or_none(FlannelSubnetEnvCollector)
    mtu = env.mtu if env is not None else None
    if mtu is None:
        content = subnet_env_content(node) or ""
        lines = [ln for ln in content.splitlines() if ln.startswith("FLANNEL_MTU=")]
        mtu = int(lines[0].split("=", 1)[1]) if lines else None
    # k3s keeps its state under /var/lib/rancher/k3s; elsewhere the copy gets its own dir
    backup = guard.DEFAULT_BACKUP if k3s_unit(node) else "/var/lib/cnidoctor/flannel-subnet.env"
    return guard.GuardSettings(
        pod_cidr=node_pod_cidr(node), network=cluster_network(node), mtu=mtu, backup=backup
    )


def guard_step(ctx: StepContext) -> Step:
    """The persistence of subnet.env: the guard's restore/backup units (needs systemd)."""
    node = ctx.node
    assert node is not None
    settings = _guard_settings(node)
    spec = ctx.spec(node.name) or "SPEC"
    command = ["cnidoctor", "guard", "flannel-subnet-env", "--node", spec]
    if settings.backup != guard.DEFAULT_BACKUP:
        command += ["--backup", settings.backup]
    if settings.pod_cidr:
        command += ["--pod-cidr", settings.pod_cidr]
    if settings.network:
        command += ["--cluster-cidr", settings.network]
    return make_step(
        ctx,
        key="guard-subnet-env",
        title=f"keep subnet.env across reboots on {node.name} (restore/backup units)",
        risk=Risk.SAFE,
        fixes=[],
        requires=guard.install_checks(),
        actions=guard.install_actions(settings),
        verify=guard.install_verify(settings),
        undo=guard.install_undo(settings),
        notes=[
            f"the same as: {shlex.join(command)}",
            f"{guard.RESTORE_UNIT} runs before k3s/k3s-agent/kubelet and restores "
            f"{SUBNET_ENV} from {settings.backup} (checked against podCIDR "
            f"{settings.pod_cidr or 'unknown'}); {guard.BACKUP_PATH_UNIT} persists it "
            "whenever flannel rewrites it",
        ],
    )


def subnet_env(ctx: StepContext) -> list[Step] | None:
    node = ctx.node
    if node is None:
        return None
    content = subnet_env_content(node)
    if content is None:
        return None  # no podCIDR from the API: the finding's fix says how to find it
    mismatch = ctx.finding.id == "flannel.subnet-env-mismatch"
    actions = []
    undo = [shlex.join(["rm", "-f", SUBNET_ENV]) + "  # it was absent"]
    if mismatch:
        old = SUBNET_ENV + ".cnidoctor-old"
        actions.append(action("cp", "-p", SUBNET_ENV, old))
        undo = [shlex.join(["mv", "-f", old, SUBNET_ENV])]
    actions.append(action_call("cnd_write", SUBNET_ENV, "0644", content))
    pod_cidr, network = node_pod_cidr(node), cluster_network(node)
    write = make_step(
        ctx,
        key="subnet-env",
        title=f"{'rewrite' if mismatch else 'rebuild'} {SUBNET_ENV} on {node.name} from its "
        f"podCIDR {pod_cidr}",
        risk=Risk.SAFE,
        actions=actions,
        verify=[action("test", "-s", SUBNET_ENV)],
        undo=undo,
        notes=[
            f"values: spec.podCIDR {pod_cidr} from the API -> FLANNEL_SUBNET="
            f"{guard.GuardSettings(pod_cidr=pod_cidr).expected_subnet}, cluster CIDR "
            f"{network} -> FLANNEL_NETWORK",
            "the CNI plugin reads the file on every new pod: no restart is needed for that",
        ],
    )
    steps = [write, guard_step(ctx)]
    if mismatch:
        # the running flanneld still holds the old lease: it must start again to take this one
        restart = restart_flannel_step(ctx, wait_for_vxlan=False)
        steps.append(restart)
    return steps


def vxlan_iface(ctx: StepContext) -> list[Step] | None:
    node = ctx.node
    if node is None:
        return None
    steps: list[Step] = []
    links = node.fact_or_none(LinksCollector)
    device = links.by_name(VXLAN_DEVICE) if links is not None else None
    if device is not None and not device.is_up:
        steps.append(
            make_step(
                ctx,
                key="flannel1-up",
                title=f"bring {VXLAN_DEVICE} up on {node.name}",
                risk=Risk.SAFE,
                actions=[action("ip", "link", "set", VXLAN_DEVICE, "up")],
                verify=[Action(run=f'test -n "$(ip link show dev {VXLAN_DEVICE} up)"')],
                undo=[shlex.join(["ip", "link", "set", VXLAN_DEVICE, "down"])],
            )
        )
    steps.append(restart_flannel_step(ctx, wait_for_vxlan=True))
    return steps


BUILDERS: dict[str, Builder] = {
    "flannel.subnet-env-missing": subnet_env,
    "flannel.subnet-env-mismatch": subnet_env,
    "flannel.vxlan-iface-missing": vxlan_iface,
}
