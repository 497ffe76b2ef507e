"""Host firewall state: iptables rulesets per backend, the nftables ruleset, ufw and firewalld.

Rules keep their original text (for evidence) next to the matches the evaluator in
`cnidoctor.analysis.netfilter` understands; anything else is kept as "unknown" so the
evaluator can say it could not judge it instead of guessing.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import Field

from cnidoctor.facts.base import FactModel

#: iptables' built-in chains: the hook each one sits on
BUILTIN_CHAINS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
#: tables iptables-nft creates in nftables (families ip / ip6), by these exact names
XTABLES_TABLES = frozenset({"filter", "nat", "mangle", "raw", "security"})


class PortMatch(FactModel):
    """`--dport`/`--dports` (also `--sport`): single ports and ranges, possibly negated."""

    ranges: list[tuple[int, int]] = Field(description="inclusive (first, last) port ranges")
    negated: bool = False

    def contains(self, port: int) -> bool:
        inside = any(lo <= port <= hi for lo, hi in self.ranges)
        return inside != self.negated


class AddrMatch(FactModel):
    """`-s`/`-d` (or iprange): a network, possibly negated."""

    value: str = Field(description="a network (CIDR) or first-last range")
    negated: bool = False


class NameMatch(FactModel):
    """A matched name or keyword list: `-i eth0`, `--ctstate NEW,ESTABLISHED`, `-p tcp`."""

    values: list[str]
    negated: bool = False


class IptRule(FactModel):
    """One `-A CHAIN ...` line of iptables-save."""

    text: str = Field(description="the line as iptables-save printed it")
    chain: str
    protocol: NameMatch | None = None
    dport: PortMatch | None = None
    sport: PortMatch | None = None
    #: multiport --ports (either port matches)
    anyport: PortMatch | None = None
    src: AddrMatch | None = None
    dst: AddrMatch | None = None
    in_iface: NameMatch | None = None
    out_iface: NameMatch | None = None
    ctstate: NameMatch | None = None
    src_type: NameMatch | None = None
    dst_type: NameMatch | None = None
    pkt_type: NameMatch | None = None
    #: `--mark`/connmark value/mask with negation, as written
    mark: NameMatch | None = None
    fragment: bool | None = Field(default=None, description="-f (True) / ! -f (False)")
    syn: bool | None = Field(default=None, description="--syn or SYN-only --tcp-flags")
    comment: str | None = None
    #: matches that only limit rate (first packet passes): -m limit
    rate_limited: bool = False
    target: str | None = Field(default=None, description="-j/-g target, None for none")
    goto: bool = False
    target_args: list[str] = Field(default_factory=list)
    unknown: list[str] = Field(
        default_factory=list, description="matches or options the evaluator cannot judge"
    )


class IptChain(FactModel):
    name: str
    policy: str | None = Field(default=None, description="ACCEPT/DROP for built-ins, None else")
    rules: list[IptRule] = Field(default_factory=list)


class IptTable(FactModel):
    name: str
    chains: dict[str, IptChain] = Field(default_factory=dict)

    @property
    def rule_count(self) -> int:
        return sum(len(c.rules) for c in self.chains.values())


class IptRuleset(FactModel):
    """One backend's view (`iptables-nft-save`, `iptables-legacy-save`...) of one family."""

    backend: str = Field(description="nft, legacy, or default (plain iptables-save)")
    family: str = Field(default="ipv4", description="ipv4 or ipv6")
    tables: dict[str, IptTable] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        tool = "ip6tables" if self.family == "ipv6" else "iptables"
        return tool if self.backend == "default" else f"{tool}-{self.backend}"

    @property
    def rule_count(self) -> int:
        return sum(t.rule_count for t in self.tables.values())

    @property
    def is_populated(self) -> bool:
        """Holds any rule, or a built-in chain whose policy is not ACCEPT."""
        if self.rule_count:
            return True
        chains = [c for t in self.tables.values() for c in t.chains.values()]
        return any(c.policy not in (None, "ACCEPT") for c in chains)

    def chain(self, table: str, name: str) -> IptChain | None:
        t = self.tables.get(table)
        return t.chains.get(name) if t else None

    def chain_names(self) -> list[str]:
        return [name for t in self.tables.values() for name in t.chains]


class Iptables(FactModel):
    """Every iptables ruleset that could be read, per backend and family."""

    rulesets: list[IptRuleset] = Field(default_factory=list)
    #: warnings the tools printed (e.g. legacy tables present)
    warnings: list[str] = Field(default_factory=list)
    #: the backend plain `iptables` uses here (from iptables-save's header), when known
    default_backend: str | None = None

    def get(self, backend: str, family: str = "ipv4") -> IptRuleset | None:
        return next((r for r in self.rulesets if r.backend == backend and r.family == family), None)

    def ipv4(self) -> list[IptRuleset]:
        return [r for r in self.rulesets if r.family == "ipv4"]


class NftMatch(FactModel):
    """A comparison the evaluator can judge, normalised from nft JSON."""

    field: str = Field(
        description="l4proto, dport, sport, saddr, daddr, iifname, oifname, ct state, "
        "fib daddr type, pkttype, nfproto, mark"
    )
    op: str = Field(default="==", description="==, !=, in, <, >, <=, >=")
    values: list[str] = Field(description="ports, 'a-b' ranges, prefixes, names")
    proto: str | None = Field(default=None, description="tcp/udp for tcp dport; None for th")
    family: str | None = Field(default=None, description="ip or ip6 for address matches")


class NftStatement(FactModel):
    """One expression of an nft rule, normalised."""

    kind: str = Field(
        description="match, vmap, accept, drop, reject, jump, goto, return, continue, "
        "queue, noop (counter/log/...), limit, masquerade, snat, unknown"
    )
    match: NftMatch | None = None
    target: str | None = Field(default=None, description="jump/goto chain")
    #: vmap: key + (value, verdict kind, target) entries
    vmap: list[tuple[str, str, str | None]] = Field(default_factory=list)
    raw: str | None = Field(default=None, description="the JSON of an unknown expression")


class NftRule(FactModel):
    handle: int | None = None
    comment: str | None = None
    statements: list[NftStatement] = Field(default_factory=list)
    text: str = Field(default="", description="a readable rendering, for evidence")


class NftChain(FactModel):
    family: str
    table: str
    name: str
    type: str | None = None
    hook: str | None = None
    prio: int | None = None
    policy: str | None = None
    rules: list[NftRule] = Field(default_factory=list)

    @property
    def is_base(self) -> bool:
        return self.hook is not None


class NftTable(FactModel):
    family: str
    name: str
    chains: dict[str, NftChain] = Field(default_factory=dict)
    #: an iptables-nft table (`is_iptables_nft`) is read only for its base chains: its rules
    #: (counted here) and its user chains are iptables-nft's, read from `iptables-nft-save`
    #: (`nft -j` repeats them as 80 KB of JSON per kube-proxy node)
    rules_elided: int = 0

    @property
    def label(self) -> str:
        return f"{self.family} {self.name}"

    @property
    def is_iptables_nft(self) -> bool:
        """A table iptables-nft manages (its rules are read from `iptables-nft-save`)."""
        return is_iptables_nft_table(
            self.family, self.name, [c.name for c in self.chains.values() if c.is_base]
        )


def is_iptables_nft_table(family: str, name: str, base_chains: Iterable[str]) -> bool:
    """iptables-nft creates tables of family ip/ip6 named filter/nat/mangle/raw/security
    whose base chains carry iptables' upper-case built-in names (INPUT, FORWARD...); native
    nftables configurations use other families, names or lower-case chains."""
    if family not in ("ip", "ip6") or name not in XTABLES_TABLES:
        return False
    return all(chain in BUILTIN_CHAINS for chain in base_chains)


class Nftables(FactModel):
    tables: list[NftTable] = Field(default_factory=list)

    def table(self, family: str, name: str) -> NftTable | None:
        return next((t for t in self.tables if t.family == family and t.name == name), None)

    def native_tables(self) -> list[NftTable]:
        return [t for t in self.tables if not t.is_iptables_nft]


class Ufw(FactModel):
    enabled: bool
    default_input_policy: str | None = Field(default=None, description="DROP, REJECT, ACCEPT")
    default_forward_policy: str | None = None


class Firewalld(FactModel):
    running: bool
    state: str = Field(description="what firewall-cmd --state printed")
