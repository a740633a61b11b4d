"""`striate train` — the flags are generated from the settings declared in striate.config."""

from __future__ import annotations

import inspect
import sys
import typing
from pathlib import Path
from typing import Any, Optional

import typer

from striate.cli.common import STORE_OPTION, err_console
from striate.config import TrainConfig, parse_assignments

_SKIP = {"model", "model_options"}  # model is the positional argument; options go through --set


def _flag_parameters() -> list[inspect.Parameter]:
    hints = typing.get_type_hints(TrainConfig)
    params = []
    for f in TrainConfig.fields():
        if f.name in _SKIP:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        if kind is bool:
            option = typer.Option(None, f"{flag}/--no-{f.name.replace('_', '-')}", help=f.metadata["help"])
            annotation: Any = Optional[bool]
        elif typing.get_origin(kind) is list or kind is list:
            option = typer.Option(None, "--tag" if f.name == "tags" else flag, help=f.metadata["help"])
            annotation = Optional[list[str]]
        else:
            option = typer.Option(None, flag, help=f.metadata["help"])
            annotation = Optional[kind]
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation))
    return params


def train_command(
    model: Optional[str] = typer.Argument(None, help="model name (default lenet5)"),
    config_file: Optional[Path] = typer.Option(None, "-c", "--config", help="YAML config file"),
    overrides: Optional[list[str]] = typer.Option(None, "--set", help="override any setting: --set key=value"),
    store: Optional[str] = STORE_OPTION,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show the live progress bar"),
    as_json: bool = typer.Option(False, "--json", help="print the final summary as JSON"),
    reproduction_of: Optional[str] = typer.Option(None, "--reproduction-of",
                                                  help="record this run as a reproduction of RUN (set by "
                                                       "`striate reproduce`)"),
    **flags: Any,
) -> None:
    """Train a CNN and record the run: `striate train lenet5 --data fashion-mnist --epochs 5`."""
    from striate.cli.report import print_config, print_run_result
    from striate.tracking.store import default_store_location

    config = TrainConfig.from_file(config_file) if config_file else TrainConfig()
    given = {k: v for k, v in flags.items() if v is not None and v != []}
    if model is not None:
        given["model"] = model
    config = config.override(given, "command line")
    config = config.override(parse_assignments(overrides or []), "--set")
    location = store or default_store_location()
    # Everything is checked (model, device, data, store) before anything is printed: a bad model name is
    # one error line, not a config printout followed by one.
    session = prepare_training(config, location, reproduction_of=reproduction_of)
    if not as_json:
        print_config(config)
    result = run_prepared(session, progress=progress and not as_json, echo=not as_json)
    run_id = session.run_id
    print_run_result(_recorded(run_id, location), location, as_json)
    if result.status == "stopped":
        sys.exit(130)


train_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [p for p in inspect.signature(train_command).parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    + _flag_parameters())
commands = typer.Typer()  # registered on the app by striate.cli.app
commands.command("train")(train_command)


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
                 echo: bool = True, reproduction_of: str | None = None) -> tuple[Any, str]:
    """Train ``config`` as a new run through the one training session; the bar and epoch lines as asked."""
    session = prepare_training(config, store_location, reproduction_of=reproduction_of)
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
