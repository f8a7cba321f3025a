"""MkDocs hook: the CLI reference page (``cli.md``) is rendered at build time from the typer
app itself (``tmc.cli.app``), so every command, option and default on the site is the one
the installed ``tmc`` has."""

from __future__ import annotations

import click
import typer
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

PAGE = "cli.md"
INTRO = """# Command line reference

Generated from the `tmc` command itself when the site is built. Every command also answers
`--help`; every command that prints something takes `--json` (one JSON document on stdout;
progress and logs go to stderr). A refused request exits with status 2 and one line,
`error: ...`, that says what is wrong.
"""


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, PAGE, content=render()))
    return files


def render() -> str:
    from tmc.cli import app

    root = typer.main.get_command(app)
    sections = [INTRO]
    for path, command in _walk(root, ["tmc"]):
        sections.append(_section(path, command))
    return "\n".join(sections)


def _walk(command: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        context = click.Context(command, info_name=path[-1])
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            if sub is not None and not sub.hidden:
                found += _walk(sub, [*path, name])
    return found


def _section(path: list[str], command: click.Command) -> str:
    depth = min(len(path) + 1, 4)
    lines = [f"{'#' * depth} `{' '.join(path)}`", ""]
    context = click.Context(command, info_name=" ".join(path))
    usage = " ".join(command.collect_usage_pieces(context))
    lines += ["```text", f"{' '.join(path)} {usage}".rstrip(), "```", ""]
    if command.help:
        lines += [_plain(command.help), ""]
    if isinstance(command, click.Group):
        subs = [
            (name, command.get_command(context, name)) for name in command.list_commands(context)
        ]
        rows = [
            f"| `{name}` | {_cell(sub.get_short_help_str(limit=120))} |"
            for name, sub in subs
            if sub is not None and not sub.hidden
        ]
        if rows:
            lines += ["| command | what it does |", "|---|---|", *rows, ""]
    params = [p for p in command.params if not getattr(p, "hidden", False)]
    if params:
        lines += ["| argument or option | default | meaning |", "|---|---|---|"]
        lines += [_param_row(p) for p in params]
        lines.append("")
    return "\n".join(lines)


def _param_row(param: click.Parameter) -> str:
    if isinstance(param, click.Option):
        names = ", ".join(f"`{n}`" for n in [*param.opts, *param.secondary_opts])
        meaning = param.help or ""
        default = "required" if param.required else _default(param)
    else:
        names = f"`{(param.human_readable_name or '').upper()}`"
        meaning = getattr(param, "help", None) or ""
        default = "required" if param.required else _default(param)
    choices = getattr(param.type, "choices", None)
    if choices:
        meaning = f"{meaning} (one of: {', '.join(str(c) for c in choices)})".strip()
    return f"| {names} | {default} | {_cell(meaning)} |"


def _default(param: click.Parameter) -> str:
    if getattr(param, "is_flag", False) and not getattr(param, "secondary_opts", None):
        return "off" if not param.default else "on"
    value = param.default
    if value is None or value == "" or callable(value):
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(f"`{v}`" for v in value) if value else ""
    return f"`{getattr(value, 'value', value)}`"


def _plain(text: str) -> str:
    # typer keeps docstring paragraphs; \b is click's "do not rewrap" marker.
    return text.replace("\b\n", "").replace("\b", "").strip()


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")
