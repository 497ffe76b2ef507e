"""The rule registry for people: `cnidoctor rules` (a table) and the generated docs (Markdown).

Both are read straight off the Rule classes, so the docs cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cnidoctor.reports.markdown import cell, code_block, code_span
from cnidoctor.reports.text import SEVERITY_COLOUR, plural
from cnidoctor.rules.base import Rule


def needs_names(rule: type[Rule]) -> list[str]:
    """The fact names a rule reads (its collectors' names), in declaration order."""
    names = [collector.name for collector in getattr(rule, "needs", ())]
    return names if names or rule.scope != "cluster" else ["kubernetes API"]


def render_rules(rules: Sequence[type[Rule]], console: Console) -> None:
    """A table of every rule: id, severity, title, the facts it needs."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("id", no_wrap=True, style="bold")
    table.add_column("severity", no_wrap=True)
    table.add_column("title", ratio=3)
    table.add_column("needs", ratio=1)
    for rule in rules:
        table.add_row(
            Text(rule.id),
            Text(rule.severity.value, style=SEVERITY_COLOUR[rule.severity]),
            Text(rule.title),
            Text(", ".join(needs_names(rule))),
        )
    console.print(table)
    console.print(Text(plural(len(rules), "rule"), style="dim"))


def rules_markdown(rules: Sequence[type[Rule]]) -> str:
    """Reference docs for every rule: an index table, then a section per rule."""
    out = [
        "# Rules",
        "",
        "Generated from the rule registry (`cnidoctor rules`); do not edit by hand.",
        "",
        "| id | severity | title | needs |",
        "| --- | --- | --- | --- |",
    ]
    for rule in rules:
        needs = ", ".join(code_span(n) for n in needs_names(rule))
        out.append(
            f"| [{code_span(rule.id)}](#{_anchor(rule.id)}) | {rule.severity.value} "
            f"| {cell(rule.title)} | {needs} |"
        )
    out.append("")
    for rule in rules:
        out += [f"## {rule.id}", "", f"**{rule.severity.value}**: {cell(rule.title)}", ""]
        if rule.explanation:
            out += [rule.explanation.strip(), ""]
        names = needs_names(rule)
        if names:
            out += [f"Needs: {', '.join(code_span(n) for n in names)}", ""]
        if rule.causes:
            out += [f"Causes: {', '.join(code_span(c) for c in rule.causes)}", ""]
        if rule.fix:
            out += ["Default fix:", "", code_block(list(rule.fix)), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _anchor(rule_id: str) -> str:
    """The anchor GitHub gives the heading `## RULE.ID` (dots dropped, lower case)."""
    return "".join(ch for ch in rule_id.lower() if ch.isalnum() or ch in "-_ ").replace(" ", "-")
