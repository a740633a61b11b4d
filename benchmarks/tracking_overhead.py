"""Overhead of run tracking: striate's training samples/s with tracking on vs off.

LeNet-5 on real Fashion-MNIST (60,000 training images), batch 128, CPU, constant lr 0.05,
2 epochs per run, default ``log_every`` (50 steps).

- off: ``train(config, run=None)`` (nothing is logged or saved).
- on:  ``run = striate.tracking.run.init(project="bench", config=config.to_dict(), store=<temp dir>)``,
  ``train(config, run=run)`` with ``checkpoint=True`` (a checkpoint per epoch, as users get),
  then ``run.finish()``.

Reported per run: ``train_samples_per_s`` (training steps only, what the engine reports) and
end-to-end samples/s (training samples / seconds from calling ``train`` to the end of
``finish()``, so evaluation, checkpoints and the final model save are included; equal work
in both modes apart from tracking). One process, on/off interleaved in rotated order after an
untimed warm-up. Also reports, per measurement, the CPU seconds other programs used meanwhile
(0 on a quiet machine).
Repetitions where that stayed under 1 s for every measurement count as quiet; medians over
them are reported too. Prints one JSON object.

Command: cd /work/main && .venv/bin/python benchmarks/tracking_overhead.py [--reps 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time

import torch
from _machine import command_line, cpu_model, cpu_seconds, git_state, other_cpu_since

from striate.config import TrainConfig
from striate.data import load_dataset
from striate.data.loader import Split
from striate.tracking import run as tracking
from striate.train.engine import train

EPOCHS = 2
QUIET_CPU_S = 1.0


def measure(config: TrainConfig, ds, store: str | None) -> dict[str, float]:
    """One run, tracked into ``store`` or untracked (store None)."""
    start = time.perf_counter()
    run = tracking.init(project="bench", config=config.to_dict(), store=store) if store else None
    result = train(config, run=run, dataset=ds)
    if run is not None:
        run.finish()
    seconds = time.perf_counter() - start
    return {"train_samples_per_s": round(result.train_samples_per_s, 1),
            "end_to_end_samples_per_s": round(EPOCHS * len(ds.train) / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions (one run of each mode)")
    args = parser.parse_args()
    began = time.perf_counter()

    ds = load_dataset("fashion-mnist")
    config = TrainConfig(model="lenet5", data="fashion-mnist", epochs=EPOCHS, batch_size=128, schedule="constant",
                         lr=0.05, device="cpu", checkpoint=True)
    with tempfile.TemporaryDirectory(prefix="striate-bench-") as store:
        small = dataclasses.replace(ds, train=Split(ds.train.images[:2560], ds.train.labels[:2560]))
        measure(config, small, None)  # warm-up (untimed), also creates the store
        measure(config, small, store)

        runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
        other_cpu: dict[str, list[float]] = {"off": [], "on": []}
        for rep in range(args.reps):
            for mode in (("off", "on") if rep % 2 == 0 else ("on", "off")):
                start = cpu_seconds()
                runs[mode].append(measure(config, ds, store if mode == "on" else None))
                other_cpu[mode].append(other_cpu_since(start))

    # A repetition is "quiet" when other programs took under QUIET_CPU_S CPU seconds in both of its runs.
    quiet = [i for i in range(args.reps) if other_cpu["off"][i] < QUIET_CPU_S and other_cpu["on"][i] < QUIET_CPU_S]
    figures = {}
    for metric in ("train_samples_per_s", "end_to_end_samples_per_s"):
        off = [r[metric] for r in runs["off"]]
        on = [r[metric] for r in runs["on"]]
        per_rep = [round(100 * (b - a) / a, 2) for a, b in zip(off, on)]
        figures[metric] = {
            "off": off, "on": on,
            "median_off": statistics.median(off), "median_on": statistics.median(on),
            "on_vs_off_percent_per_repetition": per_rep,
            "on_vs_off_percent_median_of_repetitions": statistics.median(per_rep),
            "on_vs_off_percent_of_medians": round(100 * (statistics.median(on) / statistics.median(off) - 1), 2),
            "on_vs_off_percent_median_quiet_repetitions": statistics.median([per_rep[i] for i in quiet]) if quiet
            else None,
        }

    print(json.dumps({
        "benchmark": "tracking_overhead",
        "command": command_line(),
        "what": f"striate training samples/s with tracking on (SQLite store in a temp dir, checkpoint per epoch) "
                f"vs off; LeNet-5, Fashion-MNIST 60,000 train images, batch 128, {EPOCHS} epochs per run, CPU; "
                f"negative percent = tracking is slower",
        "repetitions": args.reps,
        "log_every": config.log_every,
        **figures,
        "other_programs_cpu_seconds": other_cpu,
        "quiet_repetitions": quiet,
        "git": git_state(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "total_seconds": round(time.perf_counter() - began, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
