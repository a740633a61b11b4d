"""The one training session and the engine's events: every door maps outcomes to statuses the same way."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from striate import models
from striate.config import TrainConfig
from striate.tracking.store import open_store
from striate.train import checkpoint as ckpt
from striate.train import pretrained as pretrained_module
from striate.train import resume as resume_module
from striate.train.events import Callback
from striate.train.session import new_session, resume_session


def quick(data: Path, **kw) -> TrainConfig:
    base = {"data": str(data), "epochs": 2, "batch_size": 32, "lr": 0.05, "log_every": 5, "eval_batch_size": 64}
    return TrainConfig.from_mapping({**base, **kw})


class Recorder(Callback):
    """Writes down every event it hears, in order."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def on_start(self, state):
        self.events.append(("start", state.position.global_step, state.total_steps))

    def on_step(self, state, event):
        self.events.append(("step", event.global_step, event.epoch, event.batch, event.loss is not None))

    def on_epoch(self, state, event):
        self.events.append(("epoch", event.epoch, round(event.evaluation.top1, 6)))

    def on_end(self, state, status):
        self.events.append(("end", status))


def test_events_arrive_in_order_once_each(synthetic_data, tmp_path):
    recorder = Recorder()
    result = new_session(quick(synthetic_data), str(tmp_path / "s")).run(callbacks=[recorder])
    kinds = [e[0] for e in recorder.events]
    assert kinds == ["start"] + ["step"] * 10 + ["epoch"] + ["step"] * 10 + ["epoch", "end"]  # 320 images / 32
    assert recorder.events[0] == ("start", 0, 20)
    steps = [e for e in recorder.events if e[0] == "step"]
    assert [s[1] for s in steps] == list(range(1, 21))
    assert [s[3] for s in steps[:10]] == list(range(1, 11))
    # figures only at logging steps (every 5th, and each epoch's last)
    assert [s[1] for s in steps if s[4]] == [5, 10, 15, 20]
    assert recorder.events[-2][2] == round(result.test_acc1, 6)
    assert recorder.events[-1] == ("end", "finished")


def test_a_stop_request_ends_the_run_stopped_with_its_reason(synthetic_data, tmp_path):
    class StopAtStep(Callback):
        def on_step(self, state, event):
            if event.global_step == 13:
                state.request_stop("pruned by the sweep")

    recorder = Recorder()
    result = new_session(quick(synthetic_data, epochs=3), str(tmp_path / "s")).run([StopAtStep(), recorder])
    assert result.status == "stopped" and result.epochs_completed == 1
    assert recorder.events[-1] == ("end", "stopped")
    assert max(e[1] for e in recorder.events if e[0] == "step") == 13
    record = open_store(tmp_path / "s").get_run(result.run_id)
    assert record.status == "stopped" and record.summary["stop_reason"] == "pruned by the sweep"
    assert record.summary["last_checkpoint"]["weights"] == "checkpoints/epoch-001.safetensors"


@pytest.mark.parametrize(("raised", "status"), [
    (SystemExit(0), "finished"), (SystemExit(None), "finished"), (SystemExit(3), "failed"),
    (RuntimeError("boom"), "failed"), (KeyboardInterrupt(), "stopped")])
def test_outcomes_map_to_one_status_everywhere(synthetic_data, tmp_path, raised, status):
    class Raise(Callback):
        def on_end(self, state, end_status):
            if end_status == "finished":  # after the loop: the engine does not catch it
                raise raised

    session = new_session(quick(synthetic_data, epochs=1, checkpoint=False), str(tmp_path / "s"))
    with pytest.raises(type(raised)):
        session.run([Raise()])
    (record,) = open_store(tmp_path / "s").list_runs()
    assert record.status == status
    if status == "failed":
        assert record.error and type(raised).__name__ in record.error


def test_the_progress_bar_closes_when_training_fails(synthetic_data, tmp_path):
    from striate.cli.progress import ProgressBar

    class Boom(Callback):
        def on_step(self, state, event):
            raise RuntimeError("boom")

    bar = ProgressBar(bar=True, echo=True)
    with pytest.raises(RuntimeError):
        new_session(quick(synthetic_data, epochs=1), str(tmp_path / "s")).run([bar, Boom()])
    assert bar._progress is None
    (record,) = open_store(tmp_path / "s").list_runs()
    assert record.status == "failed" and "boom" in record.error


def test_pretrained_weights_are_read_once(synthetic_data, tmp_path, monkeypatch):
    path = tmp_path / "w.pth"
    torch.save(models.create("lenet5", num_classes=7).state_dict(), path)
    reads: list[Path] = []
    real = pretrained_module.read_state_dict
    monkeypatch.setattr(pretrained_module, "read_state_dict", lambda p: reads.append(p) or real(p))
    result = new_session(quick(synthetic_data, epochs=1, pretrained=str(path)), str(tmp_path / "s")).run()
    assert result.status == "finished" and reads == [path]


def test_resume_reads_its_checkpoint_once_and_continues(synthetic_data, tmp_path, monkeypatch):
    class StopAfterEpoch1(Callback):
        def on_epoch(self, state, event):
            state.request_stop("test")

    store = str(tmp_path / "s")
    first = new_session(quick(synthetic_data, epochs=2), store).run([StopAfterEpoch1()])
    assert first.status == "stopped"
    loads: list[str] = []
    real_state, real_weights = ckpt.load_training_state, resume_module.load_file
    monkeypatch.setattr(ckpt, "load_training_state", lambda p: loads.append("state") or real_state(p))
    monkeypatch.setattr(resume_module, "load_file", lambda p: loads.append("weights") or real_weights(p))
    recorder = Recorder()
    result = resume_session(store, first.run_id).run([recorder])
    assert result.status == "finished" and result.epochs_completed == 2
    assert sorted(loads) == ["state", "weights"]
    assert recorder.events[0] == ("start", 10, 20)  # the bar and subscribers start where the run stopped
    assert open_store(store).get_run(first.run_id).status == "finished"


def test_bad_input_fails_before_a_run_exists(synthetic_data, tmp_path):
    from striate.errors import StriateError

    for bad in ({"model": "lenet55"}, {"data": str(tmp_path / "nowhere")},
                {"pretrained": str(tmp_path / "missing.pth")}):
        with pytest.raises(StriateError):
            new_session(quick(**{"data": synthetic_data, **bad}), str(tmp_path / "s"))
    assert open_store(tmp_path / "s").list_runs() == []


def test_a_diverging_loss_fails_the_run_with_a_clear_error(synthetic_data, tmp_path):
    from striate.errors import TrainingError

    session = new_session(quick(synthetic_data, lr=1e30, schedule="constant", checkpoint=False), str(tmp_path / "s"))
    with pytest.raises(TrainingError, match=r"training diverged: the loss became (nan|inf) by step \d+"):
        session.run()
    (record,) = open_store(tmp_path / "s").list_runs()
    assert record.status == "failed" and "training diverged" in record.error


@pytest.mark.parametrize("occupied", ["checkpoints/epoch-001.safetensors", "checkpoints"])
def test_a_checkpoint_that_cannot_be_written_fails_the_run_with_one_error(synthetic_data, tmp_path, occupied):
    from striate.errors import TrainingError

    class OccupyTheCheckpointPath(Callback):  # as a full disk would, the write of epoch 1's weights fails
        def on_start(self, state):
            target = state.run.artifact_dir / occupied
            target.parent.mkdir(parents=True, exist_ok=True)
            if occupied.endswith(".safetensors"):
                target.mkdir()  # a folder where the file goes
            else:
                target.write_text("x")  # a file where the folder goes

    session = new_session(quick(synthetic_data, epochs=1), str(tmp_path / "s"))
    with pytest.raises(TrainingError, match=r"cannot write .*epoch-001.safetensors: .*free disk space"):
        session.run([OccupyTheCheckpointPath()])
    (record,) = open_store(tmp_path / "s").list_runs()
    assert record.status == "failed" and "cannot write" in record.error
    folder = tmp_path / "s" / "artifacts" / record.id / "checkpoints"
    assert not folder.is_dir() or not list(folder.glob(".*.tmp"))


def test_striate_train_is_callable_every_time_whatever_was_imported_first(synthetic_data, tmp_path):
    import subprocess
    import sys

    script = f"""
import striate
from striate.train.events import Callback  # binds striate.train to the package before any call
from striate.config import TrainConfig
config = TrainConfig.from_mapping({{"data": {str(synthetic_data)!r}, "epochs": 1, "batch_size": 64,
                                   "checkpoint": False}})
a = striate.train(config)
b = striate.train(config, callbacks=[Callback()])
print(a.status, b.status, a.weights_hash == b.weights_hash)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["finished", "finished", "True"]
