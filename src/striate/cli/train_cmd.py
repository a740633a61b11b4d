"""`striate train` — the flags are generated from the settings declared in striate.config."""

from __future__ import annotations

import dataclasses
import inspect
import sys
import typing
from pathlib import Path
from typing import Any, Optional

import typer

from striate.cli.common import err_console
from striate.config import TrainConfig, parse_assignments

_SKIP = {"model"}  # model is the positional argument


def _help(f: Any) -> str:
    """A setting's help with its default, as the config file and --set would write it."""
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    if isinstance(default, bool):
        shown = f"--{'' if default else 'no-'}{f.name.replace('_', '-')}"
    elif default in ("", []):
        shown = "none"
    elif isinstance(default, dict):
        shown = "{}" if not default else str(default)
    else:
        shown = str(default)
    example = ", e.g. '{small_input: true}'" if isinstance(default, dict) else ""
    return f"{f.metadata['help']}{example} \\[default: {shown}]"  # escaped: not a rich markup tag

# `train --help` groups the settings by topic; a setting not named here is listed under "Other".
_PANELS = {
    "Data and model": ("data", "image_size", "pretrained", "model_options"),
    "Optimization": ("epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay", "schedule",
                     "step_epochs", "step_gamma", "warmup_fraction", "label_smoothing"),
    "Augmentation": ("crop_padding", "flip"),
    "Hardware and determinism": ("device", "precision", "channels_last", "threads", "eval_batch_size", "seed",
                                 "deterministic"),
    "Checkpoints and logging": ("checkpoint", "keep_checkpoints", "checkpoint_every", "log_every"),
    "Run record": ("project", "name", "tags"),
}
_PANEL_OF = {name: panel for panel, names in _PANELS.items() for name in names}


def _flag_parameters() -> list[inspect.Parameter]:
    hints = typing.get_type_hints(TrainConfig)
    params = []
    for f in TrainConfig.fields():
        if f.name in _SKIP:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        panel = _PANEL_OF.get(f.name, "Other")
        if kind is bool:
            option = typer.Option(None, f"{flag}/--no-{f.name.replace('_', '-')}", help=_help(f),
                                  rich_help_panel=panel)
            annotation: Any = Optional[bool]
        elif typing.get_origin(kind) is list or kind is list:
            option = typer.Option(None, "--tag" if f.name == "tags" else flag, help=_help(f),
                                  rich_help_panel=panel)
            annotation = Optional[list[str]]
        elif kind is dict:  # model_options: a YAML mapping, e.g. --model-options '{small_input: true}'
            option = typer.Option(None, flag, metavar="YAML", help=_help(f), rich_help_panel=panel)
            annotation = Optional[str]
        else:
            option = typer.Option(None, flag, help=_help(f), rich_help_panel=panel)
            annotation = Optional[kind]
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation))
    return params


def train_command(
    model: Optional[str] = typer.Argument(None, help="model name (default lenet5)"),
    config_file: Optional[Path] = typer.Option(None, "-c", "--config", help="YAML config file"),
    overrides: Optional[list[str]] = typer.Option(None, "--set", help="override any setting: --set key=value"),
    store: Optional[str] = typer.Option(None, "--store", help="store folder (default ./striate-runs or "
                                        "$STRIATE_STORE)", rich_help_panel="Run record"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show the live progress bar"),
    as_json: bool = typer.Option(False, "--json", help="print the final summary as JSON"),
    reproduction_of: Optional[str] = typer.Option(None, "--reproduction-of",
                                                  help="record this run as a reproduction of RUN (set by "
                                                       "`striate reproduce`)", rich_help_panel="Run record"),
    **flags: Any,
) -> None:
    """Train a CNN and record the run: `striate train lenet5 --data fashion-mnist --epochs 5`."""
    from striate.cli.report import print_config, print_run_result
    from striate.tracking.store import default_store_location

    started: dict[str, Any] = {}
    try:
        config = TrainConfig.from_file(config_file) if config_file else TrainConfig()
        given = {k: v for k, v in flags.items() if v is not None and v != []}
        if model is not None:
            given["model"] = model
        config = config.override(given, "command line")
        config = config.override(parse_assignments(overrides or []), "--set")
        location = store or default_store_location()
        # Everything is checked (model, device, data, store) before anything is printed: a bad model name
        # is one error line, not a config printout followed by one.
        session = prepare_training(config, location, reproduction_of=reproduction_of)
        started["session"] = session
        if not as_json:
            print_config(config)
        result = run_prepared(session, progress=progress and not as_json, echo=not as_json)
        run_id = session.run_id
    except KeyboardInterrupt:  # Ctrl-C while setting up (loading data, opening the run): nothing to resume
        from striate.cli.report import print_setup_interrupted

        print_setup_interrupted(started.get("session"))
        sys.exit(130)
    except Exception as exc:
        if as_json:  # a script reading stdout learns what failed (and which run, if one was created)
            _print_json_failure(exc, started.get("session"))
        raise
    print_run_result(_recorded(run_id, location), location, as_json)
    if result.status == "stopped":
        sys.exit(130)


_LAST = ("store", "reproduction_of")  # listed with the settings of the "Run record" panel, after the others
_DECLARED = inspect.signature(train_command).parameters
train_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [p for p in _DECLARED.values() if p.kind != inspect.Parameter.VAR_KEYWORD and p.name not in _LAST]
    + _flag_parameters() + [_DECLARED[name].replace(kind=inspect.Parameter.KEYWORD_ONLY) for name in _LAST])
commands = typer.Typer()  # registered on the app by striate.cli.app
commands.command("train")(train_command)


def _print_json_failure(exc: Exception, session: Any) -> None:
    """`train --json` on failure: the error as JSON on stdout (the one-line error still goes to stderr)."""
    from striate.cli.common import print_json
    from striate.errors import StriateError

    run_id = (session.run_id or None) if session is not None else None
    if isinstance(exc, StriateError):
        error = {"error": exc.problem, "fix": exc.fix, "exit_code": exc.exit_code}
    else:
        error = {"error": f"{type(exc).__name__}: {exc}", "fix": None, "exit_code": 1}
    print_json({"id": run_id, "status": "failed" if run_id else None, **error})


def prepare_training(config: TrainConfig, store_location: str, reproduction_of: str | None = None) -> Any:
    """The checked training session for ``config`` (bad input fails here, before a run exists)."""
    from striate.cli.progress import SlowSteps
    from striate.train.session import new_session

    def warn(message: str) -> None:
        err_console.print(message, markup=False, highlight=False, soft_wrap=True)

    return new_session(config, store_location, reproduction_of=reproduction_of, warn=warn, status=SlowSteps())


def run_prepared(session: Any, progress: bool = True, echo: bool = True) -> Any:
    """Run a prepared session with the bar and epoch lines as asked; its result."""
    from striate.cli.progress import ProgressBar

    return session.run(callbacks=[ProgressBar(bar=progress, echo=echo)])


def run_training(config: TrainConfig, store_location: str, progress: bool = True,
                 echo: bool = True, reproduction_of: str | None = None,
                 started: dict[str, Any] | None = None) -> tuple[Any, str]:
    """Train ``config`` as a new run through the one training session; the bar and epoch lines as asked.

    ``started["session"]`` is the session once it is prepared (its ``run_id`` once the run is open).
    """
    session = prepare_training(config, store_location, reproduction_of=reproduction_of)
    if started is not None:
        started["session"] = session
    result = run_prepared(session, progress=progress, echo=echo)
    return result, session.run_id


def _recorded(run_id: str, location: str) -> Any:
    """The finished run's record: from the store, or from the local spool when the server is away."""
    from striate.errors import StoreError
    from striate.tracking.spool import spool_location
    from striate.tracking.store import is_remote, open_store

    try:
        return open_store(location).get_run(run_id)
    except StoreError:
        if not is_remote(location):
            raise
        return open_store(spool_location()).get_run(run_id)
