"""The training engine: the one loop that `striate train`, sweeps and reproductions all use.

Read top to bottom: set-up, data, model, optimizer, the loop, evaluation, checkpoints,
summary. Data lives on the training device as uint8 and is normalized and augmented
in batches; the loop only synchronizes with the device when it logs.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Sequence

import torch
import torch.nn.functional as F

from striate import models
from striate.config import TrainConfig
from striate.data.loader import DeviceBatches, ImageDataset, load_dataset, pad_to
from striate.errors import ConfigError, TrainingError
from striate.models.inspect import layer_table
from striate.models.spec import is_spec_path
from striate.tracking.run import Run
from striate.train import checkpoint as ckpt
from striate.train.determinism import deterministic_mode, restore_rng_state, seed_everything, wants_determinism
from striate.train.events import Callback, EpochEvent, Status, StepEvent, TrainState, quiet
from striate.train.metrics import evaluate
from striate.train.optim import build_optimizer, build_schedule
from striate.train.pretrained import load_pretrained, resolve_pretrained


@dataclass
class TrainResult:
    """What a training run ended with."""

    status: str  # finished or stopped
    epochs_completed: int
    test_acc1: float | None = None
    test_acc5: float | None = None
    test_loss: float | None = None
    best_test_acc1: float | None = None
    train_samples_per_s: float = 0.0  # training steps only, evaluation excluded
    train_seconds: float = 0.0  # time spent in training steps
    wall_seconds: float = 0.0  # the whole loop, evaluation and checkpoints included
    samples_trained: int = 0
    weights_hash: str | None = None
    per_class_acc1: list[float | None] = field(default_factory=list)  # None: no test images of that class
    confusion: list[list[int]] = field(default_factory=list)
    run_id: str | None = None
    stop_reason: str | None = None  # why a stopped run stopped (Ctrl-C, a stop request, a pruner)
    global_step: int = 0  # the last training step taken (where a stopped run stopped)


def resolve_device(config: TrainConfig) -> torch.device:
    """The device to train on: CUDA when present (device=auto) or as asked."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda was asked for but no CUDA GPU is available", "use --device cpu or auto")
    if config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


# bf16 autocast pays on a GPU only when there is enough arithmetic to hide its cast kernels: LeNet-5
# (0.4 M multiply-adds per image) trained 32 % faster in fp32 on an H200, while the ImageNet-era
# networks (190 M and more at 28x28) are the work tensor cores are for (benchmarks/README.md).
BF16_MIN_MACS_PER_IMAGE = 10_000_000


def resolve_precision(config: TrainConfig, device: torch.device, macs_per_image: float) -> str:
    """``fp32`` or ``bf16``. auto: bf16 on CUDA for models of at least 10 M multiply-adds per image."""
    if config.precision != "auto":
        return config.precision
    return "bf16" if device.type == "cuda" and macs_per_image >= BF16_MIN_MACS_PER_IMAGE else "fp32"


def autocast_for(precision: str, device: torch.device) -> Callable[[], ContextManager[Any]]:
    """A context factory: bf16 autocast for ``precision="bf16"``, else nothing."""
    if precision != "bf16":
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def train(config: TrainConfig, *, run: Run | None = None, dataset: ImageDataset | None = None,
          callbacks: Sequence[Callback] = (), resume: ResumePoint | None = None,
          pretrained: dict[str, torch.Tensor] | None = None, status: Status = quiet) -> TrainResult:
    """Train ``config.model`` on ``config.data``; record everything in ``run`` when given.

    The caller owns ``run``: this function logs metrics, artifacts and the summary but does not
    finish it (``train.session`` does both). ``callbacks`` subscribe to the loop's events
    (``train.events``); the engine itself prints nothing. Ctrl-C, or a callback's stop request,
    ends training cleanly with status ``stopped``. ``pretrained`` is the already-read state dict
    of ``config.pretrained`` (read from the file when not given). ``status`` hears of slow set-up steps.
    """
    # --- set-up -----------------------------------------------------------------------------------
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        device = resolve_device(config)
        with deterministic_mode(wants_determinism(config.deterministic, device), device):
            return _train(config, device, run, dataset, list(callbacks), resume, pretrained, status)
    finally:
        torch.set_num_threads(threads_before)


def _macs_per_image(config: TrainConfig, entry: models.ModelInfo, model: torch.nn.Module, channels: int,
                    classes: int, side: int, status: Status) -> int:
    """Multiply-adds per image: from the model's record at its design size and default options, else counted
    by running one eval-mode image through the model (no RNG, no state; seconds for the ImageNet-sized nets)."""
    recorded = entry.count_macs(channels, classes) if side == entry.input_size and not config.model_options else None
    if recorded is not None:
        return recorded
    with status("counting multiply-adds"):
        return layer_table(model, (channels, side, side)).macs


def _train(config: TrainConfig, device: torch.device, run: Run | None, dataset: ImageDataset | None,
           callbacks: list[Callback], resume: ResumePoint | None,
           pretrained: dict[str, torch.Tensor] | None, status: Status) -> TrainResult:
    seed_everything(config.seed)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format

    # --- data -------------------------------------------------------------------------------------
    if dataset is None:
        with status(f"loading {config.data}"):
            dataset = load_dataset(config.data)
    data = dataset
    entry = models.info(config.model)
    channels = data.image_shape[0]
    num_classes = len(data.classes)
    mean, std = data.pixel_stats()
    min_size = entry.min_size(config.model_options)
    if config.image_size and config.image_size < min_size:
        raise ConfigError(f"image_size={config.image_size} is below {config.model}'s minimum of "
                          f"{min_size} px", f"use --image-size {min_size} or more")
    # Small images are padded once in memory (LeNet's 28 -> 32); resizing, when asked, happens per batch.
    pad = 0 if config.image_size else min_size
    train_split = type(data.train)(pad_to(data.train.images, pad), data.train.labels)
    test_split = type(data.test)(pad_to(data.test.images, pad), data.test.labels)
    batches = functools.partial(DeviceBatches, device=device, mean=mean, std=std,
                                channels_last=config.channels_last, resize_to=config.image_size)
    train_batches = batches(train_split, batch_size=config.batch_size, shuffle=True,
                            crop_padding=config.crop_padding, flip=config.flip, seed=config.seed)
    test_batches = batches(test_split, batch_size=config.eval_batch_size)

    # --- model, optimizer, schedule ---------------------------------------------------------------
    model = models.create(config.model, num_classes=num_classes, in_channels=channels, **config.model_options)
    if config.pretrained:  # a file, or a run of the default store (a session resolves it in its own store)
        weights = Path(config.pretrained) if pretrained is not None else resolve_pretrained(
            config.pretrained, None, config.model)
        load_pretrained(model, weights, num_classes, state=pretrained)
    model = model.to(device=device, memory_format=memory_format)  # type: ignore[call-overload]
    # Models with auxiliary classifiers (GoogLeNet) expose them through forward_with_aux in training.
    forward_with_aux = getattr(model, "forward_with_aux", None)
    aux_weight = float(getattr(model, "aux_loss_weight", 0.0))
    optimizer = build_optimizer(model, config)
    steps_per_epoch = len(train_batches)
    schedule = build_schedule(optimizer, config, steps_per_epoch)
    side = config.image_size or int(train_split.images.shape[-1])
    macs_per_image = _macs_per_image(config, entry, model, channels, num_classes, side, status)
    precision = resolve_precision(config, device, macs_per_image)
    autocast = autocast_for(precision, device)

    if run is not None:
        run.set(model=config.model, dataset=data.identity())
        if is_spec_path(config.model):
            # A layer-spec model travels with its run, so the run can be rebuilt without the original file.
            from striate.models.spec import load_spec

            run.summary["model_spec"] = load_spec(Path(config.model))
            run.log_artifact(Path(config.model), "model_spec" + Path(config.model).suffix.lower(),
                             kind="model-spec")
        run.summary.update({"parameters": models.count_parameters(model), "device": str(device),
                            "precision": precision, "multiply_adds_per_image": macs_per_image,
                            # CPU results depend on the thread count (how sums are split): reproduce pins it.
                            "torch_threads": torch.get_num_threads(),
                            "model_structure_hash": ckpt.structure_hash(model),
                            "input_shape": [channels, *train_split.images.shape[2:]]})

    # --- the loop ---------------------------------------------------------------------------------
    pos = _Position.fresh(device)
    if resume is not None:
        pos = _restore(resume, model, optimizer, schedule, device)
    result = TrainResult(status="finished", epochs_completed=pos.epoch - 1, run_id=run.id if run else None,
                         best_test_acc1=pos.best_test_acc1)
    if run is not None and config.checkpoint:
        # First subscriber: an epoch is on disk before anyone else hears it ended.
        callbacks.insert(0, ckpt.Checkpointer(run, config, resume.weights_path if resume else None))
    state = TrainState(config, run, model, optimizer, schedule, pos, steps_per_epoch,
                       config.epochs * steps_per_epoch)
    started = time.perf_counter()
    in_epoch, epoch_start, seen_at_start = False, started, pos.seen
    try:
        for cb in callbacks:
            cb.on_start(state)
        while pos.epoch <= config.epochs and state.stop_reason is None:
            epoch = pos.epoch
            model.train()
            epoch_start = time.perf_counter()
            seen_at_start = pos.seen
            in_epoch = True  # until this epoch's time is counted: Ctrl-C counts what it cut short
            for x, y in train_batches.epoch(epoch, start_batch=pos.batches_done):
                with autocast():
                    if forward_with_aux is not None:
                        logits, aux_logits = forward_with_aux(x)
                    else:
                        logits, aux_logits = model(x), []
                    loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
                    for aux in aux_logits:
                        loss = loss + aux_weight * F.cross_entropy(aux, y, label_smoothing=config.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                pos.global_step += 1
                pos.batches_done += 1
                batch = y.shape[0]
                pos.seen += batch
                pos.seen_since_log += batch
                pos.loss_sum += loss.detach() * batch
                pos.correct += (logits.detach().argmax(1) == y).sum()
                step = StepEvent(pos.global_step, epoch, pos.batches_done)
                if pos.global_step % config.log_every == 0 or pos.batches_done == steps_per_epoch:
                    total_loss, total_correct = float(pos.loss_sum), int(pos.correct)  # one sync per log
                    if not math.isfinite(total_loss):
                        raise TrainingError(f"training diverged: the loss became {total_loss} by step "
                                            f"{pos.global_step} (epoch {epoch})",
                                            "lower --lr, or check the data for "
                                            "empty or constant images")
                    window_loss = (total_loss - pos.loss_at_log) / pos.seen_since_log
                    window_acc = (total_correct - pos.correct_at_log) / pos.seen_since_log
                    pos.loss_at_log, pos.correct_at_log, pos.seen_since_log = total_loss, total_correct, 0
                    rate = (pos.seen - seen_at_start) / (time.perf_counter() - epoch_start)
                    if run is not None:
                        run.log({"train/loss": window_loss, "train/acc1": window_acc,
                                 "lr": optimizer.param_groups[0]["lr"]}, step=pos.global_step)
                    step = StepEvent(pos.global_step, epoch, pos.batches_done, window_loss, window_acc, rate)
                schedule.step()  # after logging, so "lr" is the rate this step used
                for cb in callbacks:
                    cb.on_step(state, step)
                if state.stop_reason is not None:
                    break
            epoch_seconds = time.perf_counter() - epoch_start
            rate = (pos.seen - seen_at_start) / epoch_seconds if epoch_seconds else 0.0
            result.train_seconds += epoch_seconds
            result.samples_trained += pos.seen - seen_at_start
            in_epoch = False
            if pos.batches_done < steps_per_epoch:
                break  # stopped inside the epoch: no evaluation of a half-trained epoch

            # --- evaluation ---------------------------------------------------------------------------
            ev = evaluate(model, test_batches.epoch(0), num_classes, autocast)
            result.epochs_completed = epoch
            result.test_acc1, result.test_acc5, result.test_loss = ev.top1, ev.top5, ev.loss
            result.best_test_acc1 = pos.best_test_acc1 = max(pos.best_test_acc1 or 0.0, ev.top1)
            result.confusion = ev.confusion.tolist()
            result.per_class_acc1 = ev.per_class_accuracy()
            epoch_loss, epoch_acc = float(pos.loss_sum) / pos.seen, int(pos.correct) / pos.seen
            if run is not None:
                run.log({"train/epoch_loss": epoch_loss, "train/epoch_acc1": epoch_acc,
                         "test/loss": ev.loss, "test/acc1": ev.top1, "test/acc5": ev.top5, "epoch": epoch,
                         "train/samples_per_s": rate}, step=pos.global_step)
                run.summary.update({"epochs_completed": epoch, "test_acc1": ev.top1, "test_acc5": ev.top5,
                                    "test_loss": ev.loss, "best_test_acc1": result.best_test_acc1})
            pos.next_epoch(device)  # subscribers (the checkpointer) see the position of the next epoch's start
            event = EpochEvent(epoch, config.epochs, epoch_loss, epoch_acc, rate, ev)
            for cb in callbacks:
                cb.on_epoch(state, event)
    except KeyboardInterrupt:
        state.request_stop("interrupted (Ctrl-C)")
        if in_epoch:  # the time and samples of the epoch Ctrl-C cut short are training all the same
            result.train_seconds += time.perf_counter() - epoch_start
            result.samples_trained += pos.seen - seen_at_start
    except BaseException:
        for cb in callbacks:
            cb.on_end(state, "failed")
        raise
    result.global_step = pos.global_step
    if state.stop_reason is not None:
        result.status = "stopped"
        result.stop_reason = state.stop_reason
    result.wall_seconds = time.perf_counter() - started
    result.train_samples_per_s = result.samples_trained / result.train_seconds if result.train_seconds else 0.0

    # --- summary ----------------------------------------------------------------------------------
    try:
        if run is not None:
            _finalize(run, model, data, result, config)
        else:
            result.weights_hash = ckpt.weights_hash(model.state_dict())
    except BaseException:
        for cb in callbacks:
            cb.on_end(state, "failed")
        raise
    for cb in callbacks:
        cb.on_end(state, result.status)
    return result


@dataclass
class _Position:
    """Where training stands: everything besides model/optimizer/schedule that a resume needs."""

    epoch: int
    batches_done: int  # in the current epoch
    global_step: int
    loss_sum: torch.Tensor  # running sums of the current epoch, kept on the device
    correct: torch.Tensor
    seen: int
    seen_since_log: int
    loss_at_log: float
    correct_at_log: int
    best_test_acc1: float | None

    @classmethod
    def fresh(cls, device: torch.device) -> _Position:
        return cls(1, 0, 0, torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.int64),
                   0, 0, 0.0, 0, None)

    def next_epoch(self, device: torch.device) -> None:
        fresh = _Position.fresh(device)
        self.epoch += 1
        self.batches_done = 0
        self.loss_sum, self.correct = fresh.loss_sum, fresh.correct
        self.seen = self.seen_since_log = self.correct_at_log = 0
        self.loss_at_log = 0.0

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batches_done": self.batches_done, "global_step": self.global_step,
                "loss_sum": self.loss_sum.detach().cpu(), "correct": self.correct.detach().cpu(), "seen": self.seen,
                "seen_since_log": self.seen_since_log, "loss_at_log": self.loss_at_log,
                "correct_at_log": self.correct_at_log, "best_test_acc1": self.best_test_acc1}


@dataclass
class ResumePoint:
    """A checkpoint to continue from, already read and checked: its weights and its training state."""

    weights_path: Path
    weights: dict[str, torch.Tensor]
    state: dict[str, Any]


def _restore(resume: ResumePoint, model: torch.nn.Module, optimizer: torch.optim.Optimizer, schedule: Any,
             device: torch.device) -> _Position:
    model.load_state_dict(resume.weights)
    state = resume.state
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    p = state["position"]
    pos = _Position(p["epoch"], p["batches_done"], p["global_step"], p["loss_sum"].to(device),
                    p["correct"].to(device), p["seen"], p["seen_since_log"], p["loss_at_log"], p["correct_at_log"],
                    p["best_test_acc1"])
    restore_rng_state(state["rng"])  # last: building the model above consumed random numbers
    return pos


def _finalize(run: Run, model: torch.nn.Module, data: ImageDataset, result: TrainResult,
              config: TrainConfig) -> None:
    final = run.artifact_dir / "model.safetensors"
    result.weights_hash = ckpt.save_weights(model, final)
    run.log_artifact(final, "model.safetensors", kind="model")
    if result.confusion:
        matrix = run.artifact_dir / "confusion_matrix.json"
        matrix.write_text(json.dumps({"classes": list(data.classes), "rows_are": "true class",
                                      "matrix": result.confusion}))
        run.log_artifact(matrix, "confusion_matrix.json", kind="confusion-matrix")
    run.summary.update({
        "weights_hash": result.weights_hash,
        "train_samples_per_s": round(result.train_samples_per_s, 1),
        "train_seconds": round(result.train_seconds, 2),
        "wall_seconds": round(result.wall_seconds, 2),
        "per_class_acc1": dict(zip(data.classes, result.per_class_acc1)),
    })
