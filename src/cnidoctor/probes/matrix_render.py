"""The matrix on a terminal: an N x N grid, one symbol per port group in each cell, a
legend, then the failed pairs one per line. Findings follow, as `diagnose` prints them."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cnidoctor.probes.matrix_model import GROUPS, MatrixResult, Probe, Status

#: status -> (symbol, style); ASCII so a pasted grid survives any terminal or ticket
SYMBOLS: dict[str, tuple[str, str]] = {
    "open": ("o", "green"),
    "refused": ("r", "yellow"),
    "timeout": ("x", "bold red"),
    "unreachable": ("u", "bold red"),
    "loop": ("L", "bold magenta"),
    "filtered": ("f", "bold red"),
    "unknown": ("?", "dim"),
    "error": ("!", "bold red"),
    "n/a": ("-", "dim"),
}
_WORST = ["loop", "filtered", "timeout", "unreachable", "error", "refused", "unknown", "open"]
MAX_LINES = 40


def cell_state(probes: list[Probe], group: str) -> str:
    """The worst status of a cell's probes in one port group ("n/a" when none was sent)."""
    states = ["loop" if p.looped else p.status.value for p in probes if p.group == group]
    if not states:
        return "n/a"
    return min(states, key=_WORST.index)


def render_matrix(result: MatrixResult, console: Console, verbose: bool = False) -> None:
    """The grid, its legend and key, and the failures."""
    names = result.nodes
    pairs = len(names) * (len(names) - 1)
    console.print(
        Text(
            f"Connectivity matrix: {len(names)} nodes, {pairs} pairs, "
            f"{len(result.probes)} probes in {result.duration_s:.2f}s "
            f"(timeout {result.timeout:g}s)",
            style="bold",
        ),
        soft_wrap=True,
    )
    table = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1))
    table.add_column("from \\ to", no_wrap=True)
    for index in range(1, len(names) + 1):
        table.add_column(str(index), justify="center", no_wrap=True)
    groups = [g for g, _ in GROUPS if any(p.group == g for p in result.probes)]
    for row, source in enumerate(names, start=1):
        address = result.addresses.get(source)
        label = Text(f"{row:>2} {source}" + (f" ({address})" if address else ""))
        run = result.run(source)
        if run is not None and not run.ran:
            label.append(" not probed", style="dim")
        cells: list[Text] = [label]
        for target in names:
            if target == source:
                cells.append(Text(" " * len(groups)))
                continue
            probes = result.cell(source, target)
            cell = Text()
            for group in groups:
                symbol, style = SYMBOLS[cell_state(probes, group)]
                cell.append(symbol, style=style)
            cells.append(cell)
        table.add_row(*cells)
    console.print(table)
    legend = [label for g, label in GROUPS if g in groups]
    console.print(Text("each cell: " + ", then ".join(legend), style="dim"), soft_wrap=True)
    key = Text("  ".join(f"{s} {w}" for w, (s, _) in SYMBOLS.items()), style="dim")
    console.print(key, soft_wrap=True)
    _print_failures(result, console, verbose)
    console.print()


def _print_failures(result: MatrixResult, console: Console, verbose: bool) -> None:
    failed = [p for p in result.probes if not p.status.ok and p.status is not Status.UNKNOWN]
    unknown = [p for p in result.probes if p.status is Status.UNKNOWN]
    if failed:
        console.print()
        console.print(Text(f"Failed ({len(failed)}):", style="bold"))
        shown = failed if verbose else failed[:MAX_LINES]
        for probe in shown:
            line = Text("  ")
            symbol, style = SYMBOLS["loop" if probe.looped else probe.status.value]
            line.append(symbol, style=style)
            line.append(
                f" {probe.source} -> {probe.target} ({probe.address}) {probe.label}: "
                f"{probe.status.value}"
            )
            if probe.detail:
                line.append(f" ({probe.detail})")
            for message in probe.icmp:
                line.append(f"; {message.describe()}")
            if any(h != "*" for h in probe.path):
                line.append(f"; path {' -> '.join(probe.path)}")
            console.print(line, soft_wrap=True)
        if len(failed) > len(shown):
            console.print(Text(f"  ... {len(failed) - len(shown)} more (-v shows all)"))
    if unknown:
        reasons = sorted({p.detail for p in unknown})
        console.print()
        console.print(Text(f"Not probed ({len(unknown)}):", style="bold"))
        for reason in reasons if verbose else reasons[:5]:
            console.print(Text(f"  ? {reason}"), soft_wrap=True)
    notes = [(r.name, n) for r in result.runs for n in r.notes]
    if notes and verbose:
        console.print()
        for name, note in notes:
            console.print(Text(f"  {name}: {note}", style="dim"), soft_wrap=True)
