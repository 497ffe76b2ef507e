"""Renderers of a finished Report for people: terminal text, Markdown, the rule registry.

JSON needs no renderer (`Report.to_json_dict`); these never change what was found.
"""

from __future__ import annotations

from cnidoctor.reports.markdown import render_markdown
from cnidoctor.reports.rules_table import render_rules, rules_markdown
from cnidoctor.reports.text import render_text, verdict

__all__ = ["render_markdown", "render_rules", "render_text", "rules_markdown", "verdict"]
