"""Every collector the built-in rules may ask for, in batch order."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from cnidoctor.collectors.base import Collector


def collectors_for(rules: Iterable[type]) -> list[type[Collector]]:
    """The collectors the given rules need, each once, in a stable order."""
    return list(_collectors_for(tuple(rules)))


@lru_cache(maxsize=16)
def _collectors_for(rules: tuple[type, ...]) -> tuple[type[Collector], ...]:
    """Asked once per node of an analysis, with the same rules: worked out once."""
    seen: dict[str, type[Collector]] = {}
    for rule in rules:
        companion = getattr(rule, "cross_node", None)
        for collector in (*rule.needs, *(companion.needs if companion else ())):
            seen.setdefault(collector.name, collector)
    return tuple(sorted(seen.values(), key=lambda c: c.name))
