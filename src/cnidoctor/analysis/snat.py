"""Would a pod's packet to the outside be masqueraded on its way out? A pure NAT walk.

What is walked, for a NEW IPv4 packet from a pod address to an outside address leaving
by a given interface: the nat POSTROUTING chain of every iptables backend that has one
(legacy and nft rules both apply), and every native nftables base chain of type nat on
the postrouting hook (tables iptables-nft manages are skipped when the iptables-nft
ruleset was read: they are the same rules). The first MASQUERADE/SNAT (nft `masquerade`,
`snat`) whose matches hold binds the NAT; ACCEPT ends the table without NAT; RETURN
returns; jumps and gotos are followed; marks are 0 (kube-proxy's and flannel's
"masquerade what I marked" chains therefore return). Matches the walk cannot judge
(ipset, unknown modules) make the verdict uncertain, as in analysis.netfilter, whose
match functions this walk uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cnidoctor.analysis.netfilter import Packet, _ipt_match, _nft_match
from cnidoctor.facts.firewall import IptChain, IptRuleset, Nftables, NftChain

MAX_DEPTH = 32
NAT_TARGETS = frozenset({"MASQUERADE", "SNAT"})


@dataclass
class NatVerdict:
    """Whether the packet is source-NATed, by which rule, and how sure the walk is."""

    nat: bool
    #: the rule that NATs it, or why nothing does ("policy ACCEPT of nat POSTROUTING")
    decided_by: str
    #: where: "iptables-nft nat POSTROUTING", "nft ip nat postrouting"
    where: str = ""
    uncertain: bool = False
    notes: list[str] = field(default_factory=list)
    #: every table walked, for evidence
    walked: list[str] = field(default_factory=list)


def egress_packet(src: str, dst: str, out_iface: str, dport: int = 443) -> Packet:
    return Packet(proto="tcp", dport=dport, src=src, dst=dst, out_iface=out_iface, hook="post")


class _Walk:
    def __init__(self, packet: Packet) -> None:
        self.packet = packet
        self.notes: list[str] = []
        self.uncertain = False

    def note(self, text: str) -> None:
        self.uncertain = True
        if text not in self.notes:
            self.notes.append(text)

    # outcomes: ("nat", rule) | ("accept", rule) | ("return", None)
    def ipt(
        self, chain: IptChain, chains: dict[str, IptChain], depth: int
    ) -> tuple[str, str | None]:
        for rule in chain.rules:
            matched, why = _ipt_match(rule, self.packet)  # the matches only: targets below
            if matched is False:
                continue
            target = rule.target
            if matched is None:
                self.note(f"could not evaluate `{rule.text}` ({why})")
                if target in NAT_TARGETS:
                    continue  # the primary verdict assumes it does not match
            if target in NAT_TARGETS:
                return "nat", rule.text
            if target == "ACCEPT":
                return "accept", rule.text
            if target == "RETURN":
                return "return", None
            if target in chains and depth < MAX_DEPTH:
                kind, by = self.ipt(chains[target], chains, depth + 1)
                if kind != "return" or rule.goto:
                    return kind, by
        return "return", None

    def nft(
        self, chain: NftChain, chains: dict[str, NftChain], depth: int
    ) -> tuple[str, str | None]:
        for rule in chain.rules:
            unknown: str | None = None
            for st in rule.statements:
                if st.kind == "match" and st.match is not None:
                    hit, why = _nft_match(st.match, self.packet)
                    if hit is False:
                        break
                    if hit is None:
                        unknown = why or st.match.field
                    continue
                if st.kind in ("unknown", "vmap", "limit"):
                    unknown = unknown or (st.raw or st.kind)
                    continue
                if st.kind in ("masquerade", "snat"):
                    if unknown:
                        self.note(f"could not evaluate `{rule.text}` ({unknown})")
                        break
                    return "nat", rule.text
                if st.kind == "accept":
                    return ("accept", rule.text) if not unknown else self._fork(rule.text, unknown)
                if st.kind == "return":
                    return "return", None
                if st.kind in ("jump", "goto") and st.target in chains and depth < MAX_DEPTH:
                    if unknown:
                        self.note(f"could not evaluate `{rule.text}` ({unknown})")
                        break
                    kind, by = self.nft(chains[st.target], chains, depth + 1)
                    if kind != "return" or st.kind == "goto":
                        return kind, by
                    break
        return "return", None

    def _fork(self, text: str, why: str) -> tuple[str, str | None]:
        self.note(f"could not evaluate `{text}` ({why})")
        return "return", None


def pod_egress_nat(
    packet: Packet, iptables: Sequence[IptRuleset] = (), nft: Nftables | None = None
) -> NatVerdict:
    """Is `packet` (a pod's, leaving by packet.out_iface) masqueraded or SNATed?"""
    walk = _Walk(packet)
    walked: list[str] = []
    for ruleset in iptables:
        if ruleset.family != "ipv4":
            continue
        chain = ruleset.chain("nat", "POSTROUTING")
        if chain is None:
            continue
        where = f"{ruleset.label} nat POSTROUTING"
        walked.append(where)
        kind, by = walk.ipt(chain, ruleset.tables["nat"].chains, 0)
        if kind == "nat":
            return NatVerdict(True, by or "", where, walk.uncertain, walk.notes, walked)
    if nft is not None:
        skip = any(r.backend == "nft" and r.family == "ipv4" for r in iptables)
        bases: list[tuple[int, str, NftChain, dict[str, NftChain]]] = []
        for table in nft.tables:
            if table.family not in ("ip", "inet") or (skip and table.is_iptables_nft):
                continue
            for chain in table.chains.values():
                if chain.hook == "postrouting" and chain.type == "nat":
                    label = f"nft {table.label} {chain.name}"
                    bases.append((chain.prio or 0, label, chain, table.chains))
                    if table.rules_elided:  # iptables-nft's, but no iptables-nft-save was read
                        walk.note(
                            f"{label}: its rules are read from iptables-nft-save, "
                            "which was not available"
                        )
        for _, where, chain, chains in sorted(bases, key=lambda b: (b[0], b[1])):
            walked.append(where)
            kind, by = walk.nft(chain, chains, 0)
            if kind == "nat":
                return NatVerdict(True, by or "", where, walk.uncertain, walk.notes, walked)
    if not walked:
        return NatVerdict(False, "no nat POSTROUTING chain at all", "", walk.uncertain, walk.notes)
    return NatVerdict(
        False,
        "no MASQUERADE/SNAT rule matches it in " + ", ".join(walked),
        ", ".join(walked),
        walk.uncertain,
        walk.notes,
        walked,
    )
