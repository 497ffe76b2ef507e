"""Snapshots: raw collected output, saved to analyse later (`diagnose --from`) elsewhere.

Raw command output is stored, not parsed facts, so a newer cnidoctor re-parses an old
snapshot with its current parsers and rules.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ValidationError

from cnidoctor.collect import NodeCollection
from cnidoctor.diagnose import Target
from cnidoctor.errors import UsageError
from cnidoctor.facts.cluster import ClusterFacts
from cnidoctor.inventory import first_error
from cnidoctor.models import ClusterConfig

SNAPSHOT_SCHEMA = "cnidoctor/snapshot-v1"


class Snapshot(BaseModel):
    schema_version: str = SNAPSHOT_SCHEMA
    cluster: ClusterConfig
    targets: list[dict[str, str | bool | None]]
    collections: list[NodeCollection]
    #: what the API said, as parsed facts (its JSON is already the API's own format)
    kube: ClusterFacts | None = None

    def target_list(self) -> list[Target]:
        return [Target(**t) for t in self.targets]  # type: ignore[arg-type]


def save_snapshot(
    path: Path,
    cluster: ClusterConfig,
    targets: list[Target],
    collections: list[NodeCollection],
    kube: ClusterFacts | None = None,
) -> None:
    snapshot = Snapshot(
        cluster=cluster,
        targets=[t.__dict__ for t in targets],
        collections=collections,
        kube=kube,
    )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(snapshot.model_dump_json(indent=1))
    tmp.replace(path)


def load_snapshot(path: Path) -> Snapshot:
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"snapshot {path}: {exc.strerror or exc}") from exc
    try:
        snapshot = Snapshot.model_validate_json(text)
    except ValidationError as exc:
        raise UsageError(f"snapshot {path}: not a cnidoctor snapshot ({first_error(exc)})") from exc
    if snapshot.schema_version != SNAPSHOT_SCHEMA:
        raise UsageError(f"snapshot {path}: unsupported schema {snapshot.schema_version!r}")
    return snapshot
