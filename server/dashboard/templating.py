"""The pages' HTML: Jinja2 templates shipped in ``templates/`` (autoescaped), rendered on
the server; the pages need no script and load nothing from outside the dashboard."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

HERE = Path(__file__).resolve().parent
STYLESHEET = HERE / "static" / "dashboard.css"


def _when(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _short(value: str | None, size: int = 12) -> str:
    return "—" if not value else (value if len(value) <= size else value[:size] + "…")


def _compact(value: object, size: int = 240) -> str:
    text = json.dumps(value, sort_keys=True, separators=(", ", ": "), default=str)
    return text if len(text) <= size else text[:size] + "…"


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,  # a missing value is a bug, not an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["short"] = _short
    env.filters["compact"] = _compact
    return env


def render(env: Environment, name: str, **context: Any) -> str:
    return env.get_template(name).render(**context)
