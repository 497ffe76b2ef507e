"""Models of the outside contract: cluster settings, findings, the report (`cnidoctor/v1`)."""

from __future__ import annotations

import ipaddress
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA = "cnidoctor/v1"
CNI_CHOICES = ("flannel", "cilium", "calico", "auto")


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"critical": 0, "warning": 1, "info": 2}[self.value]

    def at_least(self, other: Severity) -> bool:
        return self.rank <= other.rank


class ClusterConfig(BaseModel):
    """What is known of the cluster as a whole (inventory `cluster:` or CLI flags)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    pod_cidr: str | None = None
    service_cidr: str | None = None
    cni: str = "auto"
    flannel_backend: str | None = None
    api_server: str | None = None
    kubeconfig: str | None = None

    @field_validator("pod_cidr", "service_cidr")
    @classmethod
    def _cidr(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ipaddress.ip_network(value, strict=False))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a CIDR") from exc

    @field_validator("cni")
    @classmethod
    def _cni(cls, value: str) -> str:
        if value not in CNI_CHOICES:
            raise ValueError(f"cni must be one of {', '.join(CNI_CHOICES)}")
        return value


class Finding(BaseModel):
    id: str
    severity: Severity
    nodes: list[str] = Field(default_factory=list)
    title: str
    explanation: str
    evidence: list[str] = Field(default_factory=list)
    fix: list[str] = Field(default_factory=list)
    caused_by: list[str] = Field(default_factory=list)
    root_cause: bool = True
    #: ids that do not explain this occurrence (rules.base.Hit.not_caused_by): not in the JSON
    not_caused_by: list[str] = Field(default_factory=list, exclude=True)

    @property
    def key(self) -> str:
        """`ID@NODE` for a one-node finding, `ID` otherwise: the form `caused_by` uses."""
        return f"{self.id}@{self.nodes[0]}" if len(self.nodes) == 1 else self.id


class NodeStatus(BaseModel):
    name: str
    collected: bool
    error: str | None = None
    duration_s: float | None = None
    #: facts that could not be collected or are absent: shown in reports, not in the contract
    facts_unavailable: list[str] = Field(default_factory=list, exclude=True)
    rules_skipped: list[str] = Field(default_factory=list, exclude=True)


class ClusterSummary(BaseModel):
    name: str | None = None
    pod_cidr: str | None = None
    service_cidr: str | None = None
    cni: str | None = None

    @classmethod
    def of(cls, cluster: ClusterConfig) -> ClusterSummary:
        """What a report says of the cluster it judged."""
        return cls(
            name=cluster.name,
            pod_cidr=cluster.pod_cidr,
            service_cidr=cluster.service_cidr,
            cni=cluster.cni,
        )


class Report(BaseModel):
    schema_: str = Field(default=SCHEMA, alias="schema")
    cluster: ClusterSummary
    nodes: list[NodeStatus]
    findings: list[Finding]

    model_config = ConfigDict(populate_by_name=True)

    def to_json_dict(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True)

    def worst(self) -> Severity | None:
        if not self.findings:
            return None
        return min((f.severity for f in self.findings), key=lambda s: s.rank)
