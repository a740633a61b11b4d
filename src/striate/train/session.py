"""One training session — validate, create (or reattach) the run, train, record how it ended — for every door.

`striate train`, `striate resume`, `striate reproduce` (which runs `striate train`) and sweeps all
go through :class:`Session`. Everything that can fail on bad input is checked while the session
is prepared, before a run exists or is touched, so bad input never leaves a half-recorded run.
How an outcome maps to a status (an exception: ``failed``; Ctrl-C: ``stopped``; ``sys.exit(0)``:
``finished``) is written once, in ``Run.__exit__``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from striate.config import TrainConfig
from striate.errors import ConfigError
from striate.tracking.store import Store, is_remote, open_store
from striate.train.engine import ResumePoint, TrainResult, resolve_device, train
from striate.train.events import STOP_REQUESTED, Callback, Status, StepEvent, TrainState, quiet
from striate.train.resume import check_dataset_fingerprint, pin_threads, resume_point

if TYPE_CHECKING:
    import torch

    from striate.data.loader import ImageDataset
    from striate.tracking.run import Run


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


class StopWhenAsked(Callback):
    """Ends training after the current step once the run was asked to stop (`striate stop`, the server):
    the run's writer learns of the request at its next flush (within about a second while training logs)."""

    def on_step(self, state: TrainState, event: StepEvent) -> None:
        run = state.run
        if run is not None and run.stop_requested_at is not None:
            state.request_stop(STOP_REQUESTED)


@dataclass
class Session:
    """A checked, ready-to-run training: its config, data and how to open its run."""

    config: TrainConfig
    dataset: ImageDataset
    open_run: Callable[[], Run]
    resume: ResumePoint | None = None
    pretrained: dict[str, torch.Tensor] | None = None
    run_id: str = ""  # set once the run is opened
    status: Status = quiet  # told about slow set-up steps

    def run(self, callbacks: Sequence[Callback] = ()) -> TrainResult:
        """Open the run, train, and finish the run with the status the outcome maps to."""
        with self.status("capturing the environment"):
            run = self.open_run()
        self.run_id = run.id
        with run:
            callbacks = [*callbacks, StopWhenAsked()]
            result = train(self.config, run=run, dataset=self.dataset, callbacks=callbacks, resume=self.resume,
                           pretrained=self.pretrained, status=self.status)
            if result.status != "finished":
                run.summary["stop_reason"] = result.stop_reason
                run.summary["stopped_at_step"] = result.global_step
                run.finish(result.status)
        return result


def new_session(config: TrainConfig, store_location: str, *, reproduction_of: str | None = None,
                warn: Callable[[str], None] = _stderr, status: Status = quiet) -> Session:
    """A session that trains ``config`` as a new run in ``store_location``; bad input fails here.

    ``status`` hears of the slow set-up steps (loading data, capturing the environment, counting
    multiply-adds), here and in :meth:`Session.run`.
    """
    from striate import models
    from striate.data.loader import load_dataset
    from striate.tracking.run import init

    remote = is_remote(store_location)
    store = None
    if remote:
        _check_server(store_location, config.project, warn)  # an unreachable server is not fatal: the run is spooled
        made = None
    else:
        made = _first_missing(Path(store_location))  # what opening the store creates, if anything
        store = open_store(store_location)
    try:
        entry = models.info(config.model)
        min_size = entry.min_size(config.model_options)
        if config.image_size and config.image_size < min_size:
            raise ConfigError(f"image_size={config.image_size} is below {config.model}'s minimum of "
                              f"{min_size} px", f"use --image-size {min_size} or more")
        resolve_device(config)
        with status(f"loading {config.data}"):
            dataset = load_dataset(config.data)
        pretrained = None
        if config.pretrained:
            from striate.train.pretrained import load_pretrained, read_state_dict, resolve_pretrained

            weights = resolve_pretrained(config.pretrained, store_location, config.model)  # a file, or a run's weights
            pretrained = read_state_dict(weights)
            fresh = models.create(config.model, num_classes=len(dataset.classes),
                                  in_channels=dataset.image_shape[0], **config.model_options)
            load_pretrained(fresh, weights, len(dataset.classes), state=pretrained)
    except BaseException:
        if made is not None and store is not None:
            _remove_new_store(made, store)  # bad input leaves no empty store folder behind
        raise

    def open_run() -> Run:
        return init(project=config.project, name=config.name or None, config=config.to_dict(), tags=config.tags,
                    store=store_location if remote else store, model=config.model, capture_console=True,
                    reproduction_of=reproduction_of)

    return Session(config, dataset, open_run, pretrained=pretrained, status=status)


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder of ``folder``'s path that does not exist yet (None if it exists)."""
    folder = folder.absolute()
    if folder.exists() or folder.is_symlink():
        return None
    while not folder.parent.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def _remove_new_store(made: Path, store: Store) -> None:
    """Remove the store folder (and the folders above it) this session created, if it holds no run."""
    import shutil

    try:
        if store.list_runs(limit=1):
            return
        engine = getattr(store, "engine", None)
        if engine is not None:
            engine.dispose()
        shutil.rmtree(made)
    except Exception:  # tidying must never hide the error that caused it
        pass


def resume_session(store_location: str, run_ref: str, status: Status = quiet) -> Session:
    """A session that continues run ``run_ref`` from its last checkpoint; nothing about the run changes until
    :meth:`Session.run`."""
    from striate.data.loader import load_dataset
    from striate.tracking.run import reattach

    store = open_store(store_location)
    record = store.get_run(run_ref)
    if is_remote(store_location):
        from striate.tracking.spool import take_over_from_spool

        record = take_over_from_spool(store, record)
    point = resume_point(store, record)
    config = pin_threads(TrainConfig.from_mapping(record.config, source=f"run {record.name}"), record)
    check_dataset_fingerprint(config, record)
    with status(f"loading {config.data}"):
        dataset = load_dataset(config.data)
    after_step = int(point.state["position"]["global_step"])

    def open_run() -> Run:
        # Reattaching drops the points logged after the checkpoint and marks the run running again.
        return reattach(store, record.id, after_step=after_step, capture_console=True)

    return Session(config, dataset, open_run, resume=point, status=status)


def _check_server(url: str, project: str, warn: Callable[[str], None]) -> None:
    """Warn, without stopping, when a remote store cannot be reached: the run is recorded into the
    local spool and sent by `striate sync` (or by the run itself if the server comes back). A team
    server that answers but refuses this token, or this project, stops the run before it starts."""
    from striate.errors import StoreError
    from striate.tracking.spool import spool_location

    try:
        store = open_store(url)
    except StoreError as exc:
        warn(f"warning: {exc.problem}; recording into the local spool ({spool_location()}); "
             f"`striate sync --to {url}` sends it once the server is back")
        return
    require_role = getattr(store, "require_role", None)
    if require_role is not None:
        require_role(project, "editor")
