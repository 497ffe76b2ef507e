"""Test helpers: node contexts from raw command outputs (through the real parsers), `lab run`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from cnidoctor.collectors.base import Collector
from cnidoctor.engine import run_node_rules
from cnidoctor.models import ClusterConfig, Finding
from cnidoctor.rules.base import NodeContext, Rule
from cnidoctor.transports.base import CommandResult

DATA = Path(__file__).parent / "data"


def data(relative: str) -> str:
    """The text of a captured output under tests/data."""
    return (DATA / relative).read_text()


def ok(stdout: str = "", stderr: str = "") -> CommandResult:
    return CommandResult(argv=["captured"], rc=0, stdout=stdout, stderr=stderr)


def failed(rc: int, stderr: str = "", stdout: str = "") -> CommandResult:
    return CommandResult(argv=["captured"], rc=rc, stdout=stdout, stderr=stderr)


def node(
    outputs: Mapping[type[Collector], Sequence[CommandResult | str]],
    cluster: ClusterConfig | None = None,
    name: str = "node1",
    address: str | None = None,
    role: str = "worker",
) -> NodeContext:
    """A node whose facts are the given raw outputs (str = a successful command's stdout)."""
    facts = {}
    for collector, results in outputs.items():
        raw = [ok(r) if isinstance(r, str) else r for r in results]
        assert len(raw) == len(collector.commands), (
            f"{collector.name} takes {len(collector.commands)} outputs"
        )
        raw = [
            r.model_copy(update={"argv": list(c.argv)})
            for r, c in zip(raw, collector.commands, strict=True)
        ]
        facts[collector.name] = collector.judge(raw)
    return NodeContext(
        name=name, facts=facts, cluster=cluster or ClusterConfig(), address=address, role=role
    )


def findings(rule: type[Rule], ctx: NodeContext) -> list[Finding]:
    """Run one rule on one node the way the engine does; FactUnavailable fails the test."""
    run = run_node_rules([ctx], [rule])
    assert not run.skipped, f"rule skipped: {run.skipped}"
    return run.findings


def lab_run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    """`cnidoctor lab run ARGS --format json` (root): its exit status and its report."""
    from cnidoctor import cli

    capsys.readouterr()
    status = cli.main(["lab", "run", *args, "--format", "json"])
    return status, json.loads(capsys.readouterr().out)
