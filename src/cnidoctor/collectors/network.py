"""Links with addresses and VXLAN details, routes of all tables, neighbours: `ip -j`.

`ip -j` output differs between iproute2 versions (keys come and go), so the parsers
read only the keys the rules use, ignore the rest, and turn anything that is not the
expected shape into a FactParseError naming the entry, never another exception.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError

from cnidoctor.collectors.base import Collector, FactParseError
from cnidoctor.facts.network import (
    Address,
    Link,
    Links,
    Neighbour,
    Neighbours,
    Route,
    Routes,
    VxlanInfo,
)
from cnidoctor.transports.base import Command, CommandResult

T = TypeVar("T")


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


def _entries(text: str, what: str, build: Callable[[dict[str, Any]], T]) -> list[T]:
    """Build one model per entry; a bad entry is a parse error that says which one and why."""
    out = []
    for index, raw in enumerate(load_json_list(text, what)):
        try:
            out.append(build(raw))
        except FactParseError as exc:
            raise FactParseError(f"{what}: entry {index}: {exc}") from exc
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "entry"
            raise FactParseError(f"{what}: entry {index}: {where}: {first['msg']}") from exc
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise FactParseError(f"{what}: entry {index}: {type(exc).__name__}: {exc}") from exc
    return out


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
    address = Address.model_validate(raw)
    try:
        interface = ipaddress.ip_interface(address.cidr)
    except ValueError as exc:
        raise FactParseError(f"address {address.cidr!r} is not an address/prefix") from exc
    if (interface.version == 6) != (family == "inet6"):
        raise FactParseError(f"address {address.cidr!r} is not {family}")
    return address


def _vxlan(data: dict[str, Any]) -> VxlanInfo:
    local = data.get("local", data.get("local6"))
    return VxlanInfo.model_validate({**data, "local": local})


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
    return Link.model_validate(
        {
            **raw,
            "ifindex": ifindex,
            "ifname": ifname,
            "kind": kind,
            "vxlan": vxlan,
            "addresses": addresses,
        }
    )


def parse_ip_addr(text: str) -> Links:
    """`ip -j -d addr show`: one object per link, with linkinfo and addr_info."""
    return Links(links=_entries(text, "ip -j -d addr", _link))


def parse_ip_route(text: str, family: str = "inet") -> list[Route]:
    """`ip -j route show table all` (one family)."""

    def build(raw: dict[str, Any]) -> Route:
        dst = _require(raw, "dst", str)
        fam = "inet6" if family == "inet6" or ":" in dst else "inet"
        table = raw.get("table", "main")
        if isinstance(table, int) and not isinstance(table, bool):
            table = str(table)  # numeric table ids are printed as strings, but be lenient
        nexthops = _list_of_dicts(raw, "nexthops")
        return Route.model_validate(
            {
                **raw,
                "family": fam,
                "table": table,
                "metric": raw.get("metric", 0),
                "nexthops": nexthops,
            }
        )

    return _entries(text, "ip -j route", build)


def parse_ip_neigh(text: str) -> Neighbours:
    """`ip -j neigh show`; `router` is printed as a key with a null value when set."""

    def build(raw: dict[str, Any]) -> Neighbour:
        dst = _require(raw, "dst", str)
        try:
            ipaddress.ip_address(dst)
        except ValueError as exc:
            raise FactParseError(f"dst {dst!r} is not an address") from exc
        return Neighbour.model_validate({**raw, "router": "router" in raw})

    return Neighbours(entries=_entries(text, "ip -j neigh", build))


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
