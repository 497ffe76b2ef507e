"""Kernel modules and sysctls: load or set now, and the modules-load.d/sysctl.d lines that
make it survive a reboot (incident 000's `modprobe br_netfilter` plus its two files)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from cnidoctor.collectors.sysctl import SysctlCollector
from cnidoctor.remediation.model import Action, Risk, Step
from cnidoctor.remediation.shell import action, action_call
from cnidoctor.remediation.steps.base import Builder, StepContext, make_step, sed_delete_line

SYSCTL_CONF = "/etc/sysctl.d/99-kubernetes.conf"


@dataclass(frozen=True)
class ModuleFix:
    modules: tuple[str, ...]
    #: the modules-load.d file that loads them at boot
    conf: str
    #: what exists once they are loaded
    proof: str
    #: sysctls to set with them (bridge-nf-call-* appear only once br_netfilter is loaded)
    sysctls: tuple[tuple[str, str], ...] = ()


MODULE_FIXES: dict[str, ModuleFix] = {
    "kernel.br-netfilter-missing": ModuleFix(
        modules=("br_netfilter",),
        conf="/etc/modules-load.d/k8s.conf",
        proof="/proc/sys/net/bridge/bridge-nf-call-iptables",
        sysctls=(
            ("net.bridge.bridge-nf-call-iptables", "1"),
            ("net.bridge.bridge-nf-call-ip6tables", "1"),
        ),
    ),
    "kube-proxy.ipvs-unavailable": ModuleFix(
        modules=("ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack"),
        conf="/etc/modules-load.d/ipvs.conf",
        proof="/proc/net/ip_vs",
    ),
}

#: sysctl findings: (the bad value the evidence shows, the value that fixes it)
SYSCTL_FIXES: dict[str, tuple[str, str]] = {
    "sysctl.ip-forward-off": ("0", "1"),
    "sysctl.bridge-nf-call-off": ("0", "1"),
    "sysctl.rp-filter-strict": ("1", "2"),
}
_EVIDENCE_SETTING = re.compile(r"^(net\.[A-Za-z0-9_./-]+) = (\S+)")


def load_modules(ctx: StepContext) -> list[Step] | None:
    fix = MODULE_FIXES[ctx.finding.id]
    names = " and ".join(fix.modules) if len(fix.modules) < 3 else ", ".join(fix.modules)
    load = (
        action("modprobe", *fix.modules)
        if len(fix.modules) == 1
        else action("modprobe", "-a", *fix.modules)
    )
    actions = [load]
    if fix.sysctls:
        actions.append(action("sysctl", "-w", *(f"{k}={v}" for k, v in fix.sysctls)))
    persist = [action_call("cnd_ensure_line", fix.conf, m) for m in fix.modules]
    persist += [action_call("cnd_ensure_sysctl", SYSCTL_CONF, k, v) for k, v in fix.sysctls]
    undo = [shlex.join(["modprobe", "-r", *fix.modules]) + "  # refused while in use"]
    undo += [sed_delete_line(fix.conf, m) for m in fix.modules]
    undo += [sed_delete_line(SYSCTL_CONF, f"{k} = {v}") for k, v in fix.sysctls]
    notes = [f"at boot: {fix.conf} loads {'it' if len(fix.modules) == 1 else 'them'}"]
    if fix.sysctls:
        notes.append(f"at boot: {SYSCTL_CONF} sets {', '.join(k for k, _ in fix.sysctls)}")
    if ctx.finding.id == "kernel.br-netfilter-missing":
        notes.append("restart the CNI pod (or k3s) if it crashlooped on the missing module")
    step = make_step(
        ctx,
        key=f"modules:{fix.conf}",
        title=f"load {names} now and at every boot",
        risk=Risk.SAFE,
        actions=actions,
        persist=persist,
        verify=[action("test", "-e", fix.proof)],
        undo=undo,
        notes=notes,
    )
    return [step]


def set_sysctls(ctx: StepContext) -> list[Step] | None:
    bad, good = SYSCTL_FIXES[ctx.finding.id]
    sysctls = ctx.fact(SysctlCollector)
    keys: list[tuple[str, str]] = []
    for text in ctx.finding.evidence:
        match = _EVIDENCE_SETTING.match(text)
        if match and match.group(2) == bad:
            key = match.group(1)
            # the facts must agree: never set a key the node does not show with the bad value
            if sysctls is None or sysctls.get(key) == bad:
                keys.append((key, good))
    if not keys:
        return None
    actions: list[Action] = [action("sysctl", "-w", *(f"{k}={v}" for k, v in keys))]
    persist = [action_call("cnd_ensure_sysctl", SYSCTL_CONF, k, v) for k, v in keys]
    verify = [
        Action(run=f'test "$(sysctl -n {shlex.quote(k)})" = {shlex.quote(v)}') for k, v in keys
    ]
    undo = [shlex.join(["sysctl", "-w", *(f"{k}={bad}" for k, _ in keys)])]
    undo += [sed_delete_line(SYSCTL_CONF, f"{k} = {v}") for k, v in keys]
    notes = [f"at boot: {SYSCTL_CONF} sets the same values"]
    if any(".conf." in k and ".all." not in k and ".default." not in k for k, _ in keys):
        notes.append(
            "per-interface keys apply at boot only to interfaces that exist when "
            "systemd-sysctl runs; the `all` key covers the rest"
        )
    step = make_step(
        ctx,
        key=f"sysctl:{ctx.finding.id}",
        title="set " + ", ".join(f"{k}={v}" for k, v in keys) + " now and at every boot",
        risk=Risk.SAFE,
        actions=actions,
        persist=persist,
        verify=verify,
        undo=undo,
        notes=notes,
    )
    return [step]


BUILDERS: dict[str, Builder] = {
    **{finding_id: load_modules for finding_id in MODULE_FIXES},
    **{finding_id: set_sysctls for finding_id in SYSCTL_FIXES},
}
