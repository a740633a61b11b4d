"""Test accuracy of the registered CNNs on the real Fashion-MNIST, within a stated training budget.

    .venv/bin/python benchmarks/fashion_quality.py --plan cpu-reduced     # this 2-core machine
    .venv/bin/python benchmarks/fashion_quality.py --plan gpu-full        # a lent GPU (device tool)

Every entry trains through striate's engine on the full 10,000-image test split and records the
run in a temporary store; the JSON output lists model, settings, budget, accuracy and time.
``--train-subset N`` entries train on the first N training images only (a reduced budget).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time

import torch
from _machine import command_line

from striate.config import TrainConfig
from striate.data import load_dataset
from striate.data.loader import Split
from striate.tracking.run import init
from striate.train.engine import train
from striate.train.events import Callback


class EpochLines(Callback):
    """One line per epoch, so a run cut short by a time limit still shows how far it got."""

    def __init__(self, model: str, began: float) -> None:
        self.model, self.began = model, began

    def on_epoch(self, state, event) -> None:
        print(json.dumps({"model": self.model, "epoch": event.epoch, "test_acc1": round(event.evaluation.top1, 4),
                          "seconds": round(time.perf_counter() - self.began, 1)}), file=sys.stderr, flush=True)

SMALL = {"small_input": True}
PLANS: dict[str, list[dict]] = {
    # What fits in ~25 minutes on 2 CPU cores: LeNet-5 in full, the ImageNet-era networks reduced.
    "cpu-reduced": [
        {"model": "lenet5", "epochs": 30, "lr": 0.05, "crop_padding": 2, "flip": True},
        {"model": "alexnet", "epochs": 2, "lr": 0.02, "model_options": SMALL, "batch_size": 128},
        {"model": "vgg16", "epochs": 1, "lr": 0.01, "model_options": SMALL, "batch_size": 128,
         "train_subset": 30_000},
        {"model": "vgg16-bn", "epochs": 1, "lr": 0.05, "model_options": SMALL, "batch_size": 128,
         "train_subset": 20_000},
        {"model": "googlenet-bn", "epochs": 1, "lr": 0.05, "model_options": SMALL, "batch_size": 128,
         "train_subset": 12_000},
    ],
    # The targets: alexnet >= 92 %, vgg16 >= 94 %, googlenet >= 94 % (GPU, bf16 autocast).
    "gpu-full": [
        {"model": "alexnet", "epochs": 30, "lr": 0.02, "model_options": SMALL, "crop_padding": 2, "flip": True},
        {"model": "vgg16", "epochs": 30, "lr": 0.01, "model_options": SMALL, "crop_padding": 2, "flip": True,
         "label_smoothing": 0.1},
        {"model": "googlenet", "epochs": 30, "lr": 0.05, "model_options": SMALL, "crop_padding": 2, "flip": True,
         "label_smoothing": 0.1},
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", choices=sorted(PLANS), default="cpu-reduced")
    parser.add_argument("--only", help="run only this model of the plan")
    args = parser.parse_args()
    full = load_dataset("fashion-mnist")
    results = []
    with tempfile.TemporaryDirectory() as store:
        for entry in PLANS[args.plan]:
            if args.only and entry["model"] != args.only:
                continue
            settings = dict(entry)
            subset = settings.pop("train_subset", None)
            data = full if subset is None else dataclasses.replace(
                full, train=Split(full.train.images[:subset], full.train.labels[:subset]))
            config = TrainConfig.from_mapping({"data": "fashion-mnist", "schedule": "onecycle", "seed": 0,
                                               "checkpoint": False, **settings})
            run = init(project="fashion-quality", config=config.to_dict(), store=store, model=config.model)
            start = time.perf_counter()
            result = train(config, run=run, dataset=data, callbacks=[EpochLines(config.model, start)])
            run.finish(result.status)
            results.append({"model": config.model, "settings": entry, "train_images": len(data.train),
                            "test_images": len(data.test), "test_acc1": result.test_acc1,
                            "best_test_acc1": result.best_test_acc1, "test_acc5": result.test_acc5,
                            "train_seconds": round(result.train_seconds, 1),
                            "wall_seconds": round(time.perf_counter() - start, 1),
                            "samples_per_s": round(result.train_samples_per_s, 1)})
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    print(json.dumps({"benchmark": "fashion_quality", "plan": args.plan, "command": command_line(),
                      "device": device, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
