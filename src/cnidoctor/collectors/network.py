"""Links with addresses and VXLAN details, routes of all tables, neighbours: `ip -j`.

`ip -j` output differs between iproute2 versions (keys come and go), so the parsers
read only the keys the rules use, ignore the rest, and turn anything that is not the
expected shape into a FactParseError naming the entry, never another exception.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import ValidationError

from cnidoctor.collectors.base import Collector, FactParseError
from cnidoctor.facts.base import FactModel
from cnidoctor.facts.network import (
    Address,
    Link,
    Links,
    Neighbour,
    Neighbours,
    Nexthop,
    Route,
    Routes,
    VxlanInfo,
)
from cnidoctor.transports.base import Command, CommandResult

T = TypeVar("T")
M = TypeVar("M", bound=FactModel)


def load_json_list(text: str, what: str) -> list[dict[str, Any]]:
    """`ip -j` prints a JSON array of objects; anything else is garbage for us."""
    try:
        data = json.loads(text) if text.strip() else []
    except json.JSONDecodeError as exc:
        raise FactParseError(f"{what}: not JSON ({exc.msg} at char {exc.pos})") from exc
    except RecursionError as exc:
        raise FactParseError(f"{what}: not JSON (nested too deeply)") from exc
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise FactParseError(f"{what}: expected a JSON array of objects")
    return data


def json_entries(
    text: str,
    what: str,
    build: Callable[[dict[str, Any]], T],
    seen: dict[str, T] | None = None,
) -> list[T]:
    """Build one model per entry; a bad entry is a parse error that says which one and why.

    With `seen`, entries are first cut from the compact `[{...},{...}]` text iproute2
    prints: an entry whose exact text was already built is reused (the same peers, routes
    and VTEPs appear in every node's tables), the others are decoded one by one. Anything
    that does not cut cleanly (nested arrays of objects, pretty-printed or broken JSON)
    takes the whole-document path, which also gives the usual errors."""
    if seen is not None:
        fast = _entries_seen(text, what, build, seen)
        if fast is not None:
            return fast
    return [_built(build, raw, what, index) for index, raw in enumerate(load_json_list(text, what))]


def _built(build: Callable[[dict[str, Any]], T], raw: dict[str, Any], what: str, index: int) -> T:
    try:
        return build(raw)
    except FactParseError as exc:
        raise FactParseError(f"{what}: entry {index}: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "entry"
        raise FactParseError(f"{what}: entry {index}: {where}: {first['msg']}") from exc
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise FactParseError(f"{what}: entry {index}: {type(exc).__name__}: {exc}") from exc


#: entries remembered per table kind before the memo is cleared
SEEN_MAX = 200_000


def _entries_seen(
    text: str, what: str, build: Callable[[dict[str, Any]], T], seen: dict[str, T]
) -> list[T] | None:
    body = text.strip()
    if not (body.startswith("[{") and body.endswith("}]")):
        return None
    out = []
    for index, piece in enumerate(body[2:-2].split("},{")):
        entry = seen.get(piece)
        if entry is None:
            try:
                raw = json.loads("{" + piece + "}")
            except (json.JSONDecodeError, RecursionError):
                return None  # a "},{" inside an entry: not cut cleanly
            if not isinstance(raw, dict):
                return None
            entry = _built(build, raw, what, index)
            if len(seen) >= SEEN_MAX:
                seen.clear()
            seen[piece] = entry
        out.append(entry)
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: field annotation -> (JSON type it must be, None allowed, what to call it in errors)
_KINDS: dict[Any, tuple[type, bool, str]] = {
    str: (str, False, "a string"),
    int: (int, False, "an integer"),
    bool: (bool, False, "a boolean"),
    str | None: (str, True, "a string"),
    int | None: (int, True, "an integer"),
    bool | None: (bool, True, "a boolean"),
    list[str]: (list, False, "a list of strings"),
}
#: per (model, fields the caller builds): (field, required, JSON type, None allowed, what)
_FIELD_PLANS: dict[tuple[type, tuple[str, ...]], list[tuple[str, bool, type, bool, str]] | None]
_FIELD_PLANS = {}
_MISSING = object()


def _field_plan(
    model: type[FactModel], built: tuple[str, ...]
) -> list[tuple[str, bool, type, bool, str]] | None:
    """The checks of the fields not in `built`; None when a field's type is not one the
    fast path knows (the model is then validated by pydantic)."""
    key = (model, built)
    if key not in _FIELD_PLANS:
        plan: list[tuple[str, bool, type, bool, str]] | None = []
        for name, info in model.model_fields.items():
            if name in built:
                continue
            kind = _KINDS.get(info.annotation)
            if kind is None:
                plan = None
                break
            plan.append((name, info.is_required(), *kind))
        _FIELD_PLANS[key] = plan
    return _FIELD_PLANS[key]


def checked_model(model: type[M], raw: dict[str, Any], **built: Any) -> M:
    """`model.model_validate({**raw, **built})` at a fraction of the cost: the JSON values
    of the model's fields are type-checked here (a mismatch is a FactParseError naming the
    field), `built` holds the fields the caller already made (nested models). A node's
    tables hold hundreds of entries, so this is where analysing 2,000 nodes spends."""
    plan = _field_plan(model, tuple(built))
    if plan is None:
        return model.model_validate({**raw, **built})
    values = built  # a fresh dict per call: ours to fill
    for name, required, kind, nullable, what in plan:
        value = raw.get(name, _MISSING)
        if value is _MISSING:
            if required:
                raise FactParseError(f"{name} missing")
            continue
        if value is None:
            if not nullable:
                raise FactParseError(f"{name}: not {what}")
        elif type(value) is not kind or (kind is list and not all(type(v) is str for v in value)):
            raise FactParseError(f"{name}: not {what}")
        values[name] = value
    return model.trusted_dict(values)


def _require(raw: dict[str, Any], key: str, kind: type) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise FactParseError(f"{key} missing or not a {kind.__name__}")
    return value


def _list_of_dicts(raw: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = raw.get(key) or []
    if not isinstance(value, list):
        raise FactParseError(f"{key} is not a list")
    return [item for item in value if isinstance(item, dict)]


def _address(raw: dict[str, Any]) -> Address | None:
    """An addr_info entry; None for families the rules do not look at."""
    family = raw.get("family")
    if family not in ("inet", "inet6") or "local" not in raw:
        return None
    address = checked_model(Address, raw)
    version = _address_version(address.cidr)
    if version is None:
        raise FactParseError(f"address {address.cidr!r} is not an address/prefix")
    if (version == 6) != (family == "inet6"):
        raise FactParseError(f"address {address.cidr!r} is not {family}")
    return address


@lru_cache(maxsize=1 << 16)
def is_address(text: str) -> bool:
    """Cached: every node's neighbour table names the same peers."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=1 << 16)
def _address_version(cidr: str) -> int | None:
    """4 or 6 for an address/prefix, None for anything else (cached: peers repeat)."""
    try:
        return ipaddress.ip_interface(cidr).version
    except ValueError:
        return None


def _vxlan(data: dict[str, Any]) -> VxlanInfo:
    local = data.get("local", data.get("local6"))
    return checked_model(VxlanInfo, data, local=local)


def _link(raw: dict[str, Any]) -> Link:
    ifindex = _require(raw, "ifindex", int)
    ifname = _require(raw, "ifname", str)
    info = raw.get("linkinfo") or {}
    if not isinstance(info, dict):
        raise FactParseError("linkinfo is not an object")
    kind = info.get("info_kind")
    data = info.get("info_data")
    vxlan = _vxlan(data) if kind == "vxlan" and isinstance(data, dict) else None
    addresses = [a for a in map(_address, _list_of_dicts(raw, "addr_info")) if a is not None]
    return checked_model(
        Link,
        raw,
        ifindex=ifindex,
        ifname=ifname,
        kind=kind,
        vxlan=vxlan,
        addresses=addresses,
    )


def parse_ip_addr(text: str) -> Links:
    """`ip -j -d addr show`: one object per link, with linkinfo and addr_info."""
    return Links(links=json_entries(text, "ip -j -d addr", _link))


#: entry text -> built entry, per table kind (see `_entries`); entries are never modified
_ROUTES_SEEN: dict[str, dict[str, Route]] = {}
_NEIGHBOURS_SEEN: dict[str, Neighbour] = {}


def parse_ip_route(text: str, family: str = "inet") -> list[Route]:
    """`ip -j route show table all` (one family)."""

    def build(raw: dict[str, Any]) -> Route:
        dst = _require(raw, "dst", str)
        fam = "inet6" if family == "inet6" or ":" in dst else "inet"
        table = raw.get("table", "main")
        if isinstance(table, int) and not isinstance(table, bool):
            table = str(table)  # numeric table ids are printed as strings, but be lenient
        if not isinstance(table, str):
            raise FactParseError("table: not a string")
        metric = raw.get("metric", 0)
        if not _is_int(metric):
            raise FactParseError("metric: not an integer")
        nexthops = [checked_model(Nexthop, hop) for hop in _list_of_dicts(raw, "nexthops")]
        return checked_model(Route, raw, family=fam, table=table, metric=metric, nexthops=nexthops)

    return json_entries(text, "ip -j route", build, _ROUTES_SEEN.setdefault(family, {}))


def parse_ip_neigh(text: str) -> Neighbours:
    """`ip -j neigh show`; `router` is printed as a key with a null value when set."""

    def build(raw: dict[str, Any]) -> Neighbour:
        dst = _require(raw, "dst", str)
        if not is_address(dst):
            raise FactParseError(f"dst {dst!r} is not an address")
        return checked_model(Neighbour, raw, router="router" in raw)

    return Neighbours(entries=json_entries(text, "ip -j neigh", build, _NEIGHBOURS_SEEN))


class LinksCollector(Collector):
    name = "links"
    description = "network devices with MTU, MAC, VXLAN details and addresses"
    commands = (Command(("ip", "-j", "-d", "addr", "show")),)

    @classmethod
    def parse(cls, results: Sequence[CommandResult]) -> Links:
        return parse_ip_addr(results[0].stdout)


class RoutesCollector(Collector):
    name = "routes"
    description = "IPv4 and IPv6 routes of every table"
    commands = (
        Command(("ip", "-4", "-j", "route", "show", "table", "all")),
        Command(("ip", "-6", "-j", "route", "show", "table", "all")),
    )
    optional_commands = frozenset({1})  # a host with IPv6 disabled still has IPv4 routes

    @classmethod
    def parse(cls, results: Sequence[CommandResult]) -> Routes:
        routes = parse_ip_route(results[0].stdout, "inet")
        if results[1].ok:
            routes += parse_ip_route(results[1].stdout, "inet6")
        return Routes(routes=routes)


class NeighboursCollector(Collector):
    name = "neighbours"
    description = "the IPv4/IPv6 neighbour (ARP/NDP) table"
    commands = (Command(("ip", "-j", "neigh", "show")),)

    @classmethod
    def parse(cls, results: Sequence[CommandResult]) -> Neighbours:
        return parse_ip_neigh(results[0].stdout)
