"""`cnidoctor explain`: what a pasted error line or log means, and what to do about it.

The CLI edge calls `read_explain_input` (message, file or stdin) and `run_explain`. Text
names each recognised failure mode with its title, explanation and fix (from the rule
registry when a rule reports that id, else from the catalog) and quotes what matched;
JSON is exactly the contract's `{"matches": [{"id", "score", "matched"}]}`. Everything
taken from the input is printed as rich `Text`, never as markup.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

from cnidoctor.catalog import CATALOG
from cnidoctor.errors import UsageError
from cnidoctor.models import Severity
from cnidoctor.reports.markdown import code_block, code_span
from cnidoctor.reports.text import INDENT, SEVERITY_STYLE, plural
from cnidoctor.rules import all_rules
from cnidoctor.rules.base import Rule
from cnidoctor.signatures import Match, explain

UNKNOWN = "unknown: no known failure mode matches this message"
WRAP = 88


@dataclass(frozen=True)
class Description:
    """The people-facing text of one failure mode."""

    id: str
    title: str
    explanation: str
    fix: tuple[str, ...]
    severity: Severity | None = None


def describe(failure_id: str, rules: Sequence[type[Rule]] | None = None) -> Description:
    """A failure mode's title, explanation and fix: its rule's when there is one, else the
    catalog's (ids without a rule yet)."""
    entry = CATALOG.get(failure_id)
    for rule in all_rules() if rules is None else rules:
        if rule.id == failure_id:
            # a rule whose fix depends on the occurrence has no default: the catalog's is general
            fix = tuple(rule.fix) or (entry.fix if entry is not None else ())
            return Description(rule.id, rule.title, rule.explanation, fix, rule.severity)
    if entry is not None:
        return Description(entry.id, entry.title, entry.explanation, entry.fix)
    return Description(failure_id, failure_id, "", ())


def explain_json(matches: Sequence[Match]) -> dict[str, Any]:
    """The contract's JSON document."""
    return {"matches": [{"id": m.id, "score": m.score, "matched": m.matched} for m in matches]}


def render_explain(matches: Sequence[Match], console: Console) -> None:
    """Each recognised failure mode, best first; or an honest 'unknown'."""
    if not matches:
        console.print(Text(UNKNOWN, style="bold"), soft_wrap=True)
        return
    console.print(
        Text(f"Recognised {plural(len(matches), 'failure mode')} (best first)", style="bold"),
        soft_wrap=True,
    )
    rules = all_rules()
    pad = " " * INDENT
    for match in matches:
        info = describe(match.id, rules)
        console.print()
        head = Text()
        if info.severity is not None:
            head.append(f" {info.severity.value} ", style=SEVERITY_STYLE[info.severity])
            head.append(" ")
        head.append(match.id, style="bold")
        head.append(f"  score {match.score:.2f}", style="dim")
        console.print(head, soft_wrap=True)
        console.print(Text(pad + info.title), soft_wrap=True)
        console.print(Text(f"{pad}matched: ", style="dim") + Text(match.matched), soft_wrap=True)
        if info.explanation:
            for line in textwrap.wrap(" ".join(info.explanation.split()), WRAP):
                console.print(Text(pad + line), soft_wrap=True)
        if info.fix:
            console.print(Text(f"{pad}fix:", style="bold"))
            for step in info.fix:
                console.print(Text(pad * 2 + step), soft_wrap=True)


def explain_markdown(matches: Sequence[Match]) -> str:
    """The same content as the text output, as Markdown (ends with a newline)."""
    if not matches:
        return f"**{UNKNOWN}**\n"
    rules = all_rules()
    out = [f"## cnidoctor explain: {plural(len(matches), 'failure mode')}", ""]
    for match in matches:
        info = describe(match.id, rules)
        severity = f" ({info.severity.value})" if info.severity is not None else ""
        out += [f"### {code_span(match.id)}{severity}: {info.title}", ""]
        out += [f"Matched (score {match.score:.2f}): {code_span(match.matched)}", ""]
        if info.explanation:
            out += [" ".join(info.explanation.split()), ""]
        if info.fix:
            out += ["Fix:", "", code_block(list(info.fix)), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def run_explain(text: str, fmt: str, console: Console, fail_on: str = "critical") -> int:
    """Explain `text` in `fmt` (text, json, markdown).

    The exit status follows the contract like every command: 1 when a recognised failure
    mode is at or above `fail_on` (its rule's severity; warning for ids without a rule),
    else 0, so `explain` in a script fails on what `diagnose` would fail on.
    """
    matches = explain(text)
    if fmt == "json":
        console.out(json.dumps(explain_json(matches), indent=2), highlight=False)
    elif fmt == "markdown":
        console.out(explain_markdown(matches), highlight=False, end="")
    else:
        render_explain(matches, console)
    if fail_on == "never":
        return 0
    threshold = Severity(fail_on)
    severities = [describe(m.id).severity or Severity.WARNING for m in matches]
    return 1 if any(s.at_least(threshold) for s in severities) else 0


def read_explain_input(message: str | None, file: str | None, stdin: TextIO | None = None) -> str:
    """The text to explain: the MESSAGE argument, or the file LOG (`-` = standard input)."""
    if message is not None and file is not None:
        raise UsageError("explain takes a MESSAGE or --file LOG, not both")
    if message is not None:
        return message
    if file is None:
        raise UsageError("explain needs a MESSAGE or --file LOG (use - for standard input)")
    if file == "-":
        return (stdin or sys.stdin).read()
    try:
        raw = Path(file).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"cannot read {file}: no such file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {file}: {exc.strerror or exc}") from None
    # logs may hold stray binary or mis-encoded bytes; they must not stop the explanation
    return raw.decode("utf-8", errors="replace")
