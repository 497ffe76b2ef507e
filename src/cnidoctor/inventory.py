"""The inventory file (contract: cluster, nodes, routers): one clear line per mistake."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cnidoctor.errors import UsageError
from cnidoctor.models import ClusterConfig
from cnidoctor.transports import transport_for


class NodeEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=253)
    address: str | None = None
    role: Literal["control-plane", "worker"] = "worker"
    etcd: bool | None = None
    via: str = "local"

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_address(value)
        return value

    @field_validator("via")
    @classmethod
    def _via(cls, value: str) -> str:
        transport_for(value)  # raises UsageError with the reason
        return value

    @property
    def is_etcd(self) -> bool:
        return self.etcd if self.etcd is not None else self.role == "control-plane"


class RouterEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    via: str

    @field_validator("via")
    @classmethod
    def _via(cls, value: str) -> str:
        transport_for(value)
        return value


class Inventory(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    nodes: list[NodeEntry] = Field(min_length=1)
    routers: list[RouterEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> Inventory:
        seen: set[str] = set()
        for entry in [*self.nodes, *self.routers]:
            if entry.name in seen:
                raise ValueError(f"duplicate node name {entry.name!r}")
            seen.add(entry.name)
        return self


def load_inventory(path: str | Path) -> Inventory:
    """Read and validate an inventory file; every problem is one UsageError line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"inventory {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UsageError(f"inventory {path}:{where} not valid YAML") from exc
    if not isinstance(data, dict):
        raise UsageError(f"inventory {path}: expected a mapping with 'cluster' and 'nodes'")
    try:
        inventory = Inventory.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"inventory {path}: {first_error(exc)}") from exc
    except UsageError as exc:
        raise UsageError(f"inventory {path}: {exc}") from exc
    kubeconfig = inventory.cluster.kubeconfig
    if kubeconfig and not Path(kubeconfig).is_absolute():
        inventory.cluster.kubeconfig = str((path.parent / kubeconfig).resolve())
    return inventory


def first_error(exc: ValidationError) -> str:
    """pydantic's first error as `where: what` (e.g. `nodes.1.via: unknown node spec ...`)."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    return f"{where}: {message}" if where else message
