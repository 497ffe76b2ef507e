"""A plan as text, Markdown or a shell script; after --apply, with each step's state.

Text and Markdown show every step in plan order (first domino first). The script walks
node by node, like --apply: it reaches each node the way cnidoctor does (the transport's
own shell command) and feeds it that node's steps; `set -e` stops it at the first failure.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from rich.console import Console
from rich.text import Text

from cnidoctor import __version__
from cnidoctor.remediation.model import Plan, Risk, Step, StepState
from cnidoctor.remediation.plan import node_order
from cnidoctor.remediation.shell import prelude
from cnidoctor.reports.markdown import code_block, code_span
from cnidoctor.transports import transport_for

RISK_STYLE = {
    Risk.SAFE: "bold green",
    Risk.DISRUPTIVE: "bold yellow",
    Risk.MANUAL: "bold cyan",
}
STATE_STYLE = {
    StepState.DONE: "green",
    StepState.ALREADY_CLEAR: "green",
    StepState.FAILED: "bold red",
    StepState.NOT_CLEARED: "bold red",
}
#: lines of one list shown in text/Markdown; the script and JSON always hold all of them
SHOWN = 8


def summary(plan: Plan) -> str:
    counts = [
        f"{sum(s.risk is r for s in plan.steps)} {r.value}"
        for r in Risk
        if any(s.risk is r for s in plan.steps)
    ]
    name = plan.cluster.name or "the cluster"
    if not plan.steps:
        return f"Nothing to fix on {name}: the diagnosis found nothing."
    steps = f"{len(plan.steps)} step{'s' if len(plan.steps) != 1 else ''}"
    return f"Remediation plan for {name}: {steps} ({', '.join(counts)}), first domino first"


def state_text(step: Step, plan: Plan) -> str:
    if step.state is StepState.PENDING:
        if plan.outcome is not None and plan.outcome.stopped_at is not None:
            return f"not run: the run stopped at step {plan.outcome.stopped_at}"
        return "pending"
    return step.state.value + (f": {step.detail}" if step.detail else "")


def _capped(lines: list[str]) -> list[str]:
    if len(lines) <= SHOWN:
        return lines
    return [*lines[:SHOWN], f"... and {len(lines) - SHOWN} more (all of them: --format script)"]


def _display(run: str, limit: int = 6) -> str:
    """A command as shown in text/Markdown: a long embedded file is cut to its first lines."""
    lines = run.splitlines()
    if len(lines) <= limit:
        return run
    kept = "\n".join(lines[:3])
    return f"{kept}\n... ({len(lines) - 3} more lines of this command: --format script)"


def _parts(step: Step) -> list[tuple[str, list[str]]]:
    return [
        ("fixes", step.fixes),
        ("why", [step.why] if step.why and step.why != step.title else []),
        ("needs", [c.run for c in step.requires]),
        (
            "copy",
            [
                f"{step.transfer.source_path} on {step.transfer.source_node} -> "
                f"{step.transfer.dest_path} (mode {step.transfer.mode})"
            ]
            if step.transfer
            else [],
        ),
        ("run", _capped([_display(a.run) for a in step.actions])),
        ("persist", _capped([_display(a.run) for a in step.persist])),
        ("by hand", step.instructions),
        ("verify", [a.run for a in step.verify]),
        ("undo", _capped(step.undo)),
        ("note", step.notes),
    ]


def render_text(plan: Plan, out: Console) -> None:
    """Every step in plan order. Commands are printed as they run (an embedded file keeps
    its lines unindented) so a copied command is exactly the one in the plan."""
    out.print(Text(summary(plan), style="bold"))
    for step in plan.steps:
        out.print()
        head = Text(f"{step.number:>2}  ")
        head.append(f"{step.risk.value:<10}", style=RISK_STYLE[step.risk])
        head.append(f"  {step.node or 'cluster-wide'}: ", style="bold")
        head.append(step.title)
        out.print(head)
        for label, lines in _parts(step):
            for index, line in enumerate(lines):
                prefix = f"    {label:<8}" if index == 0 else " " * 12
                out.print(Text(prefix + line), soft_wrap=True)
        if plan.applied:
            text = Text("    state   ")
            text.append(state_text(step, plan), style=STATE_STYLE.get(step.state, "yellow"))
            out.print(text, soft_wrap=True)
    if plan.applied:
        render_outcome_text(plan, out)


def render_outcome_text(plan: Plan, out: Console) -> None:
    out.print()
    for line in outcome_lines(plan):
        out.print(Text(line), soft_wrap=True)


def outcome_lines(plan: Plan) -> list[str]:
    """After --apply: counts, where it stopped, what remains, how to undo what was done."""
    lines: list[str] = []
    counts: dict[str, int] = {}
    for step in plan.steps:
        label = state_text(step, plan).split(":", 1)[0]
        counts[label] = counts.get(label, 0) + 1
    lines.append("Applied: " + ", ".join(f"{n} {label}" for label, n in counts.items()))
    outcome = plan.outcome
    if outcome is not None and outcome.stopped_at is not None:
        lines.append(f"Stopped at step {outcome.stopped_at}: {outcome.reason}")
    remains = [s for s in plan.steps if s.state not in (StepState.DONE, StepState.ALREADY_CLEAR)]
    if remains:
        lines.append("What remains:")
        for step in remains:
            where = f" on {step.node}" if step.node and step.node not in step.title else ""
            lines.append(f"  - step {step.number}: {step.title}{where} ({state_text(step, plan)})")
    if plan.remaining is not None:
        if plan.remaining:
            lines.append("Still reported by a fresh diagnosis:")
            for finding in plan.remaining:
                step = plan.step_for(finding.key)
                by = f" -> step {step.number}" if step else ""
                lines.append(f"  - {finding.key} ({finding.severity.value}){by}")
        else:
            lines.append("A fresh diagnosis reports nothing.")
    done = [s for s in plan.steps if s.state is StepState.DONE and s.undo]
    if done:
        lines.append("To undo what was done (last first):")
        for step in reversed(done):
            lines += [f"  step {step.number}: {u}" for u in step.undo]
    return lines


# -- Markdown -----------------------------------------------------------------------------


def render_markdown(plan: Plan) -> str:
    parts = [f"# {summary(plan)}"]
    for step in plan.steps:
        where = step.node or "cluster-wide"
        parts.append(
            f"## {step.number}. {step.title}\n\n"
            f"**{step.risk.value}** on {code_span(where)}"
            + (f" · state: {code_span(state_text(step, plan))}" if plan.applied else "")
        )
        for label, lines in _parts(step):
            if not lines:
                continue
            if label in ("run", "persist", "verify", "undo", "needs", "by hand"):
                parts.append(f"{label}:\n\n{code_block(lines)}")
            else:
                parts.append("\n".join(f"- {label}: {code_span(ln)}" for ln in lines))
    if plan.applied:
        parts.append("## Outcome\n\n" + code_block(outcome_lines(plan), lang="text"))
    return "\n\n".join(parts) + "\n"


# -- shell script -------------------------------------------------------------------------


def _delimiter(body: str, base: str = "CNIDOCTOR_STEP") -> str:
    lines = set(body.splitlines())
    tag, n = base, 0
    while tag in lines:
        n += 1
        tag = f"{base}_{n}"
    return tag


def _shell_of(spec: str | None) -> str:
    if spec is None:
        return "sh -s"
    return shlex.join(transport_for(spec).shell_argv())


def _comment(lines: Iterable[str], prefix: str = "#    ") -> list[str]:
    out = []
    for line in lines:
        for part in line.splitlines() or [""]:
            out.append(prefix + part)
    return out


def _step_header(step: Step) -> list[str]:
    lines = [f"# -- step {step.number} [{step.risk.value}] {step.title}"]
    lines += _comment([f"fixes: {', '.join(step.fixes)}"] if step.fixes else [])
    lines += _comment([f"why: {step.why}"] if step.why else [])
    lines += _comment([f"note: {n}" for n in step.notes])
    lines += _comment([f"undo: {u}" for u in step.undo])
    return lines


def _node_body(step: Step) -> str:
    """What the node's shell runs for one step: checks, commands, verification."""
    runs = [c.run for c in step.requires] + [a.run for a in step.commands + step.verify]
    body = prelude(runs)
    for check in step.requires:
        message = f"step {step.number} is not possible on {step.node}: {check.reason}"
        body.append(f"if ! {{ {check.run}; }}; then echo {shlex.quote(message)} >&2; exit 0; fi")
    body += [a.run for a in step.commands]
    if step.verify:
        body.append("# verify")
        body += [a.run for a in step.verify]
    return "\n".join(body)


def _heredoc(shell: str, body: str) -> list[str]:
    tag = _delimiter(body)
    return [f"{shell} <<'{tag}'", body, tag]


def _transfer_lines(step: Step) -> list[str]:
    transfer = step.transfer
    assert transfer is not None
    src, dst = _shell_of(transfer.source_spec), _shell_of(step.spec)
    directory, name = transfer.dest_path.rsplit("/", 1)
    temp = f"{directory}/.{name}.cnidoctor-tmp"
    q = shlex.quote
    remote_head = ["set -e", f"base64 -d > {q(temp)} <<'CNIDOCTOR_DATA'"]
    remote_tail = [
        "CNIDOCTOR_DATA",
        f'test "$(sha256sum < {q(temp)} | cut -d" " -f1)" = "$cnd_sum"',
        shlex.join(["chmod", transfer.mode, temp]),
        shlex.join(["mv", "-f", temp, transfer.dest_path]),
    ]
    return [
        f"cnd_src_arch=$(echo 'uname -m' | {src})",
        f"cnd_dst_arch=$(echo 'uname -m' | {dst})",
        '[ "$cnd_src_arch" = "$cnd_dst_arch" ] || { echo '
        + q(f"step {step.number}: {transfer.source_node} and {step.node} differ in architecture")
        + " >&2; exit 1; }",
        "cnd_copy=$(mktemp)",
        f'echo {q(shlex.join(["base64", "--", transfer.source_path]))} | {src} > "$cnd_copy"',
        f"cnd_sum=$(echo {q(shlex.join(['sha256sum', '--', transfer.source_path]))} | {src} "
        "| cut -d' ' -f1)",
        'case "$cnd_sum" in *[!0-9a-f]*|"") echo "no checksum" >&2; exit 1 ;; esac',
        "{ echo \"cnd_sum=$cnd_sum\"; printf '%s\\n' "
        + " ".join(q(line) for line in remote_head)
        + "; cat \"$cnd_copy\"; printf '%s\\n' "
        + " ".join(q(line) for line in remote_tail)
        + f"; }} | {dst}",
        'rm -f "$cnd_copy"',
    ]


def render_script(plan: Plan) -> str:
    name = plan.cluster.name or "the cluster"
    lines = [
        "#!/bin/sh",
        f"# cnidoctor {__version__} fix plan for {name}, as a script.",
        "# Run it where cnidoctor runs: each node is reached the way cnidoctor reaches it.",
        "# It stops at the first failing command (set -e). Disruptive steps run only with",
        "# CNIDOCTOR_ALLOW_DISRUPTIVE=1; manual steps are comments for a human.",
        "set -e",
        'allow_disruptive="${CNIDOCTOR_ALLOW_DISRUPTIVE:-0}"',
    ]
    for node in node_order(plan):
        steps = [s for s in plan.steps if s.node == node]
        spec = steps[0].spec
        lines += ["", f"# ==== {node} ({spec or 'unknown spec'}) ===="]
        for step in steps:
            lines += ["", *_step_header(step)]
            if step.risk is Risk.MANUAL:
                lines += _comment(step.instructions, prefix="#    by hand: ")
                continue
            body: list[str] = []
            if step.transfer is not None:
                body += _transfer_lines(step)
            if step.commands or step.requires or step.verify:
                body += _heredoc(_shell_of(step.spec), _node_body(step))
            if step.risk is Risk.DISRUPTIVE:
                skip = (
                    f"skipped step {step.number} (disruptive: {step.title}): "
                    "set CNIDOCTOR_ALLOW_DISRUPTIVE=1 to run it"
                )
                lines += ['if [ "$allow_disruptive" = 1 ]; then', *body, "else"]
                lines += [f"  echo {shlex.quote(skip)} >&2", "fi"]
            else:
                lines += body
    cluster_wide = [s for s in plan.steps if s.node is None]
    if cluster_wide:
        lines += ["", "# ==== cluster-wide (by hand) ===="]
        for step in cluster_wide:
            lines += ["", *_step_header(step)]
            lines += _comment(step.instructions, prefix="#    by hand: ")
    if not plan.steps:
        lines += ["", "# nothing to fix: the diagnosis found nothing"]
    lines += ["", "echo 'cnidoctor fix script: done' >&2"]
    return "\n".join(lines) + "\n"
