"""A live progress line while nodes are collected, on a terminal only (stderr, transient)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cnidoctor.collect import NodeCollection


@contextmanager
def progress(
    total: int, args: argparse.Namespace
) -> Iterator[Callable[[NodeCollection], None] | None]:
    """Yields the `on_done` callback for diagnose(), or None when nothing should be drawn
    (not a terminal, --quiet, a single node)."""
    if total < 2 or getattr(args, "quiet", False) or not sys.stderr.isatty():
        yield None
        return
    console = Console(stderr=True)
    columns = (
        TextColumn("collecting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("nodes", total=total, last="")

        def on_done(collection: NodeCollection) -> None:
            state = "ok" if collection.collected and not collection.error else "failed"
            bar.update(task, advance=1, last=f"{collection.name}: {state}")

        yield on_done
