"""Would the node's firewall accept a NEW inbound (or forwarded) tcp/udp packet? A pure walk.

What is walked, for an IPv4 packet on hook `input` (or `forward`):
- the iptables filter INPUT (FORWARD) chain of every backend that has one: legacy and
  nft rules both apply when both are loaded;
- every native nftables base chain of type filter on that hook, in priority order.
  Tables iptables-nft manages are skipped when the iptables-nft ruleset was read (they
  are the same rules, better parsed from iptables-save); they are recognised by
  `NftTable.is_iptables_nft`: family ip/ip6, name filter/nat/mangle/raw/security, base
  chains with iptables' upper-case built-in names.
A packet is accepted only if every base chain accepts it (a drop anywhere is final).

Jumps, gotos and RETURN are followed; LOG, counters and other non-terminal targets
continue; REJECT counts as a drop; `-i lo` never matches a packet from a peer; a
`limit` passes the first packet; conntrack state is NEW; marks are 0. A match that
cannot be judged (ipset, recent, unknown modules, an unknown own address) forks the
walk: both outcomes are followed, and the verdict is `uncertain` when they differ,
with notes naming each such rule. The primary verdict assumes such rules do not match.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

from cnidoctor.facts.firewall import (
    AddrMatch,
    IptChain,
    IptRule,
    IptRuleset,
    IptTable,
    NameMatch,
    Nftables,
    NftChain,
    NftMatch,
    NftRule,
    NftTable,
    PortMatch,
)

#: a peer's source port is ephemeral (Linux ip_local_port_range default)
EPHEMERAL = (32768, 60999)
MAX_DEPTH = 32
#: how many undecidable rules may fork the walk before the rest are assumed not to match
FORK_BUDGET = 64

_MULTICAST = ipaddress.ip_network("224.0.0.0/4")
_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_PROTO_NUMBERS = {"6": "tcp", "17": "udp", "1": "icmp", "58": "ipv6-icmp"}
_CONTINUE_TARGETS = frozenset(
    {
        "LOG",
        "NFLOG",
        "ULOG",
        "TRACE",
        "MARK",
        "CONNMARK",
        "CT",
        "NOTRACK",
        "AUDIT",
        "CLASSIFY",
        "TCPMSS",
        "CHECKSUM",
        "DSCP",
        "TOS",
        "TTL",
        "HL",
        "SET",
        "TEE",
        "SECMARK",
        "CONNSECMARK",
        "IDLETIMER",
        "LED",
    }
)

Tri = bool | None


@dataclass(frozen=True)
class Packet:
    """A NEW IPv4 tcp/udp packet from a peer. `src`/`dst` are None when not known."""

    proto: str
    dport: int
    src: str | None
    in_iface: str | None = None
    dst: str | None = None
    out_iface: str | None = None
    hook: str = "input"


@dataclass
class Verdict:
    accepted: bool
    #: the deciding rule's text, or "policy DROP of chain INPUT"
    decided_by: str
    #: chains walked, base chain first
    path: list[str]
    uncertain: bool = False
    #: where the decision was taken: "iptables-nft filter INPUT", "nft inet filter input"
    where: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class _Outcome:
    kind: str  # accept, drop, return
    decided_by: str | None
    path: list[str]
    forks: int = 0


@dataclass
class _Rule:
    text: str
    #: (matches?, why undecidable, action, jump target)
    decide: Callable[[Packet], tuple[Tri, str | None, str, str | None]]


@dataclass
class _Chain:
    name: str
    policy: str | None
    rules: list[_Rule]


@dataclass
class _Run:
    """One base chain's outcomes for one packet, with what the walk noted on the way."""

    outcomes: list[_Outcome]
    notes: list[str]
    broken: bool


@dataclass
class _BaseChain:
    where: str
    prio: int
    chain: _Chain
    chains: dict[str, _Chain]
    #: an iptables base's -s and -d values, which its walks test the packet's addresses
    #: against (`_walk_key`); None for nft bases, or when there are too many to be worth it
    addresses: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    #: walks already done, by `_walk_key`: a base chain shared between nodes (`_ipt_base`)
    #: is walked once per packet its rules can tell apart
    runs: dict[Hashable, _Run] = field(default_factory=dict)


# --------------------------------------------------------------------------- matching


def _all(results: Sequence[tuple[Tri, str | None]]) -> tuple[Tri, str | None]:
    if any(r is False for r, _ in results):
        return False, None
    reasons = [why for r, why in results if r is None and why]
    return (None, "; ".join(reasons)) if reasons else (True, None)


def _neg(value: Tri, negated: bool) -> Tri:
    return value if value is None else value != negated


@lru_cache(maxsize=1 << 14)
def _in_net(addr: str, spec: str) -> bool:
    """Cached: every node evaluates the same rules against a handful of addresses."""
    ip = _ip(addr)
    if "-" in spec and "/" not in spec:
        lo, hi = spec.split("-", 1)
        return _ip(lo) <= ip <= _ip(hi)
    net = _net(spec)
    return ip.version == net.version and ip in net


@lru_cache(maxsize=1 << 14)
def _ip(addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parsed once: a node's own address meets every -d of its rules."""
    return ipaddress.ip_address(addr)


@lru_cache(maxsize=1 << 12)
def _net(spec: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Parsed once: every node's rules name the same networks."""
    return ipaddress.ip_network(spec, strict=False)


@lru_cache(maxsize=1 << 12)
def _dst_unknown(spec: str) -> tuple[Tri, str | None]:
    """-d/daddr when the node's address is unknown: a unicast packet is never multicast."""
    try:
        net = ipaddress.ip_network(spec.split("-")[0], strict=False)
    except ValueError:
        return None, f"destination {spec}"
    if net.version == 4 and (
        net.subnet_of(_MULTICAST) or net.subnet_of(_LOOPBACK) or str(net) == "255.255.255.255/32"
    ):
        return False, None
    return None, f"destination {spec} (the node's own address is not known)"


def _addr(match: AddrMatch | None, addr: str | None, dst: bool) -> tuple[Tri, str | None]:
    if match is None:
        return True, None
    if addr is None:
        if not dst:
            return None, f"source {match.value} (the peer's address is not known)"
        value, why = _dst_unknown(match.value)
        return _neg(value, match.negated), why
    try:
        return _in_net(addr, match.value) != match.negated, None
    except ValueError:
        return None, f"address {match.value}"


def _iface(values: Sequence[str], iface: str | None, wildcard: str) -> tuple[Tri, str | None]:
    """Is the interface one of `values` (iptables `eth+`, nft `eth*` wildcards)?"""
    if iface is None:
        if all(v == "lo" for v in values):
            return False, None  # the packet comes from a peer, never from loopback
        return None, f"interface {', '.join(values)} (the packet's interface is not known)"
    for v in values:
        if (v.endswith(wildcard) and iface.startswith(v[:-1])) or v == iface:
            return True, None
    return False, None


def _sport(ranges: list[tuple[int, int]]) -> Tri:
    lo, hi = EPHEMERAL
    if any(a <= lo and hi <= b for a, b in ranges):
        return True
    if all(b < lo or a > hi for a, b in ranges):
        return False
    return None


def _ports(match: PortMatch | None, port: int) -> Tri:
    return True if match is None else match.contains(port)


def _proto(match: NameMatch | None, proto: str) -> Tri:
    if match is None:
        return True
    value = _PROTO_NUMBERS.get(match.values[0], match.values[0])
    return (value in ("all", "0") or value == proto) != match.negated


def _mark(match: NameMatch | None) -> tuple[Tri, str | None]:
    """A new packet from a peer carries mark 0: `--mark V/M` matches iff V == 0."""
    if match is None:
        return True, None
    try:
        value = int(match.values[0].split("/")[0], 0)
    except ValueError:
        return None, f"mark {match.values[0]}"
    return (value == 0) != match.negated, None


def _addrtype(match: NameMatch | None, actual: set[str]) -> Tri:
    if match is None:
        return True
    return bool(set(match.values) & actual) != match.negated


def _ipt_decide(
    rule: IptRule, chains: dict[str, IptChain]
) -> Callable[[Packet], tuple[Tri, str | None, str, str | None]]:
    target = rule.target
    if target is None or target in _CONTINUE_TARGETS:
        action, jump = "continue", None
    elif target == "ACCEPT":
        action, jump = "accept", None
    elif target in ("DROP", "REJECT"):
        action, jump = "drop", None
    elif target == "RETURN":
        action, jump = "return", None
    elif target in chains:
        action, jump = ("goto" if rule.goto else "jump"), target
    else:
        action, jump = "undecidable", target

    def decide(p: Packet) -> tuple[Tri, str | None, str, str | None]:
        value, why = _ipt_match(rule, p)
        if action == "undecidable" and value is not False:
            return None, f"unknown target {target}", action, jump
        return value, why, action, jump

    return decide


def _ipt_match(rule: IptRule, p: Packet) -> tuple[Tri, str | None]:
    """Does `rule` match `p`: every check in order, stopping at the first that fails (most
    rules of a big ruleset fail on the protocol, port or address: the rest is not looked
    at); undecidable checks give their reasons, as `_all` would."""
    if not _proto(rule.protocol, p.proto) or not _ports(rule.dport, p.dport):
        return False, None
    reasons: list[str] = []
    if rule.sport is not None:
        value = _neg(_sport(rule.sport.ranges), rule.sport.negated)
        if value is False:
            return False, None
        if value is None:
            reasons.append("source port (the peer's is ephemeral)")
    if rule.anyport is not None and not rule.anyport.contains(p.dport):
        value = _neg(_sport(rule.anyport.ranges), rule.anyport.negated)
        if value is False:
            return False, None
        if value is None:
            reasons.append("multiport --ports")
    for match, addr, dst in ((rule.src, p.src, False), (rule.dst, p.dst, True)):
        if match is not None:
            value, why = _addr(match, addr, dst)
            if value is False:
                return False, None
            if value is None and why:
                reasons.append(why)
    for names, iface in ((rule.in_iface, p.in_iface), (rule.out_iface, p.out_iface)):
        if names is not None:
            value, why = _iface(names.values, iface, "+")
            if names.negated:
                value = _neg(value, True)
            if value is False:
                return False, None
            if value is None and why:
                reasons.append(why)
    local = p.hook == "input"
    if not (
        _addrtype(rule.ctstate, {"NEW"})
        and _addrtype(rule.src_type, {"UNICAST"})
        and _addrtype(rule.dst_type, {"LOCAL"} if local else {"UNICAST"})
        and _addrtype(rule.pkt_type, {"unicast", "host"})
    ):
        return False, None
    value, why = _mark(rule.mark)
    if value is False:
        return False, None
    if value is None and why:
        reasons.append(why)
    if rule.fragment is True or (rule.syn is not None and (p.proto == "tcp") != rule.syn):
        return False, None
    if rule.unknown:
        reasons.append(" ".join(rule.unknown))
    return (None, "; ".join(reasons)) if reasons else (True, None)


# --------------------------------------------------------------------------- nft


def _nft_member(m: NftMatch, p: Packet) -> tuple[Tri, str | None]:
    """Is the packet's value for `m.field` among `m.values`?"""
    f = m.field
    if f in ("dport", "sport"):
        if m.proto is not None and m.proto != p.proto:
            return False, None
        ranges = []
        for v in m.values:
            lo, _, hi = v.partition("-")
            try:
                ranges.append((int(lo), int(hi or lo)))
            except ValueError:
                return None, f"{f} {v}"
        if f == "dport":
            return any(a <= p.dport <= b for a, b in ranges), None
        return _sport(ranges), "source port (the peer's is ephemeral)"
    if f == "l4proto":
        if m.family == "ip6":
            return False, None
        names = {_PROTO_NUMBERS.get(v, v) for v in m.values}
        return p.proto in names, None
    if f in ("saddr", "daddr"):
        if m.family == "ip6":
            return False, None  # an IPv4 packet never matches ip6 addresses
        addr = p.src if f == "saddr" else p.dst
        if addr is None and f == "saddr":
            return None, f"saddr {', '.join(m.values)} (the peer's address is not known)"
        if addr is None:
            results = [_dst_unknown(v) for v in m.values]
            if all(r is False for r, _ in results):
                return False, None
            return None, f"daddr {', '.join(m.values)} (the node's own address is not known)"
        try:
            return any(_in_net(addr, v) for v in m.values), None
        except ValueError:
            return None, f"{f} {', '.join(m.values)}"
    if f in ("iifname", "oifname"):
        return _iface(m.values, p.in_iface if f == "iifname" else p.out_iface, "*")
    if f == "ct state":
        return "new" in m.values, None
    if f == "ct status":
        return False, None  # a new connection from a peer: not dnat/snat/confirmed yet
    if f == "fib daddr type":
        return ("local" if p.hook == "input" else "unicast") in m.values, None
    if f == "pkttype":
        return bool({"host", "unicast"} & set(m.values)), None
    if f == "nfproto":
        return "ipv4" in m.values, None
    if f == "mark":
        try:
            return any(int(v, 0) == 0 for v in m.values), None
        except ValueError:
            return None, f"mark {', '.join(m.values)}"
    return None, f"{f} {', '.join(m.values)}"


def _nft_match(m: NftMatch, p: Packet) -> tuple[Tri, str | None]:
    member, why = _nft_member(m, p)
    if m.op in ("==", "in"):
        return member, why
    if m.op == "!=":
        return _neg(member, True), why
    if m.field == "dport" and len(m.values) == 1 and m.values[0].isdigit():
        if m.proto is not None and m.proto != p.proto:
            return False, None
        bound = int(m.values[0])
        ops = {
            "<": p.dport < bound,
            ">": p.dport > bound,
            "<=": p.dport <= bound,
            ">=": p.dport >= bound,
        }
        if m.op in ops:
            return ops[m.op], None
    return None, f"{m.field} {m.op} {', '.join(m.values)}"


def _nft_decide(rule: NftRule) -> Callable[[Packet], tuple[Tri, str | None, str, str | None]]:
    def decide(p: Packet) -> tuple[Tri, str | None, str, str | None]:
        checks: list[tuple[Tri, str | None]] = []
        for st in rule.statements:
            if st.kind == "match" and st.match is not None:
                checks.append(_nft_match(st.match, p))
            elif st.kind == "limit":
                checks.append((st.raw != "limit rate over", None))
            elif st.kind == "unknown":
                checks.append((None, st.raw))
            elif st.kind == "vmap" and st.match is not None:
                for value, verdict, target in st.vmap:
                    hit, why = _nft_member(st.match.model_copy(update={"values": [value]}), p)
                    if hit is None:
                        value_, why_ = _all([*checks, (None, why)])
                        return value_, why_, "undecidable", None
                    if hit:
                        return (*_all(checks), _action(verdict), target)
            elif st.kind in ("accept", "drop", "reject", "jump", "goto", "return", "queue"):
                value, why = _all(checks)
                return value, why, _action(st.kind), st.target
            if checks and checks[-1][0] is False:
                return False, None, "continue", None
        value, why = _all(checks)
        return value, why, "continue", None

    return decide


def _action(kind: str) -> str:
    return {"reject": "drop", "queue": "undecidable", "continue": "continue"}.get(kind, kind)


# --------------------------------------------------------------------------- the walk


class _Walker:
    def __init__(self, packet: Packet, chains: dict[str, _Chain]) -> None:
        self.packet = packet
        self.chains = chains
        self.notes: list[str] = []
        self.budget = FORK_BUDGET
        self.broken = False

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def walk(
        self, chain: _Chain, start: int, path: list[str], forks: int, depth: int
    ) -> list[_Outcome]:
        """Outcomes (accept/drop/return) of `chain` from rule `start`, forking on unknowns."""
        for i in range(start, len(chain.rules)):
            rule = chain.rules[i]
            matched, why, action, target = rule.decide(self.packet)
            if matched is False or action == "continue":
                continue  # no match, or a rule that only logs/counts (matched or not)
            if matched is None:
                self._note(f"could not evaluate `{rule.text}` ({why})")
                if self.budget <= 0:
                    self.broken = True
                    continue
                self.budget -= 1
                rest = self.walk(chain, i + 1, path, forks, depth)
                alt = self._apply(chain, i, rule, action, target, path, forks + 1, depth)
                return rest + alt
            return self._apply(chain, i, rule, action, target, path, forks, depth)
        return [_Outcome("return", None, path, forks)]

    def _apply(
        self,
        chain: _Chain,
        i: int,
        rule: _Rule,
        action: str,
        target: str | None,
        path: list[str],
        forks: int,
        depth: int,
    ) -> list[_Outcome]:
        if action in ("accept", "drop"):
            return [_Outcome(action, rule.text, path, forks)]
        if action == "return":
            return [_Outcome("return", None, path, forks)]
        if action == "undecidable":
            self._note(f"`{rule.text}` decides outside the ruleset (unknown target or queue)")
            return [
                _Outcome("accept", rule.text, path, forks + 1),
                _Outcome("drop", rule.text, path, forks + 1),
            ]
        sub = self.chains.get(target or "")
        if sub is None or depth >= MAX_DEPTH:
            self.broken = True
            self._note(f"`{rule.text}`: chain {target} is missing or nested too deeply")
            return self.walk(chain, i + 1, path, forks, depth)
        out: list[_Outcome] = []
        for o in self.walk(sub, 0, [*path, sub.name], forks, depth + 1):
            if o.kind != "return":
                out.append(o)
            elif action == "goto":
                out.append(o)  # returning from a goto returns from the calling chain
            else:
                out += self.walk(chain, i + 1, o.path, o.forks, depth)
        return out


#: walks remembered per base chain before its memo is cleared (a base shared by 2,000
#: nodes sees each node's own INPUT packets)
_RUNS_MAX = 4096


def _run_base(base: _BaseChain, packet: Packet) -> _Run:
    """The walk of `base` for `packet`, remembered on the base (never modified after)."""
    key = _walk_key(base, packet)
    run = base.runs.get(key)
    if run is not None:
        return run
    walker = _Walker(packet, base.chains)
    outcomes = walker.walk(base.chain, 0, [base.chain.name], 0, 0)
    policy = (base.chain.policy or "accept").lower()
    settled = []
    for o in outcomes:
        if o.kind == "return":
            kind = "accept" if policy == "accept" else "drop"
            decided = f"policy {base.chain.policy or 'ACCEPT'} of chain {base.chain.name}"
            o = _Outcome(kind, decided, o.path, o.forks)
        settled.append(o)
    if len(base.runs) >= _RUNS_MAX:
        base.runs.clear()
    run = base.runs[key] = _Run(settled, walker.notes, walker.broken)
    return run


def _walk_key(base: _BaseChain, p: Packet) -> Hashable:
    """What of `p` the walk of `base` can tell apart. An iptables rule sees the packet's
    addresses only through `_in_net` against its -s/-d values, so every node's INPUT
    packet (each to its own address) is one walk when those tests agree: kube-proxy's
    INPUT chains test 127.0.0.0/8 only. Nothing else of the packet is left out."""
    if base.addresses is None:
        return p
    sources, destinations = base.addresses
    unaddressed = replace(p, src=None, dst=None)
    return unaddressed, _tests(p.src, sources), _tests(p.dst, destinations)


def _tests(addr: str | None, specs: tuple[str, ...]) -> tuple[bool | None, ...] | None:
    """`addr` in each of `specs` (None where `_in_net` cannot tell); None for no address."""
    if addr is None:
        return None
    out: list[bool | None] = []
    for spec in specs:
        try:
            out.append(_in_net(addr, spec))
        except (ValueError, TypeError):  # TypeError: a range of the other IP version
            out.append(None)
    return tuple(out)


def _ipt_bases(rulesets: Sequence[IptRuleset], hook: str) -> list[_BaseChain]:
    name = "INPUT" if hook == "input" else "FORWARD"
    out = []
    for rs in rulesets:
        if rs.family != "ipv4" or "filter" not in rs.tables:
            continue
        table = rs.tables["filter"]
        if name in table.chains:
            out.append(_ipt_base(f"{rs.label} filter {name}", name, table))
    return out


#: compiled iptables base chains by content: (where, then each chain's name, policy and
#: the ids of its rules) -> (the base, the table whose rules those ids are, kept alive).
#: kube-proxy and the CNI write the same filter rules on every node and the parser shares
#: identical rules between nodes, so a cluster's nodes compile and walk one base chain.
_IPT_COMPILED: dict[tuple[object, ...], tuple[_BaseChain, IptTable]] = {}
_IPT_COMPILED_MAX = 64
#: beyond this many -s/-d values, testing them all costs more than walking the packet
_KEYED_ADDRESSES_MAX = 32


def _ipt_base(where: str, name: str, table: IptTable) -> _BaseChain:
    key = (where, *((c.name, c.policy, *map(id, c.rules)) for c in table.chains.values()))
    cached = _IPT_COMPILED.get(key)
    if cached is not None:
        return cached[0]
    chains = {
        c.name: _Chain(
            c.name, c.policy, [_Rule(r.text, _ipt_decide(r, table.chains)) for r in c.rules]
        )
        for c in table.chains.values()
    }
    rules = [r for c in table.chains.values() for r in c.rules]
    sources = tuple(sorted({r.src.value for r in rules if r.src is not None}))
    destinations = tuple(sorted({r.dst.value for r in rules if r.dst is not None}))
    few = len(sources) + len(destinations) <= _KEYED_ADDRESSES_MAX
    base = _BaseChain(where, 0, chains[name], chains, (sources, destinations) if few else None)
    if len(_IPT_COMPILED) >= _IPT_COMPILED_MAX:
        _IPT_COMPILED.clear()
    _IPT_COMPILED[key] = (base, table)
    return base


def _nft_bases(nft: Nftables, hook: str, skip_xtables: bool) -> list[_BaseChain]:
    out = []
    for table in nft.tables:
        if table.family not in ("ip", "inet") or (skip_xtables and table.is_iptables_nft):
            continue
        chains = {c.name: _nft_chain(c) for c in table.chains.values()}
        if table.rules_elided:  # an iptables-nft table, but no iptables-nft-save was read
            for chain in chains.values():
                chain.rules = _unread_rules(table)
        for c in table.chains.values():
            if c.hook == hook and (c.type or "filter") == "filter":
                out.append(
                    _BaseChain(f"nft {table.label} {c.name}", c.prio or 0, chains[c.name], chains)
                )
    return out


def _unread_rules(table: NftTable) -> list[_Rule]:
    """Stand-ins for an iptables-nft table's rules, not read from `nft -j` (they are
    iptables-nft-save's): either may decide, so the walk follows accept and drop, and the
    verdict is uncertain."""
    text = f"iptables-nft table {table.label} ({table.rules_elided} rules)"
    why = "its rules are read from iptables-nft-save, which was not available"

    def may(action: str) -> _Rule:
        return _Rule(text, lambda _packet: (None, why, action, None))

    return [may("accept"), may("drop")]


def _nft_chain(chain: NftChain) -> _Chain:
    return _Chain(chain.name, chain.policy, [_Rule(r.text, _nft_decide(r)) for r in chain.rules])


#: the compiled base chains of the last rulesets evaluated, by (hook, ids of the rulesets);
#: the entry holds the rulesets themselves so their ids cannot be reused while cached. A
#: node's rules evaluate one port after another against the same rulesets.
_COMPILED: OrderedDict[tuple[int | str, ...], tuple[list[_BaseChain], tuple[object, ...]]] = (
    OrderedDict()
)
_COMPILED_MAX = 8


def _bases(iptables: Sequence[IptRuleset], nft: Nftables | None, hook: str) -> list[_BaseChain]:
    key = (hook, id(nft), *(id(r) for r in iptables))
    cached = _COMPILED.get(key)
    if cached is not None:
        _COMPILED.move_to_end(key)
        return cached[0]
    bases = _ipt_bases(iptables, hook)
    if nft is not None:
        skip = any(r.backend == "nft" and r.family == "ipv4" for r in iptables)
        bases += _nft_bases(nft, hook, skip)
    bases.sort(key=lambda b: b.prio)
    _COMPILED[key] = (bases, (nft, *iptables))
    if len(_COMPILED) > _COMPILED_MAX:
        _COMPILED.popitem(last=False)
    return bases


def evaluate(
    packet: Packet,
    iptables: Sequence[IptRuleset] = (),
    nft: Nftables | None = None,
) -> Verdict:
    """The fate of `packet` through every filter base chain on its hook."""
    bases = _bases(iptables, nft, packet.hook)
    if not bases:
        return Verdict(True, f"no filter chain on the {packet.hook} hook", [])
    notes: list[str] = []
    can_accept, can_drop, broken = True, False, False
    primary: tuple[_BaseChain, _Outcome] | None = None
    last: tuple[_BaseChain, _Outcome] | None = None
    for base in bases:
        run = _run_base(base, packet)
        notes += [n for n in run.notes if n not in notes]
        broken = broken or run.broken
        kinds = {o.kind for o in run.outcomes}
        can_accept = can_accept and "accept" in kinds
        can_drop = can_drop or "drop" in kinds
        first = min(run.outcomes, key=lambda o: o.forks)
        last = (base, first)
        if primary is None and first.kind == "drop":
            primary = last
    chosen = primary or last
    assert chosen is not None  # bases is not empty
    base, outcome = chosen
    return Verdict(
        accepted=outcome.kind == "accept",
        decided_by=outcome.decided_by or "",
        path=list(outcome.path),  # the outcome is remembered: the verdict gets its own list
        uncertain=(can_accept and can_drop) or broken,
        where=base.where,
        notes=notes,
    )
