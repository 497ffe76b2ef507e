"""Remediation: a plan of steps from a diagnosis (`cnidoctor fix`), and the guards that keep
a fix in place across reboots (`cnidoctor guard`).

model.py   the plan and its steps (risk, commands, verify, undo, state)
steps/     one builder per catalog id, by family; other findings become manual steps
plan.py    findings (first domino first) -> steps, merged where one step clears several
apply.py   --apply: run steps through the transports, re-judge after each, stop on failure
render.py  text, Markdown, shell script
guard.py   flannel-subnet-env: the restore/backup script and units (incident 001)
"""

from __future__ import annotations

from cnidoctor.remediation.model import Plan, Risk, Step, StepState
from cnidoctor.remediation.plan import build_plan

__all__ = ["Plan", "Risk", "Step", "StepState", "build_plan"]
