"""Progress bars for long work (rich), off when asked or when nobody is watching."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


@contextmanager
def progress_bar(
    total: int, description: str, *, enabled: bool = True
) -> Iterator[Callable[..., None]]:
    """Yield ``update(advance=1, **fields)``; the bar shows on a terminal only (stderr)."""
    show = enabled and sys.stderr.isatty()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=True,
        disable=not show,
    ) as progress:
        task = progress.add_task(description, total=total, status="")

        def update(advance: int = 1, status: str = "") -> None:
            progress.update(task, advance=advance, status=status)

        yield update
