"""`fix --apply`: run a plan's steps through the nodes' transports, node by node.

After each step the node is collected again and every rule re-judged on the updated
facts; the run stops at the first step that failed (a command error, a node gone) or
whose finding is still there. Manual steps never run; disruptive ones only when allowed
and confirmed for their node. Whatever happens, each step ends with a state, and the
caller prints what was done, what was not, and how to undo.
"""

from __future__ import annotations

import base64
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cnidoctor.collect import NodeCollection
from cnidoctor.diagnose import Target, analyse_full, collect
from cnidoctor.errors import CnidoctorError
from cnidoctor.facts.cluster import ClusterFacts
from cnidoctor.models import ClusterConfig
from cnidoctor.remediation.model import Outcome, Plan, Risk, Step, StepState
from cnidoctor.remediation.plan import node_order
from cnidoctor.remediation.shell import checks_script, done_count, step_script
from cnidoctor.rules.base import Rule
from cnidoctor.transports import Command, transport_for
from cnidoctor.transports.base import CommandResult

#: base64 text per command when copying a file (one argv word stays under 128 KiB)
CHUNK = 96 * 1024
_SHA = re.compile(r"^[0-9a-f]{64}$")

Confirm = Callable[[str, list[Step]], bool]
Progress = Callable[[Step], None]


@dataclass
class ApplyOptions:
    allow_disruptive: bool = False
    #: asked once per node before its first disruptive step: (node, its disruptive steps)
    confirm: Confirm = field(default=lambda node, steps: False)
    progress: Progress | None = None


class StepFailed(CnidoctorError):
    """A step's command failed or its node could not be reached."""


class Applier:
    def __init__(
        self,
        plan: Plan,
        targets: Sequence[Target],
        cluster: ClusterConfig,
        rules: Sequence[type[Rule]],
        collections: Sequence[NodeCollection],
        kube: ClusterFacts | None,
        options: ApplyOptions,
    ) -> None:
        self.plan = plan
        self.targets = list(targets)
        self.by_name = {t.name: t for t in targets}
        self.cluster = cluster
        self.rules = list(rules)
        self.latest = {c.name: c for c in collections}
        self.kube = kube
        self.options = options
        self.present = self._finding_keys()
        self.confirmed: dict[str, bool] = {}

    def run(self) -> Outcome:
        self.plan.applied = True
        for name in node_order(self.plan):
            for step in [s for s in self.plan.steps if s.node == name]:
                self._gate_and_run(step)
                if self.options.progress is not None:
                    self.options.progress(step)
                if step.state in (StepState.FAILED, StepState.NOT_CLEARED):
                    outcome = Outcome(
                        stopped_at=step.number,
                        reason=step.detail,
                        failed=step.state is StepState.FAILED,
                    )
                    self.plan.outcome = outcome
                    return outcome
        for step in self.plan.steps:
            if step.state is StepState.PENDING and step.risk is Risk.MANUAL:
                step.state, step.detail = StepState.MANUAL, "not run: a human decides"
        self.plan.outcome = Outcome()
        return self.plan.outcome

    # -- one step -----------------------------------------------------------------------

    def _gate_and_run(self, step: Step) -> None:
        if step.risk is Risk.MANUAL or step.node is None:
            step.state, step.detail = StepState.MANUAL, "not run: a human decides"
            return
        if step.fixes and not any(key in self.present for key in step.fixes):
            step.state = StepState.ALREADY_CLEAR
            step.detail = "its findings were already gone"
            return
        if step.risk is Risk.DISRUPTIVE:
            if not self.options.allow_disruptive:
                step.state = StepState.REFUSED
                step.detail = "disruptive: run again with --allow-disruptive to do it"
                return
            if not self._confirm(step.node):
                step.state = StepState.DECLINED
                step.detail = f"disruptive steps on {step.node} were not confirmed"
                return
        try:
            self._run(step)
        except _Stop:
            return
        except CnidoctorError as exc:
            step.state, step.detail = StepState.FAILED, str(exc)

    def _confirm(self, node: str) -> bool:
        if node not in self.confirmed:
            mine = [
                s
                for s in self.plan.steps
                if s.node == node and s.risk is Risk.DISRUPTIVE and s.state is StepState.PENDING
            ]
            self.confirmed[node] = bool(self.options.confirm(node, mine))
        return self.confirmed[node]

    def _run(self, step: Step) -> None:
        assert step.node is not None
        target = self.by_name.get(step.node)
        if target is None:
            raise StepFailed(f"{step.node} is not in the inventory")
        transport = transport_for(target.spec)
        if step.requires:
            checks = [Command(("sh", "-c", checks_script([c.run])), 15.0) for c in step.requires]
            outcome = transport.run_batch(checks)
            for check, result in zip(step.requires, outcome.results, strict=True):
                if result.not_run is not None:
                    raise StepFailed(f"{step.node}: {result.not_run}")
                if not result.ok:
                    step.state, step.detail = StepState.NOT_POSSIBLE, check.reason
                    return
        if step.transfer is not None:
            self._transfer(step)
        # one round trip: the commands (stopping at the first failure), then the checks
        batch: list[Command] = []
        if step.commands:
            timeout = sum(a.timeout for a in step.commands) + 5
            batch.append(Command(("sh", "-c", step_script(step.commands)), timeout))
        if step.verify:
            checks = checks_script([a.run for a in step.verify])
            batch.append(Command(("sh", "-c", checks), sum(a.timeout for a in step.verify) + 5))
        results = transport.run_batch(batch).results if batch else []
        if step.commands:
            self._check_actions(step, results.pop(0))
        if step.verify:
            result = results.pop(0)
            if result.not_run is not None:
                raise StepFailed(f"{step.node}: {result.not_run}")
            if not result.ok:
                step.state = StepState.NOT_CLEARED
                step.detail = "its check failed: " + "; ".join(a.run for a in step.verify)
                return
        self._recheck(step)

    def _check_actions(self, step: Step, result: CommandResult) -> None:
        if result.ok:
            return
        actions = step.commands
        done = done_count(result.stdout)
        where = actions[done].run if done < len(actions) else "the end of the step"
        raise StepFailed(
            f"{step.node}: stopped at `{_short(where)}` ({_why(result)}); "
            f"{done} of {len(actions)} commands done"
        )

    def _recheck(self, step: Step) -> None:
        """Collect the node again and re-judge everything: its findings must be gone."""
        assert step.node is not None
        target = self.by_name[step.node]
        fresh = collect([target], self.rules)[0]
        if not fresh.collected:
            raise StepFailed(f"{step.node}: could not collect it again: {fresh.error}")
        self.latest[step.node] = fresh
        self.present = self._finding_keys()
        left = [key for key in step.fixes if key in self.present]
        if left:
            step.state = StepState.NOT_CLEARED
            step.detail = "still reported after the step: " + ", ".join(left)
            return
        step.state = StepState.DONE
        step.detail = None

    def _finding_keys(self) -> set[str]:
        analysis = analyse_full(
            list(self.latest.values()), self.targets, self.cluster, self.rules, self.kube
        )
        return {f.key for f in analysis.report.findings}

    # -- copying a file between nodes ---------------------------------------------------------

    def _transfer(self, step: Step) -> None:
        transfer = step.transfer
        assert transfer is not None and step.node is not None
        source = transport_for(transfer.source_spec)
        dest = transport_for(self.by_name[step.node].spec)
        read = source.run_batch(
            [
                Command(("uname", "-m")),
                Command(("sha256sum", "--", transfer.source_path), 30.0),
                Command(("base64", "--", transfer.source_path), 60.0),
            ]
        )
        arch, digest, data = read.results
        for result in (arch, digest, data):
            if not result.ok:
                raise StepFailed(f"{transfer.source_node}: {result.display}: {_why(result)}")
        sha = digest.stdout.split()[0] if digest.stdout.split() else ""
        if not _SHA.match(sha):
            raise StepFailed(f"{transfer.source_node}: unexpected sha256sum output")
        text = "".join(data.stdout.split())
        try:
            base64.b64decode(text, validate=True)  # a damaged read fails here, not on the node
        except ValueError as exc:
            raise StepFailed(f"{transfer.source_node}: unreadable copy: {exc}") from exc
        here = dest.run_batch([Command(("uname", "-m"))]).results[0]
        if not here.ok:
            raise StepFailed(f"{step.node}: uname -m: {_why(here)}")
        if here.stdout.strip() != arch.stdout.strip():
            step.state = StepState.NOT_POSSIBLE
            step.detail = (
                f"{transfer.source_node} is {arch.stdout.strip()} but {step.node} is "
                f"{here.stdout.strip()}: reinstall the plugin on {step.node} instead"
            )
            raise _Stop
        directory, name = transfer.dest_path.rsplit("/", 1)
        encoded = f"{directory}/.{name}.cnidoctor-b64"
        temp = f"{directory}/.{name}.cnidoctor-tmp"
        commands = [Command(("rm", "-f", "--", encoded, temp))]
        for start in range(0, len(text), CHUNK):
            chunk = text[start : start + CHUNK]
            commands.append(
                Command(("sh", "-c", 'printf %s "$1" >> "$2"', "sh", chunk, encoded), 15.0)
            )
        install = (
            'base64 -d "$1" > "$2" && rm -f "$1" '
            '&& [ "$(sha256sum < "$2" | cut -d" " -f1)" = "$3" ] '
            '&& chmod "$5" "$2" && mv -f "$2" "$4" || { rm -f "$1" "$2"; exit 1; }'
        )
        commands.append(
            Command(
                ("sh", "-c", install, "sh", encoded, temp, sha, transfer.dest_path, transfer.mode),
                30.0,
            )
        )
        outcome = dest.run_batch(commands)
        failed = next((r for r in outcome.results if not r.ok), None)
        if failed is not None:
            raise StepFailed(
                f"{step.node}: copying {transfer.source_path} from {transfer.source_node} "
                f"failed at `{_short(shlex.join(failed.argv[:3]))}`: {_why(failed)}"
            )


class _Stop(Exception):
    """The step set its own final state (not possible): nothing more to run for it."""


def _short(text: str, limit: int = 120) -> str:
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 3] + "..."


def _why(result: CommandResult) -> str:
    if result.not_run is not None:
        return result.not_run
    if result.timed_out:
        return "timed out"
    lines = [ln.strip() for ln in result.stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit status {result.rc}"
