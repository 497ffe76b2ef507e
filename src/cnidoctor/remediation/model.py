"""The remediation plan: steps that fix findings, each with its risk, checks and undo.

A step is data: what it fixes (finding keys `ID@NODE`), where it runs, the exact shell
lines it runs, how its success is checked and how it is undone. The plan is printed,
rendered as a script, or applied; applying records each step's state on the step itself.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from cnidoctor.models import ClusterSummary, Finding, NodeStatus

FIX_SCHEMA = "cnidoctor/fix-v1"


class Risk(StrEnum):
    #: idempotent and reversible (load a module, write a sysctl.d file, restore subnet.env)
    SAFE = "safe"
    #: drops connections or changes the firewall (disable UFW, restart k3s): opt-in + confirm
    DISRUPTIVE = "disruptive"
    #: needs a human decision (which NIC is the uplink): printed, never run
    MANUAL = "manual"


class StepState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    #: its findings were already gone when its turn came (an earlier step cleared them)
    ALREADY_CLEAR = "already-clear"
    MANUAL = "manual"
    #: disruptive, and --allow-disruptive was not given
    REFUSED = "refused"
    #: disruptive, and the confirmation for its node was not given
    DECLINED = "declined"
    #: a precondition failed (no k3s unit, no systemd): this node cannot do it
    NOT_POSSIBLE = "not-possible"
    #: a command failed or the node could not be reached: the run stopped here
    FAILED = "failed"
    #: it ran, but its finding is still there: the run stopped here
    NOT_CLEARED = "not-cleared"


class Action(BaseModel):
    """One POSIX sh line run on the node; node data in it is quoted with shlex."""

    run: str
    timeout: float = 15.0


class Check(BaseModel):
    """A precondition: `run` must succeed on the node, else the step is not possible there."""

    run: str
    reason: str = Field(description="what is said when it fails")


class Transfer(BaseModel):
    """Copy one file from another node of the cluster (same architecture), atomically."""

    source_node: str
    source_spec: str
    source_path: str
    dest_path: str
    mode: str = "0755"


class Step(BaseModel):
    number: int = 0
    #: identifies the step on its node: steps of several findings with one key are merged
    key: str
    node: str | None = Field(description="the node it runs on; None = cluster-wide, manual")
    spec: str | None = Field(default=None, description="the node SPEC it is reached by")
    title: str
    risk: Risk
    fixes: list[str] = Field(description="keys (ID@NODE) of the findings it clears")
    why: str = ""
    requires: list[Check] = Field(default_factory=list)
    transfer: Transfer | None = None
    actions: list[Action] = Field(default_factory=list)
    persist: list[Action] = Field(
        default_factory=list, description="what makes it survive a reboot; run after actions"
    )
    verify: list[Action] = Field(default_factory=list)
    undo: list[str] = Field(default_factory=list)
    instructions: list[str] = Field(
        default_factory=list, description="manual steps: what a human does (never run)"
    )
    notes: list[str] = Field(default_factory=list)
    state: StepState = StepState.PENDING
    detail: str | None = None

    @property
    def commands(self) -> list[Action]:
        return [*self.actions, *self.persist]


class Outcome(BaseModel):
    """How an --apply run ended."""

    stopped_at: int | None = Field(default=None, description="the step the run stopped at")
    reason: str | None = None
    failed: bool = False


class Plan(BaseModel):
    schema_: str = Field(default=FIX_SCHEMA, alias="schema")
    cluster: ClusterSummary
    nodes: list[NodeStatus]
    findings: list[Finding]
    steps: list[Step]
    applied: bool = False
    outcome: Outcome | None = None
    #: the findings a fresh diagnosis still reports after --apply
    remaining: list[Finding] | None = None

    model_config = ConfigDict(populate_by_name=True)

    def to_json_dict(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True)

    def step_for(self, key: str) -> Step | None:
        """The step that fixes the finding `key`, if any."""
        return next((s for s in self.steps if key in s.fixes), None)
