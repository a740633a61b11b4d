"""What the training loop tells its subscribers: the progress bar, the checkpointer, a sweep pruner, a stop request.

The engine calls every :class:`Callback` in order at four points: once at the start, after every
optimizer step, after every epoch's evaluation, and once at the end. A callback reads the live
:class:`TrainState` and may ask the loop to stop (``state.request_stop(reason)``): the loop ends
after the current step with status ``stopped``, exactly as Ctrl-C does.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ContextManager

if TYPE_CHECKING:
    import torch

    from striate.config import TrainConfig
    from striate.tracking.run import Run
    from striate.train.metrics import EvalResult


# The stop reason of a run stopped by `striate stop` (or the server's stop request): the loop stops
# between steps, so the Checkpointer can save the exact position for `striate resume`.
STOP_REQUESTED = "stop requested (striate stop)"


@dataclass
class TrainState:
    """The training objects and counters a subscriber may look at (read-only by convention)."""

    config: TrainConfig
    run: Run | None
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Any
    position: Any  # engine._Position: epoch, batch in epoch, global step, running sums
    steps_per_epoch: int
    total_steps: int
    stop_reason: str | None = None

    def request_stop(self, reason: str) -> None:
        """Ask the loop to end after the current step, with status ``stopped``."""
        if self.stop_reason is None:
            self.stop_reason = reason


@dataclass(frozen=True)
class StepEvent:
    """One optimizer step. Loss, accuracy and rate are set only at logging steps (they cost a device sync)."""

    global_step: int
    epoch: int
    batch: int  # 1-based, within the epoch
    loss: float | None = None
    acc1: float | None = None
    samples_per_s: float | None = None


@dataclass(frozen=True)
class EpochEvent:
    """One finished epoch: training figures and the test-set evaluation."""

    epoch: int
    epochs: int
    train_loss: float
    train_acc1: float
    samples_per_s: float
    evaluation: EvalResult
    extra: dict[str, Any] = field(default_factory=dict)


class Callback:
    """Subscribe to the loop's events by overriding any of these; each does nothing by default."""

    def on_start(self, state: TrainState) -> None:
        """Before the first step (after a resume restored the position)."""

    def on_step(self, state: TrainState, event: StepEvent) -> None:
        """After each optimizer step (and its schedule step)."""

    def on_epoch(self, state: TrainState, event: EpochEvent) -> None:
        """After each epoch's evaluation."""

    def on_end(self, state: TrainState, status: str) -> None:
        """When the loop ends: ``finished``, ``stopped``, or ``failed`` (training raised; the error follows)."""


# A step of set-up that may take a while (loading data, capturing the environment, counting multiply-adds):
# ``with status("loading fashion-mnist"): ...``. A door decides what to show (the CLI: a line on stderr
# when the step takes longer than a second); the default shows nothing.
Status = Callable[[str], ContextManager[object]]


def quiet(message: str) -> ContextManager[object]:
    """The default ``Status``: say nothing."""
    return contextlib.nullcontext()
