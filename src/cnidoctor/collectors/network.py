"""Links with addresses and VXLAN details, routes of all tables, neighbours: `ip -j`."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from typing import Any

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


def load_json_list(text: str, what: str) -> list[dict[str, Any]]:
    """`ip -j` prints a JSON array of objects; anything else is garbage for us."""
    try:
        data = json.loads(text) if text.strip() else []
    except json.JSONDecodeError as exc:
        raise FactParseError(f"{what}: not JSON ({exc.msg} at char {exc.pos})") from exc
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise FactParseError(f"{what}: expected a JSON array of objects")
    return data


def parse_ip_addr(text: str) -> Links:
    """`ip -j -d addr show`: one object per link, with linkinfo and addr_info."""
    links = []
    for raw in load_json_list(text, "ip -j -d addr"):
        info = raw.get("linkinfo") or {}
        kind = info.get("info_kind")
        vxlan = None
        if kind == "vxlan" and isinstance(info.get("info_data"), dict):
            data = info["info_data"]
            vxlan = VxlanInfo(
                id=data.get("id"),
                local=data.get("local"),
                port=data.get("port"),
                link=data.get("link"),
                learning=data.get("learning"),
            )
        addresses = [
            Address(
                family=a["family"],
                local=a["local"],
                prefixlen=a["prefixlen"],
                scope=a.get("scope", "global"),
            )
            for a in raw.get("addr_info", [])
            if isinstance(a, dict) and "local" in a and "prefixlen" in a and "family" in a
        ]
        links.append(
            Link(
                ifindex=raw["ifindex"],
                ifname=raw["ifname"],
                flags=raw.get("flags", []),
                mtu=raw.get("mtu"),
                operstate=raw.get("operstate"),
                address=raw.get("address"),
                link=raw.get("link"),
                kind=kind,
                master=raw.get("master"),
                vxlan=vxlan,
                addresses=addresses,
            )
        )
    return Links(links=links)


def parse_ip_route(text: str, family: str = "inet") -> list[Route]:
    """`ip -j route show table all` (one family)."""
    routes = []
    for raw in load_json_list(text, "ip -j route"):
        if "dst" not in raw:
            raise FactParseError("ip -j route: an entry without dst")
        dst = raw["dst"]
        if family == "inet6" or ":" in dst:
            fam = "inet6"
        else:
            fam = "inet"
        routes.append(Route.model_validate({**raw, "family": fam, "metric": raw.get("metric", 0)}))
    return routes


def parse_ip_neigh(text: str) -> Neighbours:
    entries = []
    for raw in load_json_list(text, "ip -j neigh"):
        if "dst" not in raw:
            raise FactParseError("ip -j neigh: an entry without dst")
        ipaddress.ip_address(raw["dst"])
        entries.append(Neighbour.model_validate({**raw, "router": "router" in raw}))
    return Neighbours(entries=entries)


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
