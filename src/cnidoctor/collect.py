"""Collection: run every needed collector's commands on a node in one batch, keep raw results.

Raw results (not parsed facts) are what a snapshot stores, so `diagnose --from` re-parses
them with the same parsers on another machine.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from cnidoctor.collectors.base import Collector
from cnidoctor.errors import CnidoctorError
from cnidoctor.facts.base import Fact
from cnidoctor.transports import Transport
from cnidoctor.transports.base import Command, CommandResult


class NodeCollection(BaseModel):
    """Raw output of one node's batch, grouped by collector name."""

    name: str
    spec: str
    collected: bool
    error: str | None = None
    duration_s: float | None = None
    results: dict[str, list[CommandResult]] = Field(default_factory=dict)


def collect_node(
    name: str,
    transport: Transport,
    collectors: Sequence[type[Collector]],
    timeout: float | None = None,
) -> NodeCollection:
    """One round trip to the node; a node that cannot be reached is a result, not an exception."""
    commands: list[Command] = []
    owners: list[str] = []
    for collector in collectors:
        for command in collector.commands:
            commands.append(command)
            owners.append(collector.name)
    try:
        outcome = transport.run_batch(commands, timeout=timeout)
    except CnidoctorError as exc:
        return NodeCollection(name=name, spec=transport.spec, collected=False, error=str(exc))
    grouped: dict[str, list[CommandResult]] = {}
    for owner, result in zip(owners, outcome.results, strict=True):
        grouped.setdefault(owner, []).append(result)
    return NodeCollection(
        name=name,
        spec=transport.spec,
        collected=True,
        error=outcome.error,
        duration_s=round(outcome.duration_s, 3),
        results=grouped,
    )


#: a collector's raw results, as a key: what its Fact is a pure function of
ResultsKey = tuple[str, tuple[tuple[object, ...], ...]]


def judge_facts(
    collection: NodeCollection,
    collectors: Sequence[type[Collector]],
    judged: dict[ResultsKey, Fact] | None = None,
) -> dict[str, Fact]:
    """Parse each collector's raw results into a Fact (pure; also used on snapshots).

    With `judged` (one dict per analysis), results identical to another node's are not
    parsed again: the nodes of a cluster print the same sysctls, kernel, CNI config and
    tool versions, so a 2,000-node analysis parses each of those a handful of times. Facts
    are never modified after parsing, so nodes may share them."""
    facts: dict[str, Fact] = {}
    for collector in collectors:
        results = collection.results.get(collector.name)
        if not collector.commands:  # recorded by another step (the pod probes), or absent
            facts[collector.name] = collector.judge(results or [])
            continue
        if results is None or len(results) != len(collector.commands):
            facts[collector.name] = Fact(
                name=collector.name, status="error", reason="not in this collection"
            )
            continue
        if judged is None:
            facts[collector.name] = collector.judge(results)
            continue
        key = (collector.name, tuple(_result_key(r) for r in results))
        fact = judged.get(key)
        if fact is None:
            fact = judged[key] = collector.judge(results)
        facts[collector.name] = fact
    return facts


def _result_key(result: CommandResult) -> tuple[object, ...]:
    return (
        tuple(result.argv),
        result.rc,
        result.stdout,
        result.stderr,
        result.timed_out,
        result.not_run,
    )
