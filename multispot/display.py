"""Live progress for people: events as they happen, and a status line with checkpoint progress."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from rich.box import Box
from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from multispot.controller import STALE_AFTER
from multispot.status import JobState
from multispot.units import format_duration

if TYPE_CHECKING:
    from multispot.api import Run

_STYLE = {
    "preempted": "bold yellow",
    "notice": "yellow",
    "resumed": "green",
    "fallback": "magenta",
    "finished": "bold",
    "failed": "bold red",
    "succeeded": "bold green",
}


def _event_line(kind: str, when: float, message: str) -> Text:
    stamp = datetime.fromtimestamp(when).strftime("%H:%M:%S")
    return Text.assemble((f"{stamp} ", "dim"), (f"{kind:<10} ", _STYLE.get(kind, "cyan")), message)


def _status_line(run: Run) -> Table:
    record, attempts = run.record, run.attempts
    current = attempts[-1] if attempts else None
    progress = run.progress()
    grid = Table.grid(padding=(0, 1))
    parts = [
        Text(record.id, style="bold"),
        Text(record.state.value, style="green" if record.state is JobState.RUNNING else "yellow"),
        Text(f"attempt {current.n} ({current.placement.market})" if current else "no attempt yet"),
        Text(format_duration(time.time() - record.created), style="dim"),
    ]
    if progress:
        step, total = progress
        parts.append(Text(f"step {step}" + (f"/{total}" if total else "")))
        if total:
            parts.append(ProgressBar(total=total, completed=step, width=24))  # type: ignore[arg-type]
    grid.add_row(*parts)
    return grid


def follow(run: Run, timeout: float | None = None, console: Console | None = None) -> JobState:
    """Print the job's events until it ends; a live status line when the output is a terminal."""
    console = console or Console()
    deadline = None if timeout is None else time.time() + timeout
    seen, last_check = 0, 0.0
    live = (
        Live(_status_line(run), console=console, refresh_per_second=4, transient=True)
        if console.is_terminal
        else None
    )
    if live:
        live.start()
    try:
        while True:
            for event_id, event in run.events(seen):
                seen = event_id
                console.print(_event_line(event.kind, event.time, event.message))
            state = run.status
            if live:
                live.update(_status_line(run))
            if state.job_terminal:
                for event_id, event in run.events(seen):
                    seen = event_id
                    console.print(_event_line(event.kind, event.time, event.message))
                return state
            if deadline is not None and time.time() > deadline:
                raise TimeoutError(f"{run.id} is still {state.value} after {timeout:g}s")
            if time.time() - last_check > STALE_AFTER / 2:
                run.ensure_driven()
                last_check = time.time()
            time.sleep(0.25)
    finally:
        if live:
            live.stop()


# Rich's SIMPLE_HEAD with a rule for ``end_section`` too: no edges, so the columns get the width.
_BOX = Box("    \n    \n ── \n    \n ── \n    \n    \n    \n", ascii=False)


def fit_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    narrow: Sequence[str] | None = None,
    wide: bool = False,
    fold: Sequence[str] = (),
    title: str | None = None,
    sections: Sequence[int] = (),
) -> Table:
    """A table for people that reads at 80 columns: without ``wide``, only the ``narrow`` columns
    (all when None), never truncated except the ``fold`` ones (messages, reasons), which wrap.
    ``sections``: row indexes after which a line is drawn (a total row below)."""
    keep = [i for i, h in enumerate(headers) if wide or narrow is None or h in narrow]
    table = Table(
        title=title,
        box=_BOX,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        title_justify="left",
    )
    for i in keep:
        folds = headers[i] in fold
        table.add_column(
            headers[i],
            no_wrap=not folds,
            overflow="fold" if folds else "ellipsis",
            min_width=12 if folds else None,
        )
    for n, row in enumerate(rows):
        table.add_row(*(row[i] for i in keep), end_section=n in sections)
    return table


def print_table(console: Console, table: Table, wide: bool = False) -> None:
    """Print ``table``; with ``wide``, at its natural width even past the terminal's."""
    if wide:
        from rich.measure import Measurement

        width = Measurement.get(console, console.options.update_width(10_000), table).maximum
        if width > console.width:
            console = Console(width=width, highlight=False, file=console.file)
    console.print(table)
