"""A collector = the argv commands that gather one fact + a pure parser of their output.

Collectors never do I/O: transports run the commands (all collectors of a node in
one batch), and `Collector.judge` turns the raw results into a `Fact`. The same code
therefore serves live nodes, SSH, namespaces and replayed snapshots.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from cnidoctor.facts.base import Fact, FactStatus
from cnidoctor.transports.base import Command, CommandResult


class FactAbsent(Exception):
    """Raised by a parser when what it looks for is not there (a fact, not a failure)."""


class FactParseError(Exception):
    """Raised by a parser on output it cannot understand."""


class Collector(ABC):
    """Subclass per fact: set `name`, `commands`, `description` and implement `parse`."""

    name: ClassVar[str]
    description: ClassVar[str]
    commands: ClassVar[tuple[Command, ...]]
    #: indices of commands whose failure is tolerated (parse() inspects them itself)
    optional_commands: ClassVar[frozenset[int]] = frozenset()

    @classmethod
    @abstractmethod
    def parse(cls, results: Sequence[CommandResult]) -> Any:
        """Pure: raw results -> fact model. Raise FactAbsent or FactParseError."""

    @classmethod
    def judge(cls, results: Sequence[CommandResult]) -> Fact:
        sources = [r.display for r in results]
        for index, result in enumerate(results):
            if index in cls.optional_commands:
                continue
            problem = describe_failure(result)
            if problem is not None:
                status, reason = problem
                return Fact(name=cls.name, status=status, reason=reason, sources=sources)
        what = f"output of {sources[0] if sources else cls.name}"
        return cls.parsed(results, sources, what)

    @classmethod
    def parsed(cls, results: Sequence[CommandResult], sources: list[str], what: str) -> Fact:
        """The Fact `parse` makes of results that ran: ok, absent (FactAbsent), or an error
        saying "unparseable <what>: why"."""
        try:
            value = cls.parse(results)
        except FactAbsent as exc:
            return Fact(name=cls.name, status=FactStatus.ABSENT, reason=str(exc), sources=sources)
        except (FactParseError, ValueError, KeyError, TypeError, IndexError) as exc:
            reason = f"unparseable {what}: {_one_line(exc)}"
            return Fact(name=cls.name, status=FactStatus.ERROR, reason=reason, sources=sources)
        return Fact(name=cls.name, status=FactStatus.OK, value=value, sources=sources)


def describe_failure(result: CommandResult) -> tuple[FactStatus, str] | None:
    """The standard reading of a failed command, or None when it succeeded."""
    if result.not_run is not None:
        return FactStatus.ERROR, f"{result.display}: not run: {result.not_run}"
    if result.timed_out:
        return FactStatus.ERROR, f"{result.display}: timed out"
    if result.program_missing:
        return FactStatus.ABSENT, f"{result.argv[0]} is not installed"
    if result.rc != 0:
        detail = _one_line(result.stderr) or f"exit status {result.rc}"
        return FactStatus.ERROR, f"{result.display}: {detail}"
    return None


def failure_reason(result: CommandResult) -> str:
    """Why an optional command failed, in a few words: for parsers that report it
    themselves (the command's display is theirs to add)."""
    if result.timed_out:
        return "timed out"
    if result.not_run:
        return f"not run: {result.not_run}"
    first = result.stderr.strip().splitlines()
    return first[0][:200] if first else f"exit status {result.rc}"


def is_missing_file(result: CommandResult) -> bool:
    return result.rc != 0 and "No such file or directory" in result.stderr


def _one_line(value: object) -> str:
    text = str(value).strip()
    first = text.splitlines()[0] if text else ""
    return first[:200]
