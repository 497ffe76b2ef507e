"""The rule registry: one module per failure mode or tight family, listed explicitly.

Third-party rules register under the entry-point group `cnidoctor.rules`, each entry
pointing at a Rule subclass.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from cnidoctor.rules import (
    addressing,
    cluster,
    cni,
    crossnode,
    egress,
    firewall,
    flannel,
    iptables,
    kernel,
    mtu,
    nic,
    probes,
    routing,
    sysctl,
)
from cnidoctor.rules.base import Hit, NodeContext, Rule

__all__ = ["BUILTIN_RULES", "Hit", "NodeContext", "Rule", "all_rules"]

BUILTIN_RULES: tuple[type[Rule], ...] = (
    *kernel.RULES,
    *sysctl.RULES,
    *firewall.RULES,
    *iptables.RULES,
    *cni.RULES,
    *flannel.RULES,
    *nic.RULES,
    *routing.RULES,
    *addressing.RULES,
    *mtu.RULES,
    *crossnode.RULES,
    *egress.RULES,
    *probes.RULES,
    *cluster.RULES,
)


def all_rules() -> list[type[Rule]]:
    """Built-in rules, then any installed plugins (ids must not clash)."""
    rules = list(BUILTIN_RULES)
    seen = {r.id for r in rules}
    for entry in entry_points(group="cnidoctor.rules"):
        rule = entry.load()
        if rule.id not in seen:
            rules.append(rule)
            seen.add(rule.id)
    return rules
