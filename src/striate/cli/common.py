"""What every `striate` command shares: consoles, common options, JSON output, errors as one line.

Command modules import from here and from the core, never from ``app`` or from each other.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any, cast

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup, TyperOption

from striate.errors import ConfigError, StriateError

STORE_OPTION = typer.Option(None, "--store", help="store folder (default ./striate-runs or $STRIATE_STORE)")
JSON_OPTION = typer.Option(False, "--json", help="machine-readable output")


class _StreamConsole:
    """A rich Console for whatever sys.stdout (or sys.stderr) is at the moment it prints.

    A Console settles colour and width when it is made; one made at import would keep the answers
    for the stream of that moment, after a test runner, a console capture or a pipe replaced it.
    """

    def __init__(self, stderr: bool = False) -> None:
        self._stderr = stderr
        self._made: tuple[Any, Console] | None = None

    def _current(self) -> Console:
        stream = sys.stderr if self._stderr else sys.stdout
        made = self._made
        if made is None or made[0] is not stream:
            made = self._made = (stream, Console(file=stream))
        return made[1]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._current(), name)


console = cast(Console, _StreamConsole())
err_console = cast(Console, _StreamConsole(stderr=True))


def strict_json(value: Any) -> Any:
    """``value`` with NaN and infinities as null: JSON has no such numbers, and parsers reject them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def print_json(value: Any) -> None:
    """Machine-readable output: plain, standard JSON on stdout (a diverged loss is null, not NaN)."""
    sys.stdout.write(json.dumps(strict_json(value), indent=2, default=str, allow_nan=False) + "\n")


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """``"3x224x224"`` -> (3, 224, 224); a ConfigError naming the expected form otherwise."""
    parts = re.split(r"[x×,]", text.strip().lower())
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"cannot read input shape {text!r}", "write CxHxW, e.g. --input 1x32x32 or 3x224x224")
    c, h, w = (int(p) for p in parts)
    return c, h, w


def error_line(exc: BaseException) -> int | None:
    """Print a striate or database error as one red line and return its exit code; None for other errors."""
    if isinstance(exc, StriateError):
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return exc.exit_code
    # Only a process that imported SQLAlchemy can raise its errors; `--help` need not import it.
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(exc, sa_exc.SQLAlchemyError):
        # A database problem outside the cases the store checks for: still one line, not a traceback.
        problem = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        err_console.print(f"[bold red]error:[/] the store database failed: {escape(problem)} — fix: check --store, "
                          "its disk space and permissions", highlight=False, soft_wrap=True)
        return 3
    return None


def _flag_type(self: TyperOption, ctx: Any, _typed: Any = TyperOption.display_type_rich) -> str | None:
    """Typer's help shows every option's type, ``<bool>`` after flags such as --json and --help too,
    which suggests they take a value; a flag (``--json``, ``--progress/--no-progress``) shows none."""
    if self.is_flag and not self.count:
        return None
    return cast("str | None", _typed(self, ctx))


TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]


class _PlainValues:
    """Typer (0.2x with its own Click) converts every parameter value through a pydantic TypeAdapter,
    built on first use: importing pydantic and building the adapters was a fifth of a read command's
    start-up (issue 11, item 1). Values that adapter would return unchanged take this shortcut:
    a missing value (None, or () for a parameter taking several), a ``str`` for a ``str`` parameter,
    strings for a ``list[str]`` one (as a list), an ``int`` or ``float`` for an unconstrained one of
    that type (its default). Everything else
    (``--limit 5`` given as text, paths, choices, parsers, ranges) goes through Typer's adapter as before.
    """

    def __init__(self, descriptor: Any, build: Any) -> None:
        self._descriptor = descriptor
        self._build = build
        self._built: Any = None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        many = param.multiple or param.nargs == -1
        if value is None:
            return () if many else None
        info, annotation = self._descriptor.parameter_info, self._descriptor.annotation
        if info.parser is None:
            if (not many and annotation in (str, int, float) and type(value) is annotation
                    and (annotation is str or (info.min is None and info.max is None and not info.clamp))):
                return value
            if (many and annotation == list[str] and isinstance(value, (list, tuple))
                    and all(type(v) is str for v in value)):
                return list(value)
        if self._built is None:
            self._built = self._build(self._descriptor)
        return self._built.coerce(value, param=param, ctx=ctx)


def _get_runtime_param(self: Any) -> Any:
    if self._runtime_param is None:
        self._runtime_param = _PlainValues(self.type_descriptor, _BUILD_RUNTIME_PARAM)
    return self._runtime_param


_TYPER_PARAMETER: Any = getattr(typer.core, "_TyperParameter", None)
_BUILD_RUNTIME_PARAM: Any = getattr(typer.core, "build_runtime_param", None)
if hasattr(_TYPER_PARAMETER, "get_runtime_param") and _BUILD_RUNTIME_PARAM is not None:  # older Typer: no adapters
    _TYPER_PARAMETER.get_runtime_param = _get_runtime_param


# Click's UsageError as Typer raises it (Typer carries its own copy of Click, not the `click` package).
_USAGE_ERROR: Any = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class OneLineErrors(TyperGroup):
    """The root command group: a striate or database error from any command ends as one red line and
    its exit code, the same whether the app runs as `striate` or in a test's CliRunner."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta["striate.argv"] = list(args)  # the words as given, for a usage error under `train --json`
        return cast(list[str], super().parse_args(ctx, args))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _USAGE_ERROR as exc:
            argv = ctx.meta.get("striate.argv") or []
            words = argv[:argv.index("--")] if "--" in argv else argv
            if exc.ctx is not None and exc.ctx.info_name == "train" and "--json" in words:
                # a script reading stdout learns what failed
                print_json({"id": None, "status": None, "error": exc.format_message(),
                            "fix": "see `striate train --help`", "exit_code": exc.exit_code})
            raise  # Click prints its usage message on stderr, as without --json
        except Exception as exc:
            code = error_line(exc)
            if code is None:
                raise
            raise typer.Exit(code) from None
