"""The GPU path: CUDA training with bf16 autocast and channels_last, determinism, portability.

These run only where a CUDA GPU is present (a lent GPU machine); CI has none and skips them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from striate import models
from striate.config import TrainConfig
from striate.data.loader import DeviceBatches, load_dataset
from striate.tracking.run import init
from striate.tracking.store import open_store
from striate.train import checkpoint as ckpt
from striate.train.engine import autocast_for, resolve_precision, train
from tests.conftest import run_cli

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def quick(data: Path, **kw) -> TrainConfig:
    base = {"data": str(data), "epochs": 3, "batch_size": 32, "lr": 0.05, "log_every": 5, "eval_batch_size": 64,
            "device": "cuda"}
    return TrainConfig.from_mapping({**base, **kw})


def test_bf16_autocast_on_cuda():
    cuda = torch.device("cuda")
    with autocast_for(resolve_precision(TrainConfig(device="cuda"), cuda, 200e6), cuda)():
        out = torch.nn.Linear(8, 8).cuda()(torch.randn(4, 8, device="cuda"))
    assert out.dtype == torch.bfloat16
    with autocast_for(resolve_precision(TrainConfig(device="cuda"), cuda, 416_520), cuda)():  # LeNet-5's size
        out = torch.nn.Linear(8, 8).cuda()(torch.randn(4, 8, device="cuda"))
    assert out.dtype == torch.float32


def test_device_batches_live_on_the_gpu_and_match_the_cpu(synthetic_data):
    data = load_dataset(str(synthetic_data))
    mean, std = data.pixel_stats()
    options = {"batch_size": 64, "mean": mean, "std": std, "channels_last": True}
    gpu = next(iter(DeviceBatches(data.test, device=torch.device("cuda"), **options).epoch(0)))
    cpu = next(iter(DeviceBatches(data.test, device=torch.device("cpu"), **options).epoch(0)))
    assert gpu[0].device.type == "cuda" and gpu[1].device.type == "cuda"
    assert gpu[0].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(gpu[0].cpu(), cpu[0])
    assert torch.equal(gpu[1].cpu(), cpu[1])


def test_cuda_training_learns_records_and_saves_fp32_weights(synthetic_data, tmp_path):
    config = quick(synthetic_data)
    store = open_store(tmp_path / "store")
    run = init(project="t", config=config.to_dict(), store=store, model=config.model)
    result = train(config, run=run)
    run.finish(result.status)
    assert result.status == "finished"
    assert result.test_acc1 is not None and result.test_acc1 > 0.5, "the bars are easy to tell apart"
    record = store.get_run(run.id)
    assert record.summary["device"].startswith("cuda") and record.summary["precision"] == "fp32"
    assert torch.cuda.get_device_name(0) in json.dumps(record.environment), "the run names the GPU it used"
    weights = load_file(str(Path(store.artifact_root) / run.id / "model.safetensors"))
    assert all(t.device.type == "cpu" and t.dtype == torch.float32 for t in weights.values())
    model = models.create("lenet5", num_classes=10, in_channels=1)
    model.load_state_dict(weights)  # a GPU run's weights load on a CPU-only machine
    assert ckpt.weights_hash(weights) == result.weights_hash


@pytest.mark.parametrize("model", ["alexnet", "vgg11-bn", "googlenet"])
def test_imagenet_era_models_train_on_cuda(synthetic_data, tmp_path, model):
    config = quick(synthetic_data, model=model, epochs=1, model_options={"small_input": True})
    run = init(project="t", config=config.to_dict(), store=tmp_path / "store", model=config.model)
    result = train(config, run=run)
    run.finish(result.status)
    assert result.status == "finished" and result.test_acc1 is not None
    assert open_store(tmp_path / "store").get_run(run.id).summary["precision"] == "bf16"
    assert result.test_loss is not None and torch.isfinite(torch.tensor(result.test_loss))


def test_deterministic_cuda_runs_are_bit_identical(synthetic_data):
    a = train(quick(synthetic_data, epochs=1, seed=3, crop_padding=2, flip=True, deterministic="on"))
    b = train(quick(synthetic_data, epochs=1, seed=3, crop_padding=2, flip=True, deterministic="on"))
    assert a.weights_hash == b.weights_hash


def test_reproduce_on_cuda_through_the_cli(synthetic_data, tmp_path):
    store = tmp_path / "store"
    # A process of its own, like the reproduction: cuBLAS reads CUBLAS_WORKSPACE_CONFIG once per process,
    # and the tests above have already used cuBLAS in this one.
    done = run_cli("train", "--data", str(synthetic_data), "--store", str(store), "--epochs", "2",
                   "--batch-size", "32", "--device", "cuda", "--deterministic", "on", "--seed", "5",
                   "--no-progress", "--json", subprocess=True)
    assert done.returncode == 0, done.stderr
    original = json.loads(done.stdout)["id"]
    done = run_cli("reproduce", original[:8], "--verify", "--store", str(store), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["verdict"]["verdict"] == "identical"
