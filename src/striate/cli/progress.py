"""The live progress bar and the one-line-per-epoch report: a subscriber to the training loop's events."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Iterator

from striate.train.events import Callback, EpochEvent, StepEvent, TrainState


class ProgressBar(Callback):
    """A rich progress bar with live loss, accuracy and samples/s (``bar``), and a line per epoch (``echo``)."""

    def __init__(self, bar: bool = True, echo: bool = True) -> None:
        self.bar = bar
        self.echo = echo
        self._progress: Any = None
        self._task: Any = None

    def on_start(self, state: TrainState) -> None:
        """Open the bar, already advanced to where a resumed run stands."""
        if not self.bar:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(),
                                  MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                                  TimeElapsedColumn(), TimeRemainingColumn())
        self._progress.start()
        self._task = self._progress.add_task("train", total=state.total_steps, epoch=state.position.epoch,
                                             stats="", completed=state.position.global_step)

    def on_step(self, state: TrainState, event: StepEvent) -> None:
        """Advance the bar; refresh the figures at logging steps."""
        if self._progress is None:
            return
        if event.loss is None or event.acc1 is None:
            self._progress.update(self._task, completed=event.global_step, epoch=event.epoch)
        else:
            self._progress.update(self._task, completed=event.global_step, epoch=event.epoch,
                                  stats=f"loss {event.loss:.4f}  acc {event.acc1:6.2%}  "
                                        f"{event.samples_per_s or 0:,.0f} samples/s")

    def on_epoch(self, state: TrainState, event: EpochEvent) -> None:
        """One line per epoch: train loss and accuracy, test loss, top-1 and top-5, speed."""
        if not self.echo:
            return
        from rich.console import Console

        ev = event.evaluation
        console = self._progress.console if self._progress is not None else Console()
        console.print(
            f"epoch {event.epoch:>3}/{event.epochs}  train loss {event.train_loss:.4f} acc {event.train_acc1:.2%}  |  "
            f"test loss {ev.loss:.4f} top-1 {ev.top1:.2%} top-5 {ev.top5:.2%}  |  {event.samples_per_s:,.0f} samples/s",
            highlight=False, soft_wrap=True)  # never a hard newline inside (console.log, pipes)

    def on_end(self, state: TrainState, status: str) -> None:
        """Close the bar."""
        self.close()

    def close(self) -> None:
        """Stop the live display (also when training raised, so the terminal is left clean)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class SlowSteps:
    """A ``Status`` for the CLI: a set-up step still running after ``after_s`` seconds gets a line on stderr.

    Quick steps print nothing; a slow one says what the wait is for (``loading fashion-mnist…``) while
    it happens, so no second of start-up is silent. stdout, where ``--json`` output goes, is untouched.
    """

    def __init__(self, after_s: float = 1.0) -> None:
        self.after_s = after_s

    @contextlib.contextmanager
    def __call__(self, message: str) -> Iterator[None]:
        from striate.cli.common import err_console

        printed = threading.Event()
        lock = threading.Lock()

        def say() -> None:
            with lock:
                if not printed.is_set():
                    printed.set()
                    err_console.print(f"{message}…", markup=False, highlight=False, soft_wrap=True)

        started = time.monotonic()
        timer = threading.Timer(self.after_s, say)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            if time.monotonic() - started >= self.after_s:
                say()  # the timer may not have had its turn yet: a slow step is always named
