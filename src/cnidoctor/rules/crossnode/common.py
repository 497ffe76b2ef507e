"""What two or more cross-node rules share.

One spelling per address, every node's segment addresses, and verdicts judged once per
distinct entry (the parsers share identical entries between nodes).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import repeat
from typing import Any, Generic, TypeVar

from cnidoctor.analysis.segments import HostAddress, host_addresses
from cnidoctor.collectors.network import LinksCollector
from cnidoctor.facts.network import Links
from cnidoctor.rules.base import ClusterContext

E = TypeVar("E")
V = TypeVar("V")


@lru_cache(maxsize=1 << 16)
def canonical_ip(ip: str | None) -> str | None:
    """One spelling per address (IPv6 compressed), or None for what is not an address.
    Cached: every node's tables name the same peers."""
    if not ip:
        return None
    try:
        return ipaddress.ip_address(ip).compressed
    except ValueError:
        return None


def cluster_addresses(ctx: ClusterContext) -> list[HostAddress]:
    """Every collected node's segment addresses (routers are not nodes: they do not vote)."""
    out: list[HostAddress] = []
    for node in ctx.nodes:
        links: Links | None = node.fact_or_none(LinksCollector)
        if links is not None:
            out += host_addresses(node.name, links)
    return out


class Judged(Generic[E, V]):
    """`judge` applied once per distinct entry object, for the length of one rule (the
    entries are the facts', alive meanwhile: their ids stay theirs). The parsers share
    identical entries between nodes and every node's tables list the same peers, so a
    2,000-node cluster's half a million neighbour rows are a few thousand distinct
    entries: those are judged, each table's verdicts are looked up by map operations."""

    def __init__(self, judge: Callable[[E], V]) -> None:
        self._judge = judge
        self._verdicts: dict[int, V] = {}

    def of(self, entries: Sequence[E]) -> list[V]:
        """The verdict of each entry, in order."""
        verdicts = self._verdicts
        ids = list(map(id, entries))
        out: list[Any] = list(map(verdicts.get, ids, repeat(_UNJUDGED)))
        if _UNJUDGED in out:  # entries met for the first time
            for i, key in enumerate(ids):
                if out[i] is _UNJUDGED:
                    if key not in verdicts:
                        verdicts[key] = self._judge(entries[i])
                    out[i] = verdicts[key]
        return out


_UNJUDGED = object()
