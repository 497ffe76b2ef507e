"""Every collector the built-in rules may ask for, in batch order."""

from __future__ import annotations

from collections.abc import Iterable

from cnidoctor.collectors.base import Collector


def collectors_for(rules: Iterable[type]) -> list[type[Collector]]:
    """The collectors the given rules need, each once, in a stable order."""
    seen: dict[str, type[Collector]] = {}
    for rule in rules:
        companion = getattr(rule, "cross_node", None)
        for collector in (*rule.needs, *(companion.needs if companion else ())):
            seen.setdefault(collector.name, collector)
    return sorted(seen.values(), key=lambda c: c.name)
