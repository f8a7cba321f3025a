"""How the CLI talks: rich tables for people, ``--json`` for scripts, errors as one line."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import typer
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.table import Table

from tmc.common.errors import TMCError

console = Console(stderr=False)
err_console = Console(stderr=True)

EXIT_USAGE = 2
"""Exit status of a refused request (bad input, failed check): scripts can tell it apart."""


def emit_json(payload: Any) -> None:
    """One JSON document on stdout, nothing else (progress and logs go to stderr)."""
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A table that stays readable at 80 columns: rules under the header only (no vertical
    borders), and a column whose every value is one short word (ids, versions, numbers,
    names, statuses) never wraps, so that only the columns of prose give way."""
    cells = [[_cell(v) for v in row] for row in rows]
    result = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for index, column in enumerate(columns):
        values = [row[index] for row in cells if index < len(row)]
        whole = all(" " not in v and len(v) <= _WHOLE_WIDTH for v in values)
        if whole:
            width = max([len(column.split(" ")[0]), *(len(v) for v in values)])
            result.add_column(column, no_wrap=True, min_width=width)
        else:
            # Prose wraps between words; its longest word (up to a limit) stays whole, and
            # the column never collapses to nothing beside the one-word ones.
            words = [len(w) for v in values for w in v.split()] or [0]
            result.add_column(column, overflow="fold", min_width=min(max(words), _WORD_WIDTH))
    for row in cells:
        result.add_row(*row)
    return result


# Longer one-word values (a full sha256, a path) may fold rather than push every other
# column off an 80-column screen.
_WHOLE_WIDTH = 24
_WORD_WIDTH = 20
_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})(:\d{2}(\.\d+)?)?(Z|[+-]00:00)?$")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, datetime):
        value = value.isoformat()
    text = "" if value is None else str(value)
    # Times to the minute, as date and time: two short words that wrap between them.
    found = _TIMESTAMP.match(text)
    return f"{found.group(1)} {found.group(2)}" if found else text


def one_line(message: str) -> str:
    """A message on one line: scripts and log collectors read errors line by line."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def error_message(exc: BaseException) -> str:
    """What went wrong, on one line; pydantic's errors as ``field: problem; ...``."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            (".".join(str(p) for p in e["loc"]) + ": " if e["loc"] else "")
            + str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors()
        )
    return one_line(str(exc))


def report_error(kind: str, message: str, *, as_json: bool) -> None:
    """The CLI's one way of saying a request was refused: one unwrapped line on stderr, or a
    JSON error object on stdout with ``--json``."""
    if as_json:
        emit_json({"error": kind, "message": message})
    else:
        sys.stderr.write(f"error: {message}\n")
        sys.stderr.flush()


@contextmanager
def handle_errors(*, as_json: bool) -> Iterator[None]:
    """Turn project errors into a clear message and exit status 2 (no traceback)."""
    try:
        yield
    except (TMCError, ValidationError) as exc:
        report_error(type(exc).__name__, error_message(exc), as_json=as_json)
        raise typer.Exit(EXIT_USAGE) from exc
    except typer.BadParameter as exc:
        report_error("UsageError", one_line(exc.format_message()), as_json=as_json)
        raise typer.Exit(EXIT_USAGE) from exc


def run_command(as_json: bool, body: Callable[[], None]) -> None:
    with handle_errors(as_json=as_json):
        body()
