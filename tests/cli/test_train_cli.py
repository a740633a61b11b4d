"""`striate train` at 80 columns: checks before printing, a compact config, names that do not mislead,
a line for every slow set-up step (issue 11, items 1, 2 and 8)."""

from __future__ import annotations

import json
import re

import pytest

from striate import models
from striate.cli.progress import SlowSteps
from striate.config import TrainConfig
from striate.tracking.store import open_store
from striate.train.session import new_session
from tests.conftest import run_cli

NARROW = {"COLUMNS": "80"}


def test_a_bad_model_is_one_line_with_no_config_printed_first(synthetic_data, tmp_path):
    done = run_cli("train", "no-such-model", "--data", str(synthetic_data), "--store", str(tmp_path / "s"),
                   env=NARROW)
    assert done.returncode == 2
    assert done.stdout == "", "nothing is printed before the input is checked"
    assert len(done.stderr.strip().splitlines()) == 1 and "unknown model 'no-such-model'" in done.stderr


def test_the_config_printout_is_the_changes_in_80_columns_and_the_name_leads_with_the_model(synthetic_data, tmp_path):
    store = tmp_path / "s"
    done = run_cli("train", "lenet5", "--data", str(synthetic_data), "--epochs", "1", "--lr", "0.02",
                   "--batch-size", "64", "--store", str(store), "--no-progress", env=NARROW)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("config: "))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("epoch "))
    assert all(len(line) <= 80 for line in lines[:end]), [line for line in lines[:end] if len(line) > 80]
    # Only epoch lines and commands to copy may be longer: they are never broken by a newline (the
    # terminal folds them), so a pasted command stays whole.
    long = [line for line in lines if len(line) > 80]
    assert all(line.startswith(("epoch ", "look at it again", "all runs")) for line in long), long
    config_text = " ".join(lines[start:end])
    assert end - start <= 3, lines[start:end]  # the long temporary data path takes a line of its own
    for shown in ("model=lenet5", f"data={synthetic_data}", "epochs=1", "lr=0.02", "batch_size=64"):
        assert any(shown in line for line in lines[start:end]), f"{shown} is not whole on one line"
    assert "momentum=" not in config_text and "seed=" not in config_text, "defaults are not repeated"

    record = open_store(store).list_runs()[0]
    assert record.name.startswith("lenet5-") and record.name.endswith(record.id[:4])
    words = record.name.split("-")[1:-1]
    borrowed = {w for w in words for name in models.names() if w in name.replace("-", "") or name.startswith(w)}
    assert not borrowed, f"{record.name} borrows an architecture's name"


def test_a_spec_model_leads_its_run_name_by_the_file_stem():
    from striate.tracking.run import _default_name

    assert _default_name("1a2b3c4d" * 4, "nets/My CNN.yaml").startswith("my-cnn-")
    assert re.fullmatch(r"[a-z]+-[a-z]+-1a2b", _default_name("1a2b3c4d" * 4))


@pytest.mark.parametrize("args", [["--help"], ["runs", "--help"], ["train", "--help"], ["models", "--help"],
                                  ["tag", "--help"]], ids=lambda a: " ".join(a))
def test_help_shows_no_type_after_flags(args):
    done = run_cli(*args, env=NARROW)
    assert done.returncode == 0
    assert "<bool>" not in done.stdout and "--help" in done.stdout


def test_slow_steps_name_only_what_takes_longer_than_the_threshold(capsys):
    with SlowSteps(after_s=3600)("loading quickly"):
        pass
    with SlowSteps(after_s=0.0)("loading slowly"):
        pass
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.splitlines() == ["loading slowly…"]


def test_the_session_names_its_set_up_steps(synthetic_data, tmp_path):
    heard: list[str] = []

    class Recorder:
        def __call__(self, message: str):
            import contextlib

            heard.append(message)
            return contextlib.nullcontext()

    # At an image size other than the record's, the multiply-adds are counted on the model.
    config = TrainConfig(data=str(synthetic_data), epochs=1, image_size=36)
    session = new_session(config, str(tmp_path / "s"), status=Recorder())
    assert heard == [f"loading {synthetic_data}"]
    session.run()
    assert heard == [f"loading {synthetic_data}", "capturing the environment", "counting multiply-adds"]
    # At the record's size nothing is counted: the record has the figure.
    heard.clear()
    new_session(TrainConfig(data=str(synthetic_data), epochs=1), str(tmp_path / "s"), status=Recorder()).run()
    assert "counting multiply-adds" not in heard
    summary = open_store(tmp_path / "s").list_runs()[0].summary
    assert summary["multiply_adds_per_image"] == 416_520


def test_train_json_output_stays_json_at_80_columns(synthetic_data, tmp_path):
    done = run_cli("train", "--data", str(synthetic_data), "--epochs", "1", "--store", str(tmp_path / "s"),
                   "--json", env=NARROW)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "finished"
