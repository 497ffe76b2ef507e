"""From a diagnosis to a plan: one or more steps per finding, in the report's order.

The report is ordered first domino first, so the plan is too. Steps that several findings
share (disabling UFW clears both UFW findings; one k3s restart serves several) are merged
into the first one, which then lists every finding it clears.
"""

from __future__ import annotations

from collections.abc import Sequence

from cnidoctor.diagnose import Analysis, Target
from cnidoctor.remediation.model import Plan, Step
from cnidoctor.remediation.steps import BUILDERS, StepContext, manual_step


def build_plan(analysis: Analysis, targets: Sequence[Target]) -> Plan:
    report, cluster = analysis.report, analysis.context
    by_name = {t.name: t for t in targets}
    steps: list[Step] = []
    merged: dict[tuple[str | None, str], Step] = {}
    for finding in report.findings:
        node = cluster.node(finding.nodes[0]) if len(finding.nodes) == 1 else None
        ctx = StepContext(finding=finding, node=node, cluster=cluster, targets=by_name)
        builder = BUILDERS.get(finding.id)
        built = builder(ctx) if builder is not None and node is not None else None
        for step in built if built is not None else [manual_step(ctx)]:
            earlier = merged.get((step.node, step.key))
            if earlier is None:
                merged[(step.node, step.key)] = step
                steps.append(step)
                continue
            # the first finding's step stays as built; it now clears the later one too
            earlier.fixes += [key for key in step.fixes if key not in earlier.fixes]
            earlier.verify += [v for v in step.verify if v not in earlier.verify]
    for number, step in enumerate(steps, start=1):
        step.number = number
    return Plan(
        cluster=report.cluster,
        nodes=report.nodes,
        findings=report.findings,
        steps=steps,
    )


def node_order(plan: Plan) -> list[str]:
    """Nodes in the order their first step comes (how apply and the script walk them)."""
    order: list[str] = []
    for step in plan.steps:
        if step.node is not None and step.node not in order:
            order.append(step.node)
    return order
