"""The lab: incident replay in network namespaces (root only).

`up(name)` builds a scenario's nodes as network namespaces with node-private mount
namespaces and returns the path of an inventory whose nodes are `netns:` specs, so
`cnidoctor diagnose --inventory PATH` examines them exactly as it would real hosts.
`down(name)` removes everything `up` made, also after a crashed or partial `up`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnidoctor.errors import UsageError
from cnidoctor.lab.build import build, destroy
from cnidoctor.lab.model import Scenario
from cnidoctor.lab.scenarios import SCENARIOS
from cnidoctor.lab.state import LabState

__all__ = ["ScenarioInfo", "down", "inventory_path", "list_scenarios", "up"]


@dataclass(frozen=True)
class ScenarioInfo:
    """What `lab list` shows: the name, one line, and the incident it replays."""

    name: str
    description: str
    #: incident report file name (in the shared incidents dir), or None for a baseline
    incident: str | None


def list_scenarios() -> list[ScenarioInfo]:
    return [
        ScenarioInfo(name=s.name, description=s.description, incident=s.incident)
        for s in sorted(SCENARIOS.values(), key=lambda s: s.name)
    ]


def up(name: str) -> Path:
    """Build the scenario; returns its inventory file. UsageError if unknown or already up."""
    return build(_scenario(name))


def down(name: str) -> None:
    """Remove everything `up` made (also after a crashed `up`); quiet when nothing is up."""
    destroy(name, _scenario(name))


def inventory_path(name: str) -> Path:
    """The inventory of a scenario that is up; UsageError otherwise."""
    _scenario(name)
    state = LabState.load(name)
    if state is None:
        raise UsageError(f"lab {name} is not up (cnidoctor lab up {name})")
    if not state.complete or not state.inventory.is_file():
        raise UsageError(
            f"lab {name} is only partly up (an earlier up was interrupted): "
            f"run cnidoctor lab down {name}"
        )
    return state.inventory


def _scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        known = ", ".join(sorted(SCENARIOS))
        raise UsageError(f"unknown lab scenario {name!r} (known: {known})") from None
