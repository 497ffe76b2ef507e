"""`cnidoctor matrix`: active node-to-node probes, judged into a `cnidoctor/v1` report.

matrix_run.py sends the probes (every source at once, one shell per node), matrix_judge.py
turns failed pairs into findings, matrix_render.py draws the N x N grid.
"""

from __future__ import annotations

from collections.abc import Sequence

from cnidoctor.inventory import Inventory
from cnidoctor.models import ClusterConfig, ClusterSummary, NodeStatus, Report
from cnidoctor.probes.matrix_judge import FirewallReader, judge, read_firewalls
from cnidoctor.probes.matrix_model import MatrixResult
from cnidoctor.probes.matrix_run import DEFAULT_TIMEOUT, MatrixNode, run_matrix

__all__ = ["MatrixNode", "matrix_report", "nodes_from_inventory", "nodes_from_targets"]


def nodes_from_inventory(inventory: Inventory) -> list[MatrixNode]:
    """The inventory's Kubernetes nodes (routers are not probed: they are not nodes)."""
    return [
        MatrixNode(name=n.name, spec=n.via, address=n.address, role=n.role, etcd=n.etcd)
        for n in inventory.nodes
    ]


def nodes_from_targets(targets: Sequence[object]) -> list[MatrixNode]:
    """diagnose.Target objects (e.g. from the API) as matrix nodes, routers left out."""
    return [
        MatrixNode(
            name=t.name,  # type: ignore[attr-defined]
            spec=t.spec,  # type: ignore[attr-defined]
            address=t.address,  # type: ignore[attr-defined]
            role=t.role,  # type: ignore[attr-defined]
            etcd=t.etcd,  # type: ignore[attr-defined]
        )
        for t in targets
        if getattr(t, "role", "") != "router"
    ]


def matrix_report(
    nodes: Sequence[MatrixNode],
    cluster: ClusterConfig,
    timeout: float = DEFAULT_TIMEOUT,
    read: FirewallReader = read_firewalls,
) -> tuple[MatrixResult, Report]:
    """Probe every pair, judge the failures; the raw result (for the grid) and the report."""
    result = run_matrix(nodes, cluster, timeout)
    findings = judge(result, nodes, read)
    statuses = [
        NodeStatus(
            name=run.name,
            collected=run.ran,
            error=run.error,
            duration_s=run.duration_s,
            facts_unavailable=run.notes,
        )
        for run in result.runs
    ]
    report = Report(
        cluster=ClusterSummary.of(cluster),
        nodes=statuses,
        findings=findings,
    )
    return result, report
