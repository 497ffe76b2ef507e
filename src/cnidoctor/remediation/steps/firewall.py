"""The host firewall and iptables: turn UFW/firewalld off (disruptive, incident 000) or
remove exactly the stale rules found; never a wholesale flush.

`ufw disable` leaves its (emptied) chains and the jumps into them behind, which still
looks like a ufw-managed node to anyone reading `iptables -L` at 01:30; the UFW step
removes exactly those jumps and chains, as read from the node.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

from cnidoctor.collectors.firewall import FirewalldCollector, UfwCollector
from cnidoctor.collectors.iptables import IptablesCollector
from cnidoctor.collectors.nftables import NftablesCollector
from cnidoctor.facts.firewall import Iptables
from cnidoctor.remediation.model import Action, Check, Risk, Step
from cnidoctor.remediation.shell import action, action_call
from cnidoctor.remediation.steps.base import Builder, StepContext, make_step
from cnidoctor.rules.iptables import CNI_CHAIN_PREFIXES

UFW_PREFIXES = ("ufw-", "ufw6-")


def _rule_args(text: str) -> list[str]:
    """`-A CHAIN args...` (iptables-save) -> args."""
    return shlex.split(text)[2:]


def chain_removal(ipt: Iptables, doomed: Callable[[str], bool]) -> tuple[list[Action], list[str]]:
    """Delete the jumps into the doomed chains, then flush and delete those chains.

    `doomed(chain_name)` says which chains go. Returns the actions and their exact undo
    (recreate the chains, their rules, and the jumps at their old positions).
    """
    deletes: list[Action] = []
    flushes: list[Action] = []
    drops: list[Action] = []
    undo_chains: list[str] = []
    undo_rules: list[str] = []
    undo_jumps: list[str] = []
    for rs in ipt.rulesets:
        tool = rs.label
        for table in rs.tables.values():
            gone = [c for c in table.chains if doomed(c)]
            if not gone:
                continue
            for chain in table.chains.values():
                if chain.name in gone:
                    continue
                for position, rule in enumerate(chain.rules, start=1):
                    if rule.target in gone:
                        args = _rule_args(rule.text)
                        deletes.append(
                            action_call("cnd_ipt_delete", tool, table.name, chain.name, *args)
                        )
                        undo_jumps.append(
                            shlex.join(
                                [tool, "-t", table.name, "-I", chain.name, str(position), *args]
                            )
                        )
            for name in gone:
                flushes.append(action_call("cnd_ipt_flush_chain", tool, table.name, name))
                drops.append(action_call("cnd_ipt_delete_chain", tool, table.name, name))
                undo_chains.append(shlex.join([tool, "-t", table.name, "-N", name]))
                undo_rules += [
                    shlex.join([tool, "-t", table.name, "-A", name, *_rule_args(r.text)])
                    for r in table.chains[name].rules
                ]
    return [*deletes, *flushes, *drops], [*undo_chains, *undo_rules, *undo_jumps]


def _ufw_active(ctx: StepContext) -> bool:
    ufw = ctx.fact(UfwCollector)
    ipt: Iptables | None = ctx.fact(IptablesCollector)
    chains = ipt is not None and any(
        name.startswith(UFW_PREFIXES) for rs in ipt.rulesets for name in rs.chain_names()
    )
    return bool((ufw is not None and ufw.enabled) or chains)


def _firewalld_active(ctx: StepContext) -> bool:
    firewalld = ctx.fact(FirewalldCollector)
    nft = ctx.fact(NftablesCollector)
    table = nft.table("inet", "firewalld") if nft is not None else None
    return bool((firewalld is not None and firewalld.running) or table)


def ufw_step(ctx: StepContext) -> Step:
    ipt: Iptables | None = ctx.fact(IptablesCollector)
    leftovers = chain_removal(ipt, lambda c: c.startswith(UFW_PREFIXES))[0] if ipt else []
    keep = [f for f in ctx.finding.fix if f.startswith("ufw allow")]
    notes = [
        "ufw disable writes ENABLED=no to /etc/ufw/ufw.conf: UFW stays off after a reboot",
        "afterwards its emptied chains and the jumps into them are removed, exactly those read "
        "from the node (no iptables flush: kube-proxy's and the CNI's rules stay)",
    ]
    if keep:
        notes.append("to keep UFW instead, allow what the cluster needs: " + "; ".join(keep))
    return make_step(
        ctx,
        key="ufw",
        title="disable UFW (its INPUT DROP blocks cluster ports)",
        risk=Risk.DISRUPTIVE,
        requires=[Check(run="command -v ufw >/dev/null", reason="ufw is not installed")],
        actions=[action("ufw", "disable", timeout=60), *leftovers],
        verify=[Action(run="ufw status | grep -qx 'Status: inactive'")],
        undo=["ufw --force enable  # recreates its chains and rules from /etc/ufw"],
        notes=notes,
    )


def firewalld_step(ctx: StepContext) -> Step:
    keep = [f for f in ctx.finding.fix if f.startswith("firewall-cmd")]
    notes = ["systemctl disable keeps it off after a reboot"]
    if keep:
        notes.append("to keep firewalld instead: " + "; ".join(keep))
    return make_step(
        ctx,
        key="firewalld",
        title="stop and disable firewalld",
        risk=Risk.DISRUPTIVE,
        requires=[
            Check(
                run="systemctl cat firewalld.service >/dev/null 2>&1",
                reason="no firewalld.service unit (systemd not running or firewalld not installed)",
            )
        ],
        actions=[action("systemctl", "disable", "--now", "firewalld", timeout=60)],
        verify=[Action(run="! systemctl is-active --quiet firewalld")],
        undo=["systemctl enable --now firewalld"],
        notes=notes,
    )


def host_firewall(ctx: StepContext) -> list[Step] | None:
    """The firewall family shares one step per tool: disabling it clears all three ids."""
    if _ufw_active(ctx):
        return [ufw_step(ctx)]
    if _firewalld_active(ctx):
        return [firewalld_step(ctx)]
    return None  # a hand-made DROP: which ports to open, in which tool, is a human's call


def stale_rules(ctx: StepContext) -> list[Step] | None:
    ipt: Iptables | None = ctx.fact(IptablesCollector)
    in_use = ctx.cluster.cluster.cni
    if ipt is None or in_use == "auto":
        return None  # which CNI is stale is a human decision when the CNI is not configured
    stale = {cni for cni in CNI_CHAIN_PREFIXES if cni != in_use}

    def doomed(chain: str) -> bool:
        return any(chain.startswith(CNI_CHAIN_PREFIXES[cni]) for cni in stale)

    actions, undo = chain_removal(ipt, doomed)
    if not actions:
        return None
    names = [name for rs in ipt.rulesets for name in rs.chain_names()]
    owners = sorted(c for c in stale if any(n.startswith(CNI_CHAIN_PREFIXES[c]) for n in names))
    return [
        make_step(
            ctx,
            key="iptables-stale",
            title=f"remove the iptables chains of {', '.join(owners) or 'the old CNI'} "
            "(exactly the ones found)",
            risk=Risk.DISRUPTIVE,
            actions=actions,
            undo=undo,
            notes=[
                "only the jumps into the stale chains and those chains are deleted; "
                "nothing is flushed wholesale",
                f"restart the {in_use} agent afterwards so it re-checks its own rules",
            ],
        )
    ]


BUILDERS: dict[str, Builder] = {
    "firewall.host-firewall-active": host_firewall,
    "firewall.input-drop-blocks-cluster-ports": host_firewall,
    "firewall.forward-drop": host_firewall,
    "iptables.stale-rules": stale_rules,
}
