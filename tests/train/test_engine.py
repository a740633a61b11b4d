from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from striate import models
from striate.config import TrainConfig
from striate.data.loader import load_dataset
from striate.tracking.run import init
from striate.tracking.store import open_store
from striate.train import checkpoint as ckpt
from striate.train.engine import resolve_precision, train
from striate.train.events import Callback


def quick(data: Path, **kw) -> TrainConfig:
    base = {"data": str(data), "epochs": 3, "batch_size": 32, "lr": 0.05, "log_every": 5, "eval_batch_size": 64}
    return TrainConfig.from_mapping({**base, **kw})


def test_training_learns_and_records_everything(synthetic_data, tmp_path):
    config = quick(synthetic_data)
    store = open_store(tmp_path / "store")
    run = init(project="t", config=config.to_dict(), store=store, model=config.model)
    result = train(config, run=run)
    run.finish(result.status)
    assert result.status == "finished" and result.epochs_completed == 3
    assert result.test_acc1 is not None and result.test_acc1 > 0.5, "the bars are easy to tell apart"
    assert result.test_acc5 >= result.test_acc1
    assert len(result.confusion) == 10 and sum(map(sum, result.confusion)) == 80
    record = store.get_run(run.id)
    assert record.status == "finished"
    assert record.summary["test_acc1"] == pytest.approx(result.test_acc1)
    assert record.summary["parameters"] == 61_706
    assert record.summary["precision"] == "fp32" and record.summary["multiply_adds_per_image"] == 416_520
    assert record.dataset["fingerprint"] == load_dataset(str(synthetic_data)).fingerprint
    assert {"train/loss", "test/acc1", "test/acc5", "test/loss", "lr", "epoch"} <= set(record.metrics)
    assert record.metrics["epoch"]["count"] == 3
    assert len(store.history(run.id, "train/loss")) == (3 * 10) // 5
    paths = {a["path"]: a for a in record.artifacts}
    for epoch in (1, 2, 3):
        assert f"checkpoints/epoch-{epoch:03d}.safetensors" in paths
    assert "model.safetensors" in paths and "confusion_matrix.json" in paths
    final = Path(store.artifact_root) / run.id / "model.safetensors"
    assert ckpt.weights_hash(load_file(str(final))) == result.weights_hash == record.summary["weights_hash"]
    state = ckpt.load_training_state(Path(store.artifact_root) / run.id / "checkpoints" / "epoch-003.state.pt")
    assert state["position"]["epoch"] == 4 and state["position"]["batches_done"] == 0  # resumes at epoch 4
    assert state["position"]["global_step"] == 30 and "optimizer" in state and "rng" in state


def test_seeded_runs_are_bit_identical(synthetic_data):
    a = train(quick(synthetic_data, epochs=1, seed=3, crop_padding=2, flip=True))
    b = train(quick(synthetic_data, epochs=1, seed=3, crop_padding=2, flip=True))
    c = train(quick(synthetic_data, epochs=1, seed=4, crop_padding=2, flip=True))
    assert a.weights_hash == b.weights_hash
    assert a.weights_hash != c.weights_hash


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("schedule", ["constant", "step", "cosine", "onecycle"])
def test_optimizers_and_schedules_train(synthetic_data, optimizer, schedule):
    lr = 0.05 if optimizer == "sgd" else 0.003
    result = train(quick(synthetic_data, epochs=2, optimizer=optimizer, schedule=schedule, lr=lr,
                         label_smoothing=0.1))
    assert result.test_acc1 is not None and result.test_loss == result.test_loss  # not NaN
    assert result.test_acc1 > 0.2


def test_schedules_shape_the_learning_rate(synthetic_data, tmp_path):
    store = open_store(tmp_path / "s")
    lrs = {}
    for schedule in ("constant", "cosine", "onecycle", "step"):
        config = quick(synthetic_data, epochs=3, schedule=schedule, log_every=1, checkpoint=False)
        run = init(config=config.to_dict(), store=store)
        train(config, run=run)
        run.finish()
        lrs[schedule] = store.history(run.id, "lr").values
    assert (lrs["constant"] == 0.05).all()
    assert lrs["cosine"][0] > lrs["cosine"][15] > lrs["cosine"][-1]
    assert lrs["onecycle"].argmax() not in (0, len(lrs["onecycle"]) - 1)
    assert sorted(set(lrs["step"].round(8)), reverse=True) == pytest.approx([0.05, 0.005, 0.0005])


def test_ctrl_c_stops_cleanly_and_keeps_the_last_checkpoint(synthetic_data, tmp_path):
    config = quick(synthetic_data, epochs=5)
    store = open_store(tmp_path / "s")
    run = init(config=config.to_dict(), store=store)

    class Interrupt(Callback):
        def on_epoch(self, state, event):
            if event.epoch == 2:
                raise KeyboardInterrupt

    result = train(config, run=run, callbacks=[Interrupt()])
    run.finish(result.status)
    assert result.status == "stopped" and result.epochs_completed == 2
    record = store.get_run(run.id)
    assert record.status == "stopped"
    assert "checkpoints/epoch-002.safetensors" in {a["path"] for a in record.artifacts}


def test_keep_checkpoints_prunes_old_epochs(synthetic_data, tmp_path):
    config = quick(synthetic_data, epochs=3, keep_checkpoints=1)
    store = open_store(tmp_path / "s")
    run = init(config=config.to_dict(), store=store)
    train(config, run=run)
    run.finish()
    folder = Path(store.artifact_root) / run.id / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["epoch-003.safetensors", "epoch-003.state.pt"]
    assert {a["path"] for a in store.get_run(run.id).artifacts if a["kind"] == "checkpoint"} == {
        "checkpoints/epoch-003.safetensors"}


def test_checkpoint_weights_load_into_a_fresh_model(synthetic_data, tmp_path):
    config = quick(synthetic_data, epochs=1)
    store = open_store(tmp_path / "s")
    run = init(config=config.to_dict(), store=store)
    train(config, run=run)
    run.finish()
    model = models.create("lenet5")
    ckpt.load_weights(model, Path(store.artifact_root) / run.id / "checkpoints" / "epoch-001.safetensors")
    assert model(torch.zeros(1, 1, 32, 32)).shape == (1, 10)


def test_pretrained_fine_tunes_with_another_class_count(synthetic_data, tmp_path):
    from striate.train.pretrained import load_pretrained

    source = models.create("lenet5", num_classes=7, in_channels=3)
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    target = models.create("lenet5", num_classes=10, in_channels=1)
    fresh = load_pretrained(target, path, num_classes=10)
    assert fresh == ["classifier.2.weight", "classifier.2.bias"]
    assert torch.equal(target.classifier[0].weight, source.classifier[0].weight)
    assert torch.allclose(target.features[0].weight, source.features[0].weight.sum(1, keepdim=True), atol=1e-6)
    result = train(quick(synthetic_data, epochs=1, pretrained=str(path)))
    assert result.status == "finished"


def test_pretrained_rejects_other_architectures_and_pickles(tmp_path):
    from striate.errors import ConfigError
    from striate.train.pretrained import load_pretrained

    path = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(6, 1, 3, 3)}, path)
    with pytest.raises(ConfigError, match="features.0.weight has shape"):
        load_pretrained(models.create("lenet5"), path, 10)
    evil = tmp_path / "evil.pth"
    torch.save({"x": object()}, evil)
    with pytest.raises(ConfigError, match="weights-only"):
        load_pretrained(models.create("lenet5"), evil, 10)
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"\xff" * 64)
    with pytest.raises(ConfigError, match="cannot read .* as a safetensors file"):
        load_pretrained(models.create("lenet5"), damaged, 10)
    empty = tmp_path / "empty.pth"
    torch.save({}, empty)
    with pytest.raises(ConfigError, match="holds no weights for this model"):
        load_pretrained(models.create("lenet5"), empty, 10)
    scalar = tmp_path / "scalar.pth"
    torch.save({"features.0.weight": torch.tensor(1.0)}, scalar)  # a 0-d tensor where a conv's weights go
    with pytest.raises(ConfigError, match=r"features.0.weight has 0 dimensions \(\) but the model needs"):
        load_pretrained(models.create("lenet5"), scalar, 10)


def test_a_bad_pretrained_file_leaves_no_run_behind(synthetic_data, tmp_path):
    from tests.conftest import run_cli

    empty = tmp_path / "empty.pth"
    torch.save({}, empty)
    done = run_cli("train", "--data", str(synthetic_data), "--store", str(tmp_path / "store"), "--epochs", "1",
                   "--pretrained", str(empty), "--no-progress")
    assert done.returncode == 2 and "holds no weights" in done.stderr
    assert open_store(tmp_path / "store").list_runs() == []


def test_per_class_accuracy_of_an_absent_class_is_none():
    from striate.train.metrics import EvalResult

    confusion = torch.tensor([[3, 1, 0], [0, 0, 0], [1, 0, 4]])
    result = EvalResult(loss=0.1, top1=0.7, top5=1.0, confusion=confusion)
    assert result.per_class_accuracy() == [0.75, None, 0.8]


@pytest.mark.parametrize("total", [1, 2, 3, 4, 6, 7, 30])
def test_one_cycle_warms_up_even_on_short_runs(total):
    from striate.train.optim import build_optimizer, build_schedule

    config = TrainConfig(lr=0.1, schedule="onecycle", epochs=1)
    optimizer = build_optimizer(models.create("lenet5"), config)
    schedule = build_schedule(optimizer, config, steps_per_epoch=total)
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    if total < 3:
        assert rates == [0.1] * total, "too short for a cycle: the peak rate throughout"
    else:
        assert rates[0] < 0.1 / 10, "the first step is a warm-up step, not the peak"
        assert max(rates) == pytest.approx(0.1, rel=0.01)


def test_image_size_resizes_on_the_device(synthetic_data):
    result = train(quick(synthetic_data, epochs=1, image_size=48))
    assert result.status == "finished" and result.test_acc1 is not None



def test_models_with_batch_norm_train_and_checkpoint(synthetic_data, tmp_path):
    # BatchNorm keeps a 0-d integer buffer (num_batches_tracked) that the weights hash must handle.
    spec = tmp_path / "bn.yaml"
    spec.write_text("input_size: 32\nlayers:\n  - conv: {out: 4, kernel: 3}\n  - batchnorm\n  - relu\n"
                    "  - pool: {kind: avg, output: 1}\n  - linear: classes\n")
    store = open_store(tmp_path / "s")
    config = quick(synthetic_data, epochs=1, model=str(spec))
    run = init(config=config.to_dict(), store=store)
    result = train(config, run=run)
    run.finish(result.status)
    state = load_file(str(Path(store.artifact_root) / run.id / "model.safetensors"))
    assert any(k.endswith("num_batches_tracked") for k in state)
    assert ckpt.weights_hash(state) == result.weights_hash


def test_auto_precision_depends_on_the_device_and_the_model_size():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU
    auto = TrainConfig()
    assert resolve_precision(auto, cpu, 2e9) == "fp32"
    assert resolve_precision(auto, cuda, 416_520) == "fp32", "LeNet-5 is faster in fp32 on a GPU"
    assert resolve_precision(auto, cuda, 190e6) == "bf16"
    assert resolve_precision(TrainConfig(precision="bf16"), cpu, 0) == "bf16"
    assert resolve_precision(TrainConfig(precision="fp32"), cuda, 2e9) == "fp32"
