"""The run config's keys as command-line options, generated from :class:`FederationConfig`.

Each key's option takes its type, help, bounds and the default it shows from the key's one
declaration, so ``tmc simulate`` can set every key and no option restates a default: an
option left out is not passed on, and the run config's own default applies. Bounds are
checked where they are declared (``FederationConfig`` refuses a bad value, naming the key).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping
from typing import Annotated, Any, Literal, get_args, get_origin

import typer
from annotated_types import Ge, Gt, Le, Lt
from pydantic.fields import FieldInfo

from tmc.common.errors import ConfigError
from tmc.common.federation.config import FederationConfig

ALIASES: Mapping[str, tuple[str, ...]] = {"num-silos": ("--silos",), "architecture": ("--model",)}
"""The options' older names, which keep working."""
PANEL = "Run config (the keys of pyproject's tool.flwr.app.config)"

Command = Callable[..., None]


def run_config_fields() -> dict[str, FieldInfo]:
    """Every run-config key (hyphenated, as in TOML) and its declaration."""
    return {field.alias or name: field for name, field in FederationConfig.model_fields.items()}


def option_names(key: str) -> tuple[str, ...]:
    return (f"--{key}", *ALIASES.get(key, ()))


def _bounds(field: FieldInfo) -> list[str]:
    """The declared range in words: "1 to 10000", ">= 0", "> 0", "< 1"."""
    low = high = ""
    for rule in field.metadata:
        if isinstance(rule, Ge):
            low = f">= {rule.ge}"
        elif isinstance(rule, Gt):
            low = f"> {rule.gt}"
        elif isinstance(rule, Le):
            high = f"<= {rule.le}"
        elif isinstance(rule, Lt):
            high = f"< {rule.lt}"
    if low.startswith(">=") and high.startswith("<="):
        return [f"{low.removeprefix('>= ')} to {high.removeprefix('<= ')}"]
    return [bound for bound in (low, high) if bound]


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if value == "" else str(value)


def _help(field: FieldInfo, default: str | None, help_text: str | None) -> str:
    # Parentheses, not brackets: typer reads brackets in help as rich markup.
    notes = [f"default: {_shown(field.default) if default is None else default}"]
    choices = get_args(field.annotation) if get_origin(field.annotation) is Literal else ()
    if field.annotation is bool:
        choices = ("true", "false")
    if choices:
        notes.insert(0, f"one of {' | '.join(choices)}")
    if help_text is None:  # a reworded help states the command's own range
        notes += _bounds(field)
    return f"{help_text or field.description or ''} ({'; '.join(notes)})"


def _parameter(
    key: str, field: FieldInfo, *, default: str | None, help_text: str | None
) -> inspect.Parameter:
    # A switch takes true or false, as in TOML: a --key/--no-key pair of flags would
    # double the width of the options column.
    switch = field.annotation is bool
    annotation: Any = Literal["true", "false"] if switch else field.annotation
    option = typer.Option(
        *option_names(key),
        help=_help(field, default, help_text),
        metavar="BOOL" if switch else "NAME" if get_origin(annotation) is Literal else None,
        show_default=False,
        rich_help_panel=PANEL,
    )
    return inspect.Parameter(
        key.replace("-", "_"),
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[annotation | None, option],
    )


def _value(field: FieldInfo, given: object) -> object:
    return given == "true" if field.annotation is bool else given


def with_run_config_options(
    keys: Collection[str] | None = None,
    *,
    exclude: Collection[str] = (),
    defaults: Mapping[str, str] | None = None,
    helps: Mapping[str, str] | None = None,
) -> Callable[[Command], Command]:
    """Give a command one option per run-config key in ``keys`` (default: every key but
    those in ``exclude``, which the command declares itself). The command takes
    ``run_config``, the keys given on the command line and their values (the others are
    absent), besides its own options. ``defaults`` says in words what a key defaults to
    where the command derives it; ``helps`` rewords a key's help for the command, range
    included (the command narrows the range and checks it itself)."""
    fields = run_config_fields()
    chosen = [key for key in (fields if keys is None else keys) if key not in exclude]
    unknown = sorted((set(chosen) | set(exclude)) - set(fields))
    if unknown:
        raise ConfigError(f"not run-config keys: {', '.join(unknown)}")
    defaults = defaults or {}
    helps = helps or {}
    generated = {key.replace("-", "_"): key for key in chosen}  # option parameter -> run-config key

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "run_config"]
        clash = sorted({p.name for p in own} & set(generated))
        if clash:
            raise ConfigError(f"{command.__name__} declares run-config options itself: {clash}")
        params = own + [
            _parameter(key, fields[key], default=defaults.get(key), help_text=helps.get(key))
            for key in chosen
        ]

        def run(**values: Any) -> None:
            given = {
                generated[name]: _value(fields[generated[name]], value)
                for name, value in values.items()
                if name in generated and value is not None
            }
            rest = {name: value for name, value in values.items() if name not in generated}
            command(run_config=given, **rest)

        run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        run.__doc__ = command.__doc__
        run.__name__ = command.__name__
        run.__qualname__ = command.__qualname__
        run.__module__ = command.__module__
        return run

    return decorate
