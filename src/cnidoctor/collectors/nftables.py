"""The nftables ruleset: `nft -j list ruleset`, rules normalised for the evaluator.

Its own module because nft's JSON has nothing in common with iptables-save text, and
reading it fast (table by table, iptables-nft tables only counted) takes a parser of its
own; the iptables-nft rules themselves are read from `cnidoctor.collectors.iptables`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cnidoctor.collectors.base import Collector, FactParseError
from cnidoctor.collectors.json_output import loads
from cnidoctor.facts.firewall import (
    Nftables,
    NftChain,
    NftMatch,
    NftRule,
    NftStatement,
    NftTable,
    is_iptables_nft_table,
)
from cnidoctor.transports.base import Command, CommandResult


class _Unknown(Exception):
    """An nft expression the evaluator cannot judge."""


_VERDICTS = frozenset({"accept", "drop", "reject", "jump", "goto", "return", "continue", "queue"})
#: statements that never stop a rule from matching
_NOOPS = frozenset({"counter", "log", "mangle", "notrack", "set", "map", "dup", "fwd", "synproxy"})


def _values(right: Any, sets: dict[str, list[str]]) -> list[str]:
    if isinstance(right, bool) or right is None:
        raise _Unknown(f"value {right!r}")
    if isinstance(right, int):
        return [str(right)]
    if isinstance(right, str):
        if right.startswith("@"):
            if right[1:] not in sets:
                raise _Unknown(f"named set {right}")
            return sets[right[1:]]
        return [right]
    if isinstance(right, list):
        return [v for item in right for v in _values(item, sets)]
    if isinstance(right, dict):
        if "set" in right:
            return _values(right["set"], sets)
        if "range" in right and isinstance(right["range"], list) and len(right["range"]) == 2:
            lo, hi = (_values(v, sets)[0] for v in right["range"])
            return [f"{lo}-{hi}"]
        if "prefix" in right and isinstance(right["prefix"], dict):
            return [f"{right['prefix'].get('addr')}/{right['prefix'].get('len')}"]
        if "elem" in right and isinstance(right["elem"], dict):
            return _values(right["elem"].get("val"), sets)
    raise _Unknown(f"value {json.dumps(right)[:80]}")


def _field(left: Any) -> tuple[str, str | None, str | None]:
    """(field, proto, family) of a match's left-hand side."""
    if not isinstance(left, dict):
        raise _Unknown(f"left side {json.dumps(left)[:80]}")
    if isinstance(left.get("meta"), dict):
        key = left["meta"].get("key")
        key = {"iif": "iifname", "oif": "oifname"}.get(key, key)
        if key in ("l4proto", "iifname", "oifname", "nfproto", "pkttype", "mark"):
            return key, None, None
    if isinstance(left.get("payload"), dict):
        proto, name = left["payload"].get("protocol"), left["payload"].get("field")
        if proto in ("tcp", "udp", "th") and name in ("dport", "sport"):
            return name, None if proto == "th" else proto, None
        if proto in ("ip", "ip6") and name in ("saddr", "daddr"):
            return name, None, proto
        if (proto, name) in (("ip", "protocol"), ("ip6", "nexthdr")):
            return "l4proto", None, proto
    if isinstance(left.get("ct"), dict) and left["ct"].get("key") in ("state", "status"):
        return f"ct {left['ct']['key']}", None, None
    fib = left.get("fib")
    if isinstance(fib, dict) and fib.get("result") == "type" and fib.get("flags") == ["daddr"]:
        return "fib daddr type", None, None
    raise _Unknown(f"match on {json.dumps(left)[:80]}")


def _verdict(expr: dict[str, Any]) -> tuple[str, str | None]:
    kind = next(iter(expr))
    body = expr[kind]
    target = body.get("target") if isinstance(body, dict) else None
    if kind in ("jump", "goto") and not isinstance(target, str):
        raise FactParseError(f"{kind} without a target")
    if target is not None and not isinstance(target, str):
        raise FactParseError(f"{kind}: target is not a name")
    return kind, target


def _statement(expr: Any, sets: dict[str, list[str]]) -> NftStatement:
    if not isinstance(expr, dict) or len(expr) != 1:
        raise FactParseError(f"expression is not a one-key object: {json.dumps(expr)[:80]}")
    kind = next(iter(expr))
    body = expr[kind]
    try:
        if kind == "match" and isinstance(body, dict):
            field, proto, family = _field(body.get("left"))
            return NftStatement.trusted(
                kind="match",
                match=NftMatch.trusted(
                    field=field,
                    op=str(body.get("op", "==")),
                    values=_values(body.get("right"), sets),
                    proto=proto,
                    family=family,
                ),
            )
        if kind == "vmap" and isinstance(body, dict):
            field, proto, family = _field(body.get("key"))
            data = body.get("data")
            entries = data.get("set") if isinstance(data, dict) else None
            if not isinstance(entries, list):
                raise _Unknown("verdict map by name")
            vmap = []
            for entry in entries:
                if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict)):
                    raise _Unknown("verdict map entry")
                verdict, target = _verdict(entry[1])
                vmap += [(value, verdict, target) for value in _values(entry[0], sets)]
            match = NftMatch.trusted(field=field, values=[], proto=proto, family=family)
            return NftStatement.trusted(kind="vmap", match=match, vmap=vmap)
    except _Unknown as exc:
        return NftStatement.trusted(kind="unknown", raw=f"{exc}")
    if kind in _VERDICTS:
        verdict, target = _verdict(expr)
        return NftStatement.trusted(kind=verdict, target=target)
    if kind in _NOOPS:
        return NftStatement.trusted(kind="noop", raw=kind)
    if kind == "limit":
        over = isinstance(body, dict) and bool(body.get("inv"))
        return NftStatement.trusted(kind="limit", raw="limit rate over" if over else "limit rate")
    if kind in ("masquerade", "snat"):  # nat statements: analysis.snat reads them
        return NftStatement.trusted(kind=kind, raw=json.dumps(body)[:120] if body else None)
    if kind == "xt" and isinstance(body, dict):
        return NftStatement.trusted(kind="unknown", raw=f"xt {body.get('type')} {body.get('name')}")
    return NftStatement.trusted(kind="unknown", raw=json.dumps(expr)[:120])


def render_statement(st: NftStatement) -> str:
    """nft-like text of a normalised statement, for evidence."""
    if st.kind == "match" and st.match:
        m = st.match
        left = " ".join(p for p in (m.proto or m.family, m.field) if p)
        vals = m.values[0] if len(m.values) == 1 else "{ " + ", ".join(m.values) + " }"
        op = "" if m.op in ("==", "in") else f"{m.op} "
        return f"{left} {op}{vals}"
    if st.kind == "vmap" and st.match:
        inner = ", ".join(f"{v} : {k}{' ' + t if t else ''}" for v, k, t in st.vmap)
        return f"{st.match.field} vmap {{ {inner} }}"
    if st.kind in ("jump", "goto"):
        return f"{st.kind} {st.target}"
    if st.kind in ("noop", "limit"):
        return st.raw or st.kind
    if st.kind == "unknown":
        return f"<{st.raw}>"
    return st.kind


def parse_nft_json(text: str) -> Nftables:
    """`nft -j list ruleset`: tables, chains with hook/priority/policy, normalised rules.

    Of an iptables-nft table only the base chains are read and the rules counted (see
    `NftTable.rules_elided`): a kube-proxy node repeats its iptables rules there, and
    decoding them was most of the time a large snapshot took to analyse."""
    try:
        fast = _parse_by_table(text)
    except (ValueError, TypeError, LookupError, AttributeError, RecursionError, FactParseError):
        fast = None  # the whole document, read below, gives the error
    if fast is not None:
        return fast
    try:
        data = loads(text) if text.strip() else {"nftables": []}
    except (json.JSONDecodeError, RecursionError) as exc:
        raise FactParseError(f"nft -j: not JSON ({exc})") from exc
    items = data.get("nftables") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise FactParseError("nft -j: no 'nftables' array")
    try:
        return _build_nft(items)
    except FactParseError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise FactParseError(f"nft -j: {type(exc).__name__}: {exc}") from exc


def _build_nft(items: list[Any]) -> Nftables:
    """The ruleset of the whole document's objects."""
    ruleset = _Ruleset()
    rules = ruleset.add(items)
    ruleset.settle()
    for rule in rules:
        ruleset.add_rule(rule)
    return ruleset.result()


class _Ruleset:
    """Nftables from `nft -j` objects: tables, sets and chains first, then rules.

    nft prints a table's rules after its chains and sets; reading every chain first also
    settles which tables are iptables-nft's before any rule is read."""

    def __init__(self) -> None:
        self.tables: dict[tuple[str, str], NftTable] = {}
        self.sets: dict[tuple[str, str], dict[str, list[str]]] = {}
        #: each table's chain objects, built by settle()
        self.chains: dict[tuple[str, str], list[dict[str, Any]]] = {}
        #: the iptables-nft tables, and how many rules of theirs were counted, not read
        self.elided: dict[tuple[str, str], int] = {}

    def add(self, items: list[Any]) -> list[dict[str, Any]]:
        """Takes the tables, sets and chains; returns the rules' bodies (for add_rule, once
        settled). Other objects are skipped."""
        tables, chains, sets = self.tables, self.chains, self.sets
        rules = []
        for item in items:
            if not isinstance(item, dict):
                raise FactParseError("nft -j: an entry is not an object")
            if isinstance(item.get("table"), dict):
                t = item["table"]
                tables[(t["family"], t["name"])] = NftTable(family=t["family"], name=t["name"])
                chains[(t["family"], t["name"])] = []
            elif isinstance(item.get("set"), dict):
                s = item["set"]
                try:
                    elems = _values(s.get("elem", []), {})
                except _Unknown:
                    continue  # a set we cannot read stays unresolved: matches on it are unknown
                sets.setdefault((s["family"], s["table"]), {})[s["name"]] = elems
            elif isinstance(item.get("chain"), dict):
                c = item["chain"]
                table_chains = chains.get((c["family"], c["table"]))
                if table_chains is None:
                    raise FactParseError(f"nft -j: chain {c['name']!r} of an unknown table")
                table_chains.append(c)
            elif isinstance(item.get("rule"), dict):
                rules.append(item["rule"])
        return rules

    def settle(self) -> None:
        """Builds the chains: all of a native table's, the base chains of an iptables-nft one."""
        for key, chains in self.chains.items():
            table = self.tables[key]
            base = [_nft_chain_values(c) for c in chains if c.get("hook") is not None]
            if is_iptables_nft_table(table.family, table.name, [c["name"] for c in base]):
                self.elided[key] = 0
            else:
                base = [_nft_chain_values(c) for c in chains]
            table.chains.update((c["name"], NftChain.trusted_dict(c)) for c in base)

    def add_rule(self, r: dict[str, Any]) -> None:
        key = (r["family"], r["table"])
        if key in self.elided:
            self.elided[key] += 1
            return
        table = self.tables.get(key)
        chain = table.chains.get(r["chain"]) if table else None
        if chain is None:
            raise FactParseError(f"nft -j: rule of an unknown chain {r.get('chain')!r}")
        exprs = r.get("expr", [])
        if not isinstance(exprs, list):
            raise FactParseError("nft -j: rule expr is not a list")
        named = self.sets.get(key, {})
        statements = [_statement(e, named) for e in exprs]
        rendered = [(st, render_statement(st)) for st in statements]
        comment = r.get("comment") if isinstance(r.get("comment"), str) else None
        text = " ".join(txt for st, txt in rendered if st.kind != "noop")
        text = text or " ".join(txt for _, txt in rendered) or "(empty rule)"
        if comment:
            text += f' comment "{comment}"'
        handle = r.get("handle")
        if handle is not None and (not isinstance(handle, int) or isinstance(handle, bool)):
            raise FactParseError(f"nft -j: rule handle {handle!r} is not a number")
        chain.rules.append(
            NftRule.trusted(handle=handle, comment=comment, statements=statements, text=text)
        )

    def result(self) -> Nftables:
        for key, count in self.elided.items():
            if count:
                self.tables[key].rules_elided = count
        return Nftables(tables=list(self.tables.values()))


# ------------------------------------------------------------------ nft -j, table by table
#
# nft prints `{"nftables": [metainfo, table, its objects..., table, ...]}` with ", " between
# objects, each object but metainfo starting `{"KIND": {"family": "` (an unescaped `{"`
# never occurs in a JSON string) and each rule ending with its expressions, `]}}`. The
# document is cut at its tables; each table's chains, sets... are decoded, then its rules,
# which nft prints after its other objects (before 1.0.5, each chain's rules after the
# chain). The rules of an iptables-nft table are only counted: damage inside them goes
# unnoticed, as they are not read. Whatever does not cut as expected is read as a whole
# document instead.

_OPEN = '{"nftables": ['
_TABLE = '{"table": {"family": "'
_RULE = '{"rule": {"family": "'
_RULE_AFTER = ", " + _RULE
_CHAIN_AFTER = ', {"chain": {"family": "'
#: a rule right after a rule
_RULE_AFTER_RULE = "]}}" + _RULE_AFTER


def _parse_by_table(text: str) -> Nftables | None:
    """The ruleset, or None when `text` is not laid out as nft prints it."""
    body = text.strip()
    if not (body.startswith(_OPEN) and body.endswith("]}")):
        return None
    body = body[len(_OPEN) : -2]
    starts = []
    at = body.find(_TABLE)
    while at >= 0:
        starts.append(at)
        at = body.find(_TABLE, at + 1)
    if not starts or any(body[at - 2 : at] != ", " for at in starts[1:]):
        return None
    ruleset = _Ruleset()
    if ruleset.add(loads(f"[{body[: starts[0]].rstrip(', ')}]")):
        return None  # a rule before any table
    tables = []
    for start, end in zip(starts, [at - 2 for at in starts[1:]] + [len(body)], strict=True):
        objects, runs = _cut(body, start, end)
        items = loads(f"[{', '.join(objects)}]")
        if ruleset.add(items):
            return None  # a rule where the other objects were expected
        tables.append(((items[0]["table"]["family"], items[0]["table"]["name"]), runs))
    ruleset.settle()
    for key, runs in tables:
        if key in ruleset.elided:
            count = _count_rules(body, runs, *key)
            if count is None:
                return None  # damaged or cut short
            ruleset.elided[key] += count
        elif runs:
            for item in loads(f"[{', '.join(body[a:b] for a, b in runs)}]"):
                if not (isinstance(item, dict) and isinstance(item.get("rule"), dict)):
                    return None
                ruleset.add_rule(item["rule"])
    return ruleset.result()


def _cut(body: str, start: int, end: int) -> tuple[list[str], list[tuple[int, int]]]:
    """One table's objects, `body[start:end]`: (the JSON of its table, chains, sets...;
    the (start, end) of each run of its rules)."""
    objects: list[str] = []
    runs: list[tuple[int, int]] = []
    while True:
        rule = body.find(_RULE_AFTER, start, end)
        if rule < 0:
            objects.append(body[start:end])
            break
        objects.append(body[start:rule])
        chain = body.find(_CHAIN_AFTER, rule, end)  # before nft 1.0.5, the next chain's
        runs.append((rule + 2, end if chain < 0 else chain))
        if chain < 0:
            break
        start = chain + 2
    return objects, runs


def _count_rules(body: str, runs: list[tuple[int, int]], family: str, table: str) -> int | None:
    """How many rules the runs hold; None unless each run looks like rules of `family
    table` only: starting with one, each next right after a rule, ending as a rule does."""
    mine = f'{_RULE}{family}", "table": "{table}", '
    if not all(body.startswith(mine, a) and body.endswith("]}}", a, b) for a, b in runs):
        return None
    rules = sum(body.count(mine, a, b) for a, b in runs)
    after_rules = sum(body.count(_RULE_AFTER_RULE, a, b) for a, b in runs)
    return rules if after_rules == rules - len(runs) else None


_CHAIN_TEXT_KEYS = ("family", "table", "name", "type", "hook", "policy")


def _nft_chain_values(c: dict[str, Any]) -> dict[str, Any]:
    """A chain object's fields, checked by hand: a ruleset has hundreds, validation was the
    cost."""
    values: dict[str, Any] = {}
    for key in _CHAIN_TEXT_KEYS:
        value = c.get(key)
        if value is not None and not isinstance(value, str):
            raise FactParseError(f"nft -j: chain {key} {value!r} is not a string")
        values[key] = value
    for key in ("family", "table", "name"):
        if values[key] is None:
            raise FactParseError(f"nft -j: chain without {key}")
    prio = c.get("prio")
    if prio is not None and (not isinstance(prio, int) or isinstance(prio, bool)):
        raise FactParseError(f"nft -j: chain prio {prio!r} is not a number")
    values["prio"] = prio
    return values


class NftablesCollector(Collector):
    name = "nftables"
    description = (
        "the nftables ruleset (`nft -j list ruleset`): native tables, and the base chains of "
        "iptables-nft's (whose rules iptables-nft-save gives)"
    )
    commands = (Command(("nft", "-j", "list", "ruleset")),)

    @classmethod
    def parse(cls, results: Sequence[CommandResult]) -> Nftables:
        return parse_nft_json(results[0].stdout)
