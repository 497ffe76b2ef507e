"""What a step builder sees, and the helpers every family uses to make steps.

A builder gets one finding with its node's facts and the whole cluster (peers, the API)
and returns the steps that fix it, or None when it has nothing better than the
finding's own fix text (the plan then carries that as a manual step).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cnidoctor.diagnose import Target
from cnidoctor.models import Finding
from cnidoctor.remediation.model import Risk, Step
from cnidoctor.rules.base import ClusterContext, NodeContext


@dataclass
class StepContext:
    finding: Finding
    #: the node of a one-node finding (None for cluster-wide ones)
    node: NodeContext | None
    cluster: ClusterContext
    targets: dict[str, Target]

    @property
    def key(self) -> str:
        return self.finding.key

    def spec(self, name: str | None) -> str | None:
        target = self.targets.get(name) if name else None
        return target.spec if target else None

    def peers(self) -> list[NodeContext]:
        """The other collected nodes, in inventory order."""
        return [n for n in self.cluster.nodes if self.node is None or n.name != self.node.name]

    def fact(self, collector: type) -> Any:
        """The node's fact, or None (builders fall back to a manual step without it)."""
        return self.node.fact_or_none(collector) if self.node is not None else None


Builder = Callable[[StepContext], list[Step] | None]


def make_step(ctx: StepContext, key: str, title: str, risk: Risk, **fields: Any) -> Step:
    """A step on the finding's node that fixes the finding."""
    node = ctx.node.name if ctx.node is not None else None
    fields.setdefault("fixes", [ctx.key])
    fields.setdefault("why", ctx.finding.title)
    return Step(key=key, node=node, spec=ctx.spec(node), title=title, risk=risk, **fields)


_BRE_SPECIAL = re.compile(r"([\\.*\[\]^$/])")


def sed_delete_line(path: str, text: str) -> str:
    """`sed -i` that deletes exactly the line `text` (for undo instructions)."""
    import shlex

    pattern = _BRE_SPECIAL.sub(r"\\\1", text)
    return shlex.join(["sed", "-i", f"/^{pattern}$/d", path])
