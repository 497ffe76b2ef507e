"""The envelope every fact travels in: collected, absent (with why), or failed (with why)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class FactModel(BaseModel):
    """Base of every fact model: tool JSON grows fields between versions, so extras are ignored."""

    model_config = ConfigDict(extra="ignore")


class FactStatus(StrEnum):
    OK = "ok"
    #: a precondition is not met (no nft binary, no k3s directory): a fact, not an error
    ABSENT = "absent"
    #: the fact could not be collected (timeout, garbage output, permission)
    ERROR = "error"


class Fact(BaseModel):
    """One fact of one node. `value` is set only when status is ok."""

    name: str
    status: FactStatus
    value: Any = None
    reason: str | None = Field(default=None, description="why the fact is absent or failed")
    sources: list[str] = Field(default_factory=list, description="the commands it came from")

    @property
    def ok(self) -> bool:
        return self.status is FactStatus.OK

    def describe(self) -> str:
        if self.ok:
            return f"{self.name}: collected"
        state = "not present" if self.status is FactStatus.ABSENT else "could not collect"
        return f"{self.name}: {state}: {self.reason}"
