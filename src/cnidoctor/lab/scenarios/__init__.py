"""The scenario registry: one module per scenario, each exporting SCENARIO."""

from __future__ import annotations

from cnidoctor.lab.model import Scenario
from cnidoctor.lab.scenarios import (
    healthy_cluster,
    healthy_node,
    seed_000,
    seed_001,
    seed_002,
    seed_002_mac,
    seed_003,
    seed_003_fixed,
)

SCENARIOS: dict[str, Scenario] = {
    module.SCENARIO.name: module.SCENARIO
    for module in (
        *(healthy_node, healthy_cluster, seed_000, seed_001, seed_002, seed_002_mac),
        *(seed_003, seed_003_fixed),
    )
}
