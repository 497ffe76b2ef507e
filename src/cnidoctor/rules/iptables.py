"""iptables state: rules split over the legacy and nft backends; chains of another CNI."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from functools import lru_cache

from cnidoctor.collectors.iptables import IptablesCollector
from cnidoctor.facts.firewall import BUILTIN_CHAINS, Iptables, IptRuleset
from cnidoctor.models import Severity
from cnidoctor.rules.base import Hit, NodeContext, Rule

#: at most this many generated delete commands per finding; the rest are summarised
MAX_COMMANDS = 25


def _summary(rs: IptRuleset) -> str:
    tables = ", ".join(
        f"{t.name} ({t.rule_count} rules)"
        for t in rs.tables.values()
        if t.rule_count or any(c.policy not in (None, "ACCEPT") for c in t.chains.values())
    )
    return f"{rs.label}-save: {rs.rule_count} rules: {tables}"


def _delete(tool: str, table: str, text: str) -> str:
    """`-A CHAIN args` -> `TOOL -t TABLE -D CHAIN args`, quoted (the text is node data)."""
    words = shlex.split(text)
    return shlex.join([tool, "-t", table, "-D", *words[1:]])


def _cap(commands: list[str]) -> list[str]:
    if len(commands) <= MAX_COMMANDS:
        return commands
    return [*commands[:MAX_COMMANDS], f"... and {len(commands) - MAX_COMMANDS} more like these"]


class BackendMismatch(Rule):
    id = "iptables.backend-mismatch"
    severity = Severity.WARNING
    title = "iptables rules are split between the legacy and nft backends"
    explanation = (
        "The kernel applies both the iptables-legacy and the nf_tables rules, but each tool "
        "only shows and updates its own side. Rules left in the other backend (an old "
        "kube-proxy, Docker, a CNI started with the other iptables binary) keep dropping or "
        "rewriting traffic where nobody looks for them."
    )
    needs = (IptablesCollector,)
    fix = ("keep one backend: back up and delete the rules of the side your iptables does not use",)

    def check(self, node: NodeContext) -> Iterator[Hit]:
        ipt: Iptables = node.fact(IptablesCollector)
        for family in ("ipv4", "ipv6"):
            nft, legacy = ipt.get("nft", family), ipt.get("legacy", family)
            if nft is None or legacy is None:
                continue
            if not (legacy.is_populated and nft.is_populated):  # legacy: mostly empty
                continue
            evidence = [_summary(nft), _summary(legacy)]
            evidence += [w for w in ipt.warnings if "legacy tables present" in w][:1]
            if ipt.default_backend in ("nft", "legacy"):
                stale = legacy if ipt.default_backend == "nft" else nft
                evidence.append(f"`iptables` on this node uses the {ipt.default_backend} backend")
            else:
                stale = min((nft, legacy), key=lambda r: r.rule_count)
                evidence.append(f"assuming the side with fewer rules ({stale.label}) is stale")
            yield Hit(evidence=evidence, fix=_cleanup(stale))


def _cleanup(stale: IptRuleset) -> list[str]:
    tool = stale.label
    fix = [f"{tool}-save > /root/{tool}.backup"]
    deletes: list[str] = []
    user_chains: list[tuple[str, str]] = []
    for table in stale.tables.values():
        for chain in table.chains.values():
            deletes += [_delete(tool, table.name, r.text) for r in chain.rules]
            if chain.name not in BUILTIN_CHAINS:
                user_chains.append((table.name, chain.name))
    deletes += [shlex.join([tool, "-t", t, "-X", c]) for t, c in user_chains]
    policies = [
        shlex.join([tool, "-t", table.name, "-P", chain.name, "ACCEPT"])
        for table in stale.tables.values()
        for chain in table.chains.values()
        if chain.policy not in (None, "ACCEPT")
    ]
    return fix + _cap(deletes + policies)


#: chain-name prefixes each CNI (or CNI-like agent) creates
CNI_CHAIN_PREFIXES: dict[str, tuple[str, ...]] = {
    "calico": ("cali-",),
    "cilium": ("CILIUM_", "OLD_CILIUM_"),
    "kube-router": ("KUBE-ROUTER-",),
    "flannel": ("FLANNEL-",),
    "weave": ("WEAVE-", "WEAVE"),
}


def _owner(chain: str) -> str | None:
    for cni, prefixes in CNI_CHAIN_PREFIXES.items():
        if chain.startswith(prefixes):
            return cni
    return None


@lru_cache(maxsize=1 << 10)
def _owned_chains(chains: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(CNI, chain) for a table's chains that a CNI creates. Cached: the nodes of a
    cluster have the same chains."""
    return tuple((owner, chain) for chain in chains if (owner := _owner(chain)))


class StaleRules(Rule):
    id = "iptables.stale-rules"
    severity = Severity.WARNING
    title = "iptables chains of a CNI that is not the one in use"
    explanation = (
        "A CNI that was replaced without cleanup leaves its chains and the jumps into them: "
        "calico's cali-* or cilium's CILIUM_* rules keep accepting, dropping or marking "
        "packets next to the new CNI's rules, which shows up as unexplained drops or "
        "double NAT."
    )
    needs = (IptablesCollector,)
    fix = ("delete the jumps into the stale chains, then the chains themselves",)

    def check(self, node: NodeContext) -> Iterator[Hit]:
        ipt: Iptables = node.fact(IptablesCollector)
        found: dict[str, list[tuple[IptRuleset, str, str]]] = {}
        for rs in ipt.rulesets:
            for table in rs.tables.values():
                for owner, chain in _owned_chains(tuple(table.chains)):
                    found.setdefault(owner, []).append((rs, table.name, chain))
        in_use = node.cluster.cni
        if in_use == "auto":
            if len(found) < 2:
                return
            stale = sorted(found)
            note = (
                f"chains of {', '.join(stale)} coexist and the CNI in use is not configured "
                "(cluster cni: auto): only the stale side's chains should be removed"
            )
        else:
            stale = sorted(cni for cni in found if cni != in_use)
            note = f"the cluster's CNI is {in_use}"
        if not stale:
            return
        evidence = [note]
        for cni in stale:
            by_where: dict[str, list[str]] = {}
            for rs, table, chain in found[cni]:
                by_where.setdefault(f"{rs.label} {table}", []).append(chain)
            for where, chains in by_where.items():
                shown = ", ".join(chains[:6]) + (", ..." if len(chains) > 6 else "")
                evidence.append(f"{where}: {len(chains)} {cni} chains: {shown}")
        fix = None if in_use == "auto" else _remove_chains(ipt, set(stale))
        yield Hit(evidence=evidence, fix=fix)


def _remove_chains(ipt: Iptables, stale: set[str]) -> list[str]:
    """Delete jumps into stale chains from other chains, then flush and delete those chains."""
    refs: list[str] = []
    flush: list[str] = []
    drop: list[str] = []
    for rs in ipt.rulesets:
        tool = rs.label
        for table in rs.tables.values():
            doomed = {c for c in table.chains if _owner(c) in stale}
            for chain in table.chains.values():
                if chain.name in doomed:
                    continue
                refs += [
                    _delete(tool, table.name, r.text) for r in chain.rules if r.target in doomed
                ]
            for c in sorted(doomed):
                flush.append(shlex.join([tool, "-t", table.name, "-F", c]))
                drop.append(shlex.join([tool, "-t", table.name, "-X", c]))
    restart = "restart the CNI agent of the CNI in use afterwards so it re-checks its own rules"
    return [*_cap(refs + flush + drop), restart]


RULES: list[type[Rule]] = [BackendMismatch, StaleRules]
