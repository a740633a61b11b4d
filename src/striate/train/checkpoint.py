"""Checkpoints: model weights as safetensors, training state as a state dict loaded with weights_only=True."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from striate.archives import give_user_mode
from striate.errors import TrainingError
from striate.train.determinism import rng_state
from striate.train.events import STOP_REQUESTED, Callback, EpochEvent, StepEvent, TrainState

if TYPE_CHECKING:
    from striate.config import TrainConfig
    from striate.tracking.run import Run


def save_weights(model: torch.nn.Module, path: Path) -> str:
    """Write the model's weights to ``path`` (safetensors); return the weights hash."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with _atomic(path) as tmp:
        save_file(tensors, str(tmp))
    return weights_hash(tensors)


def weights_hash(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over parameter names, shapes, dtypes and bytes: equal iff the weights are bit-identical."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().to("cpu").contiguous()
        digest.update(f"{key}:{tuple(t.shape)}:{t.dtype}\n".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def structure_hash(model: torch.nn.Module) -> str:
    """SHA-256 of the architecture: module types in order plus every parameter's name, shape and dtype."""
    digest = hashlib.sha256()
    for name, module in model.named_modules():
        digest.update(f"{name}:{type(module).__module__}.{type(module).__qualname__}\n".encode())
    for key, tensor in model.state_dict().items():
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}\n".encode())
    return digest.hexdigest()


def load_weights(model: torch.nn.Module, path: Path, strict: bool = True) -> None:
    """Load safetensors weights into ``model``."""
    model.load_state_dict(load_file(str(path)), strict=strict)


def save_training_state(path: Path, state: dict[str, Any]) -> None:
    """Write optimizer/scheduler/RNG state (tensors and plain data only)."""
    with _atomic(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path: Path) -> dict[str, Any]:
    """Read a training state without unpickling arbitrary objects."""
    return torch.load(path, map_location="cpu", weights_only=True)


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """Write to a temporary name and rename: an interrupted save never leaves a half-written file.

    A failed write (disk full, file size limit, permissions) becomes one TrainingError naming the
    file; safetensors and torch.save report I/O failures as their own exception types.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        give_user_mode(tmp)  # safetensors writes 0600: weights follow the umask like every other artifact
        os.replace(tmp, path)
    except (OSError, RuntimeError, SafetensorError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise TrainingError(f"cannot write {path}: {reason}",
                            "free disk space, or record into a store on another disk (--store)") from None
    finally:
        with contextlib.suppress(OSError):  # on a read-only file system even a missing file's unlink fails
            tmp.unlink(missing_ok=True)


class Checkpointer(Callback):
    """Saves weights (safetensors) + training state each epoch and every ``checkpoint_every`` steps.

    Keeps the newest step checkpoint (a later save supersedes it) and the epoch ones
    (the last ``keep_checkpoints`` when that is set). Engine events drive it (train/events.py).
    """

    def __init__(self, run: Run, config: TrainConfig, resumed_from: Path | None = None) -> None:
        self.run, self.config = run, config
        self.folder = run.artifact_dir / "checkpoints"
        # A resumed run started from a step checkpoint: the next save supersedes it.
        self.last_step_name = resumed_from.name.removesuffix(".safetensors") if (
            resumed_from is not None and resumed_from.name.startswith("step-")) else None

    def on_step(self, state: TrainState, event: StepEvent) -> None:
        """A step checkpoint every ``checkpoint_every`` steps, except on an epoch's last step."""
        every = self.config.checkpoint_every
        if every and event.global_step % every == 0 and event.batch < state.steps_per_epoch:
            self.save(state, f"step-{event.global_step:08d}", kind="step")

    def on_epoch(self, state: TrainState, event: EpochEvent) -> None:
        """An epoch checkpoint, holding the position of the next epoch's start."""
        self.save(state, f"epoch-{event.epoch:03d}", kind="epoch")

    def on_end(self, state: TrainState, status: str) -> None:
        """A run stopped on request saves where it stopped (a step checkpoint), unless an epoch or step
        checkpoint was just written there. Not after Ctrl-C: the interrupt may have cut a step short."""
        if status != "stopped" or state.stop_reason != STOP_REQUESTED:
            return
        pos = state.position
        if pos.batches_done in (0, state.steps_per_epoch):
            return  # at an epoch's start (its checkpoint exists) or its unevaluated end (resume redoes that epoch)
        if self.run.summary.get("last_checkpoint", {}).get("global_step") == pos.global_step:
            return
        self.save(state, f"step-{pos.global_step:08d}", kind="step")

    def save(self, state: TrainState, name: str, kind: str) -> None:
        """Write one checkpoint, record it, then prune what it supersedes."""
        run, pos = self.run, state.position
        weights, state_file = self.folder / f"{name}.safetensors", self.folder / f"{name}.state.pt"
        digest = save_weights(state.model, weights)
        save_training_state(state_file, {"position": pos.state(), "optimizer": state.optimizer.state_dict(),
                                         "schedule": state.schedule.state_dict(), "rng": rng_state(),
                                         "config": json.dumps(self.config.to_dict())})
        run.log_artifact(weights, f"checkpoints/{weights.name}", kind="checkpoint")
        run.log_artifact(state_file, f"checkpoints/{state_file.name}", kind="training-state")
        checkpoints = run.summary.setdefault("checkpoints", {})
        checkpoints[f"checkpoints/{weights.name}"] = digest
        run.summary["last_checkpoint"] = {"weights": f"checkpoints/{weights.name}",
                                          "state": f"checkpoints/{state_file.name}", "global_step": pos.global_step}
        # A checkpoint is a promise: everything logged up to it is on disk before training goes on,
        # and the record points at it before any older checkpoint is deleted.
        run.flush()
        run.save_summary()
        stale = [self.last_step_name] if self.last_step_name is not None else []  # superseded step checkpoint
        self.last_step_name = name if kind == "step" else None
        keep = self.config.keep_checkpoints
        if kind == "epoch" and keep and pos.epoch - 1 > keep:
            stale.append(f"epoch-{pos.epoch - 1 - keep:03d}")
        for old in stale:
            self._remove(old)
        if stale:
            run.save_summary()

    def _remove(self, name: str) -> None:
        for suffix in (".safetensors", ".state.pt"):
            (self.folder / f"{name}{suffix}").unlink(missing_ok=True)
            self.run.store.remove_artifact(self.run.id, f"checkpoints/{name}{suffix}")
        self.run.summary.get("checkpoints", {}).pop(f"checkpoints/{name}.safetensors", None)
