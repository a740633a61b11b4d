"""Training throughput (samples/s) of striate's engine vs the loop users typically write.

Both train LeNet-5 on real Fashion-MNIST (60,000 training images, full epochs), batch 128,
on CPU, with SGD lr 0.05, momentum 0.9, Nesterov, weight decay 5e-4.

- baseline: a ``torch.utils.data.Dataset`` over the uint8 numpy images whose ``__getitem__``
  normalizes one image (/255, -mean, /std) and pads 28 -> 32 with ``F.pad``; a
  ``DataLoader(batch_size=128, shuffle=True)`` with ``num_workers=0`` and, as a second
  baseline, ``num_workers=2``; plain ``torch.optim.SGD(model.parameters(), ...)``; NCHW model;
  forward, cross_entropy, zero_grad, backward, step. Timed from building the DataLoader
  iterator to the last step (worker start-up included, as users pay it every epoch).
- striate: ``striate.train.engine.train(TrainConfig(epochs=1, ...), run=None)``; its
  ``train_samples_per_s`` counts training steps only (set-up and evaluation excluded).

Interleaved: each repetition runs one epoch of each variant, in rotated order, each in a fresh
process after its own short untimed warm-up (so no process-wide setting of one variant reaches
another), and machine noise hits all of them alike. Also reports, per measurement,
the CPU seconds other programs used meanwhile (0 on a quiet machine).
Repetitions where that stayed under 1 s for every measurement count as quiet; medians over
them are reported too. Prints one JSON object.

Command: cd /work/main && .venv/bin/python benchmarks/train_throughput.py [--reps 5] [--device cuda]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from _machine import command_line, cpu_model, cpu_seconds, git_state, other_cpu_since
from torch.utils.data import DataLoader, Dataset

import striate
from striate import models
from striate.config import TrainConfig
from striate.data import load_dataset
from striate.data.loader import Split
from striate.train.engine import train
from striate.train.optim import build_optimizer

BATCH, LR, MOMENTUM, WEIGHT_DECAY = 128, 0.05, 0.9, 5e-4
QUIET_CPU_S = 1.0


class FashionMNIST(Dataset):
    """The typical per-sample dataset: uint8 numpy images in, one normalized float tensor out."""

    def __init__(self, images, labels, mean: float, std: float) -> None:
        self.images, self.labels, self.mean, self.std = images, labels, mean, std

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.images[i]).float().div(255.0).sub(self.mean).div(self.std)
        return F.pad(x, (2, 2, 2, 2)), int(self.labels[i])


def baseline_epoch(dataset: Dataset, num_workers: int, limit: int | None = None, device: str = "cpu") -> float:
    """One epoch of the typical loop; returns training samples/s."""
    torch.manual_seed(0)
    model = models.create("lenet5", num_classes=10, in_channels=1).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True, weight_decay=WEIGHT_DECAY)
    model.train()
    seen = 0
    start = time.perf_counter()
    pin = device == "cuda"
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=num_workers, pin_memory=pin)
    for step, (x, y) in enumerate(loader):
        x, y = x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += y.shape[0]
        if limit is not None and step + 1 >= limit:
            break
    if device == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def striate_epoch(ds, device: str = "cpu", precision: str = "auto") -> float:
    """One epoch of striate's engine (no tracking, no checkpoints); returns training samples/s."""
    config = TrainConfig(model="lenet5", data="fashion-mnist", epochs=1, batch_size=BATCH, schedule="constant",
                         lr=LR, momentum=MOMENTUM, nesterov=True, weight_decay=WEIGHT_DECAY, device=device,
                         precision=precision, checkpoint=False)
    return train(config, run=None, dataset=ds).train_samples_per_s


VARIANTS = ("baseline_workers0", "baseline_workers2", "striate")
CUDA_VARIANTS = (*VARIANTS, "striate_fp32")  # on a GPU, also the engine without its default bf16 autocast


def measure_one(name: str, device: str) -> float:
    """One timed epoch of one variant, after its own untimed warm-up, in a process of its own.

    Separate processes keep process-wide state (the engine's allocator setting, oneDNN caches,
    DataLoader workers) from leaking from one variant into another."""
    ds = load_dataset("fashion-mnist")
    mean, std = ds.pixel_stats()
    if name.startswith("striate"):
        precision = "fp32" if name == "striate_fp32" else "auto"
        striate_epoch(dataclasses.replace(ds, train=Split(ds.train.images[:2560], ds.train.labels[:2560])),
                      device, precision)
        return striate_epoch(ds, device, precision)
    per_sample = FashionMNIST(ds.train.images.numpy(), ds.train.labels.numpy(), mean, std)
    workers = 0 if name == "baseline_workers0" else 2
    baseline_epoch(per_sample, workers, limit=20, device=device)
    return baseline_epoch(per_sample, workers, device=device)


def run_one(name: str, device: str) -> float:
    done = subprocess.run([sys.executable, __file__, "--one", name, "--device", device],
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions (one epoch of each variant)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu (the issue's measurement) or cuda (a lent GPU; adds striate_fp32)")
    parser.add_argument("--one", choices=CUDA_VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(measure_one(args.one, args.device))
        return
    began = time.perf_counter()
    names = CUDA_VARIANTS if args.device == "cuda" else VARIANTS
    variants = {name: (lambda n=name: run_one(n, args.device)) for name in names}

    rates: dict[str, list[float]] = {name: [] for name in variants}
    other_cpu: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    for rep in range(args.reps):
        for name in order[rep % len(order):] + order[:rep % len(order)]:  # rotate the order each repetition
            start = cpu_seconds()
            rates[name].append(round(variants[name](), 1))
            other_cpu[name].append(other_cpu_since(start))

    # A repetition is "quiet" when other programs took under QUIET_CPU_S CPU seconds in each of its measurements.
    quiet = [i for i in range(args.reps) if all(other_cpu[name][i] < QUIET_CPU_S for name in variants)]

    def ratios(base: str, ours: str = "striate") -> dict[str, object]:
        per_rep = [round(s / b, 3) for s, b in zip(rates[ours], rates[base])]
        return {"per_repetition": per_rep, "median": statistics.median(per_rep),
                "ratio_of_medians": round(statistics.median(rates[ours]) / statistics.median(rates[base]), 3),
                "median_quiet_repetitions": statistics.median([per_rep[i] for i in quiet]) if quiet else None}

    print(json.dumps({
        "benchmark": "train_throughput",
        "command": command_line(),
        "what": f"training samples/s, LeNet-5, Fashion-MNIST train split (60,000 images), batch 128, {args.device}, "
                "SGD lr 0.05 momentum 0.9 nesterov wd 5e-4, one full epoch per measurement",
        "repetitions": args.reps,
        "samples_per_s": rates,
        "median_samples_per_s": {name: statistics.median(v) for name, v in rates.items()},
        "other_programs_cpu_seconds": other_cpu,
        "quiet_repetitions": quiet,
        "striate_over_baseline_workers0": ratios("baseline_workers0"),
        "striate_over_baseline_workers2": ratios("baseline_workers2"),
        **({"striate_fp32_over_baseline_workers0": ratios("baseline_workers0", "striate_fp32"),
            "gpu": torch.cuda.get_device_name(0)} if args.device == "cuda" else {}),
        "striate_defaults": {"channels_last": TrainConfig().channels_last, "precision": TrainConfig().precision,
                             "sgd_fused": build_optimizer(models.create("lenet5"), TrainConfig()).defaults.get("fused"),
                             "weight_decay_on_biases": False},
        "git": git_state(),
        "torch": torch.__version__,
        "striate": getattr(striate, "__version__", "unknown"),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "total_seconds": round(time.perf_counter() - began, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
