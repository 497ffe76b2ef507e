"""Match a message or a whole log against the signature table.

Speed on big logs comes from the anchors: each signature names a lower-case literal that
every match contains, so the text is scanned with `str.find` (C speed) and the regex runs
only on the lines that contain the anchor, once per distinct line. Patterns are bounded
and have no nested quantifiers (see table.py), so a hostile line cannot make one slow.

Scoring is deterministic: a signature's confidence, raised slightly by how specific its
pattern is (literal characters) and how much of the line the match covers. One match per
id is kept (the best; the earliest on ties), best first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from re import _parser as sre_parse  # type: ignore[attr-defined]

from cnidoctor.signatures.table import SIGNATURES, Signature

#: the quoted part of a match is cut to this many characters
MAX_MATCHED = 300
#: literal characters at which a pattern counts as fully specific
FULLY_SPECIFIC = 60
FLAGS = re.IGNORECASE | re.ASCII
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


@dataclass(frozen=True)
class Match:
    """A failure mode recognised in the text: catalog id, score in 0..1, the text that matched."""

    id: str
    score: float
    matched: str


@dataclass(frozen=True)
class _Compiled:
    signature: Signature
    regex: re.Pattern[str]
    unless: re.Pattern[str] | None
    specificity: float


def literal_length(pattern: str) -> int:
    """Characters a match of `pattern` must contain literally (the shortest branch counts)."""
    return _literal_length(sre_parse.parse(pattern, FLAGS))


def _literal_length(parsed: object) -> int:
    total = 0
    for op, arg in parsed:  # type: ignore[attr-defined]
        name = str(op)
        if name == "LITERAL":
            total += 1
        elif name == "SUBPATTERN":
            total += _literal_length(arg[-1])
        elif name == "BRANCH":
            total += min(_literal_length(branch) for branch in arg[1])
        elif name in ("MAX_REPEAT", "MIN_REPEAT"):
            low, _high, item = arg
            total += low * _literal_length(item)
    return total


@cache
def compiled() -> tuple[_Compiled, ...]:
    """The table, compiled once per process."""
    out = []
    for sig in SIGNATURES:
        specificity = min(1.0, literal_length(sig.pattern) / FULLY_SPECIFIC)
        out.append(
            _Compiled(
                signature=sig,
                regex=re.compile(sig.pattern, FLAGS),
                unless=re.compile(sig.unless, FLAGS) if sig.unless else None,
                specificity=specificity,
            )
        )
    return tuple(out)


def _lowered(text: str) -> str:
    """`text` lower-cased with every index unchanged (so anchor hits map back to `text`)."""
    if text.isascii():
        return text.lower()
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    # some characters lower-case to several (İ -> i̇): lower ASCII only, anchors are ASCII
    return text.translate(_ASCII_LOWER)


def _lines_with(text: str, lowered: str, anchor: str) -> Iterator[tuple[int, str]]:
    """(offset, line) of every distinct line of `text` that contains `anchor`."""
    seen: set[str] = set()
    start = 0
    while True:
        hit = lowered.find(anchor, start)
        if hit < 0:
            return
        begin = text.rfind("\n", 0, hit) + 1
        end = text.find("\n", hit)
        if end < 0:
            end = len(text)
        start = end + 1
        line = text[begin:end]
        if line not in seen:
            seen.add(line)
            yield begin, line


def score(sig: _Compiled, matched: str, line: str) -> float:
    """confidence x (0.8 + 0.1 specificity + 0.1 coverage of the line), in 0..1."""
    coverage = min(1.0, len(matched) / max(1, len(line.strip())))
    value = sig.signature.confidence * (0.8 + 0.1 * sig.specificity + 0.1 * coverage)
    return round(min(1.0, max(0.0, value)), 3)


def explain(text: str) -> list[Match]:
    """The failure modes behind a message or a log, best first; [] when nothing is known."""
    lowered = _lowered(text)
    best: dict[str, tuple[float, int, str]] = {}
    for sig in compiled():
        for offset, line in _lines_with(text, lowered, sig.signature.anchor):
            found = sig.regex.search(line)
            if found is None or (sig.unless is not None and sig.unless.search(line)):
                continue
            matched = found.group(0)
            value = score(sig, matched, line)
            position = offset + found.start()
            current = best.get(sig.signature.id)
            if current is None or (value, -position) > (current[0], -current[1]):
                best[sig.signature.id] = (value, position, matched[:MAX_MATCHED])
    ranked = sorted(best.items(), key=lambda item: (-item[1][0], item[1][1], item[0]))
    return [Match(id=sid, score=value, matched=matched) for sid, (value, _, matched) in ranked]
