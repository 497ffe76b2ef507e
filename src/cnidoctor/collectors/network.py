"""Links with addresses and VXLAN details, routes of all tables, neighbours: `ip -j`.

`ip -j` output differs between iproute2 versions (keys come and go), so the parsers
read only the keys the rules use, ignore the rest, and turn anything that is not the
expected shape into a FactParseError naming the entry, never another exception.

Models are built by pydantic in strict mode (the JSON type must be the field's type, as
iproute2 prints it): its Rust validator is faster than checking the values in Python and
then building the model with `FactModel.trusted`, and it names the bad field itself.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import ValidationError

from cnidoctor.collectors.base import Collector, FactParseError
from cnidoctor.collectors.json_output import loads
from cnidoctor.facts.network import Link, Links, Neighbour, Neighbours, Route, Routes
from cnidoctor.transports.base import Command, CommandResult

T = TypeVar("T")


def load_json_list(text: str, what: str) -> list[dict[str, Any]]:
    """`ip -j` prints a JSON array of objects; anything else is garbage for us."""
    try:
        data = loads(text) if text and not text.isspace() else []
    except json.JSONDecodeError as exc:
        raise FactParseError(f"{what}: not JSON ({exc.msg} at char {exc.pos})") from exc
    if type(data) is not list or not all(type(item) is dict for item in data):
        raise FactParseError(f"{what}: expected a JSON array of objects")
    return data


def json_entries(
    text: str,
    what: str,
    build: Callable[[dict[str, Any]], T],
    seen: dict[str, T] | None = None,
) -> list[T]:
    """Build one model per entry; a bad entry is a parse error that says which one and why.

    `build` gets a freshly decoded entry, which it may modify. With `seen`, entries are
    first cut from the compact `[{...},{...}]` text iproute2 prints: an entry whose exact
    text was already built is reused (the same peers, routes and VTEPs appear in every
    node's tables: a lookup is several times cheaper than decoding), the others are
    decoded one by one. Anything that does not cut cleanly (nested arrays of objects,
    pretty-printed or broken JSON) takes the whole-document path, which also gives the
    usual errors."""
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
        first = exc.errors(include_url=False, include_context=False, include_input=False)[0]
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
    pieces = body[2:-2].split("},{")
    out: list[Any] = list(map(seen.get, pieces))
    if all(out):  # models are always true: every entry was remembered
        return out
    for index, piece in enumerate(pieces):
        if out[index] is None:
            try:
                raw = loads("{" + piece + "}")
            except json.JSONDecodeError:
                return None  # a "},{" inside an entry: not cut cleanly
            if len(seen) >= SEEN_MAX:
                seen.clear()
            out[index] = seen[piece] = _built(build, raw, what, index)
    return out


def _require(raw: dict[str, Any], key: str, kind: type) -> Any:
    value = raw.get(key)
    if type(value) is not kind:
        raise FactParseError(f"{key} missing or not a {kind.__name__}")
    return value


def _list_of_dicts(raw: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = raw.get(key) or []
    if type(value) is not list:
        raise FactParseError(f"{key} is not a list")
    return [item for item in value if type(item) is dict]


@lru_cache(maxsize=1 << 16)
def is_address(text: str) -> bool:
    """Cached: every node's neighbour table names the same peers."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _link(raw: dict[str, Any]) -> Link:
    _require(raw, "ifindex", int)
    _require(raw, "ifname", str)
    info = raw.get("linkinfo") or {}
    if type(info) is not dict:
        raise FactParseError("linkinfo is not an object")
    raw["kind"] = kind = info.get("info_kind")
    data = info.get("info_data")
    if kind == "vxlan" and type(data) is dict:
        raw["vxlan"] = {**data, "local": data.get("local", data.get("local6"))}
    else:
        raw["vxlan"] = None
    # addr_info entries of the families the rules look at
    raw["addresses"] = [
        a
        for a in _list_of_dicts(raw, "addr_info")
        if a.get("family") in ("inet", "inet6") and "local" in a
    ]
    link = Link.model_validate(raw, strict=True)
    for address in link.addresses:
        try:  # cached, and the rules ask for it too
            version = address.interface.version
        except ValueError:
            raise FactParseError(f"address {address.cidr!r} is not an address/prefix") from None
        if (version == 6) != (address.family == "inet6"):
            raise FactParseError(f"address {address.cidr!r} is not {address.family}")
    return link


def parse_ip_addr(text: str) -> Links:
    """`ip -j -d addr show`: one object per link, with linkinfo and addr_info.

    Not remembered per entry: a link's text names the node's own MACs and addresses."""
    return Links(links=json_entries(text, "ip -j -d addr", _link))


#: entry text -> built entry, per table kind (see `json_entries`); entries are never modified
_ROUTES_SEEN: dict[str, dict[str, Route]] = {}
_NEIGHBOURS_SEEN: dict[str, Neighbour] = {}


def parse_ip_route(text: str, family: str = "inet") -> list[Route]:
    """`ip -j route show table all` (one family)."""

    def build(raw: dict[str, Any]) -> Route:
        dst = _require(raw, "dst", str)
        raw["family"] = "inet6" if family == "inet6" or ":" in dst else "inet"
        if type(raw.get("table")) is int:  # ids are printed as strings, but be lenient
            raw["table"] = str(raw["table"])
        raw["nexthops"] = _list_of_dicts(raw, "nexthops")
        return Route.model_validate(raw, strict=True)

    return json_entries(text, "ip -j route", build, _ROUTES_SEEN.setdefault(family, {}))


def parse_ip_neigh(text: str) -> Neighbours:
    """`ip -j neigh show`; `router` is printed as a key with a null value when set."""

    def build(raw: dict[str, Any]) -> Neighbour:
        dst = _require(raw, "dst", str)
        if not is_address(dst):
            raise FactParseError(f"dst {dst!r} is not an address")
        raw["router"] = "router" in raw
        return Neighbour.model_validate(raw, strict=True)

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
