"""The read commands at 80 columns and never silently wrong (issue 11, items 2, 3 and 9)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import striate
from striate.cli.compare_view import metric_chart
from striate.cli.report import print_train_summary
from striate.tracking.store import MetricSeries, RunRecord, open_store
from tests.conftest import run_cli

NARROW = {"COLUMNS": "80"}
LONG_NAMES = ("eb1-lenet5-baseline-long-name", "finetune-googlenet-cifar10-lr-sweep")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """Two runs with long names and a third that lacks `momentum` (a field some runs have)."""
    location = tmp_path / "store"
    for i, name in enumerate(LONG_NAMES):
        run = striate.init(name=name, config={"name": name, "lr": 0.05 * (i + 1), "optimizer": "sgd", "epochs": 3,
                                              "batch_size": 128, "momentum": 0.9}, store=location,
                           model="googlenet", system_metrics=False)
        for step, acc in enumerate([0.5, 0.7, 0.8 + i / 20]):
            run.log({"test/acc1": acc, "train/loss": 1 - acc}, step=(step + 1) * 469 // 2)
        run.finish()
    run = striate.init(name="plain", config={"lr": 0.1, "epochs": 1}, store=location, model="lenet5",
                       system_metrics=False)
    run.log({"test/acc1": 0.9}, step=469)
    run.finish()
    return location


def ids(location: Path) -> dict[str, str]:
    return {r.name: r.id for r in open_store(location).list_runs()}


# -- item 2: 80 columns ------------------------------------------------------------------------------
def test_runs_at_80_columns_shows_ids_and_names_whole_and_says_what_it_hid(store: Path) -> None:
    out = run_cli("runs", "--store", str(store), env=NARROW)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, out.stdout
    assert "…" not in out.stdout
    for name, run_id in ids(store).items():
        assert any(name in line and run_id[:8] in line for line in lines), (name, out.stdout)
    note = lines[-1]
    assert note.startswith("hidden") and "--columns" in note and "started" in note
    wide = run_cli("runs", "--store", str(store), env={"COLUMNS": "200"})
    assert "hidden" not in wide.stdout and "started" in wide.stdout and "optimizer" in wide.stdout


def test_chosen_columns_are_never_cut(store: Path) -> None:
    out = run_cli("runs", "--store", str(store), "--columns", "id,name,model,params.lr,params.optimizer,"
                  "metrics.test/acc1.max,metrics.train/loss.min,started,duration", env=NARROW)
    assert out.returncode == 0, out.stderr
    assert "…" not in out.stdout and all(name in out.stdout for name in LONG_NAMES)


def test_train_help_is_grouped_by_topic() -> None:
    out = run_cli("train", "--help", env=NARROW)
    assert out.returncode == 0
    for panel in ("Data and model", "Optimization", "Augmentation", "Hardware and determinism",
                  "Checkpoints and logging", "Run record"):
        assert panel in out.stdout
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and len(lines) < 131  # 131 lines before it was grouped


# -- item 3: never silently wrong ----------------------------------------------------------------------
@pytest.mark.parametrize(("where", "closest"), [("params.lrr > 0", "params.lr"),
                                                ("metrics.test/acc1.maximum > 0.8", "metrics.test/acc1.max"),
                                                ("status = finished and params.optimiser = sgd", "params.optimizer")])
def test_a_filter_on_a_field_no_run_has_names_the_closest(store: Path, where: str, closest: str) -> None:
    out = run_cli("runs", "--store", str(store), "--where", where)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "no run has" in out.stderr and f"did you mean {closest}?" in out.stderr


def test_a_sort_key_no_run_has_is_an_error(store: Path) -> None:
    out = run_cli("runs", "--store", str(store), "--sort", "-metrics.test/acc5.max")
    assert out.returncode == 2 and "in the sort key" in out.stderr


def test_a_field_some_runs_lack_is_fine_and_an_empty_result_says_so(store: Path) -> None:
    out = run_cli("runs", "--store", str(store), "--where", "params.momentum > 0.5", "--json")
    assert out.returncode == 0 and {r["name"] for r in json.loads(out.stdout)} == set(LONG_NAMES)
    empty = run_cli("runs", "--store", str(store), "--where", "params.momentum > 5")
    assert empty.returncode == 0 and empty.stdout.strip() == "no runs match --where 'params.momentum > 5'"
    columns = run_cli("runs", "--store", str(store), "--where", "params.momentum > 5", "--columns", "name")
    assert columns.stdout.strip() == "no runs match --where 'params.momentum > 5'"


def test_an_empty_store_says_so(tmp_path: Path) -> None:
    (tmp_path / "new").mkdir()
    out = run_cli("runs", "--store", str(tmp_path / "new"))
    assert out.returncode == 0 and out.stdout.strip() == "no runs in this store yet (`striate train` records one)"


def test_unknown_columns_are_named_as_columns(store: Path) -> None:
    out = run_cli("runs", "--store", str(store), "--columns", "name,paramz.lr")
    assert out.returncode == 2 and "unknown field 'paramz.lr' in --columns" in out.stderr
    out = run_cli("runs", "--store", str(store), "--columns", "name,params.lrr")
    assert out.returncode == 2 and "in --columns" in out.stderr and "did you mean params.lr?" in out.stderr


def test_compare_needs_two_runs(store: Path) -> None:
    for args in (["plain"], ["plain", "plain"]):
        out = run_cli("compare", *args, "--store", str(store))
        assert out.returncode == 2 and "two or more different runs" in out.stderr, out.stderr


def record(status: str, **summary: object) -> RunRecord:
    metrics = {"train/loss": {"last": 0.5, "min": 0.4, "max": 1.0, "count": 7, "last_step": 345},
               "epoch": {"last": 1, "min": 1, "max": 1, "count": 1, "last_step": 234}}
    return RunRecord(id="0123456789abcdef", name="lenet-a", project="p", status=status, created_at=1.0, ended_at=2.0,
                     heartbeat_at=2.0, config={"epochs": 5}, summary=dict(summary), metrics=metrics)


def test_a_stopped_run_says_where_it_stopped_and_how_to_continue(capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = {"weights": "checkpoints/step.safetensors", "state": "checkpoints/step.state.pt", "global_step": 345}
    print_train_summary(record("stopped", epochs_completed=1, test_acc1=0.8, best_test_acc1=0.8,
                               train_samples_per_s=0.0, stop_reason="interrupted (Ctrl-C)",
                               last_checkpoint=checkpoint), "elsewhere")
    text = " ".join(capsys.readouterr().out.split())
    assert "stopped in epoch 2/5 at step 345, interrupted (Ctrl-C)" in text and "((" not in text
    assert "after 1 epoch," in text and "1 epochs" not in text and "0 samples/s" not in text
    assert re.search(r"continue it: .*striate resume 01234567 --store elsewhere", text), text
    print_train_summary(record("stopped"), "striate-runs")
    text = " ".join(capsys.readouterr().out.split())
    assert "no epoch completed" in text and "test top-1 -" not in text
    print_train_summary(record("finished", epochs_completed=1, test_acc1=0.8), "striate-runs")
    text = " ".join(capsys.readouterr().out.split())
    assert "after 1 epoch" in text and "1 epochs" not in text and "resume" not in text


def test_show_of_a_stopped_run_gives_the_resume_command(tmp_path: Path) -> None:
    run = striate.init(name="halted", config={"epochs": 4}, store=tmp_path / "s", system_metrics=False)
    run.log({"train/loss": 0.5}, step=120)
    run.finish(status="stopped")
    out = run_cli("show", "halted", "--store", str(tmp_path / "s"), env=NARROW)
    assert "…" not in out.stdout
    text = " ".join(out.stdout.split())
    assert "stopped in epoch 1/4 at step 120" in text and "striate resume" not in text  # no checkpoint to resume from
    assert f"no checkpoint to resume from; run it again: python -m striate reproduce {run.id[:8]} --store" in text


# -- item 9: charts that read well ------------------------------------------------------------------------
def series(steps: list[int], values: list[float]) -> MetricSeries:
    return MetricSeries("test/acc1", np.array(steps), np.array(steps, dtype=float), np.array(values))


def test_one_point_runs_get_a_value_per_run_not_a_dot() -> None:
    a, b = (RunRecord(id=f"{c}" * 16, name=f"run-{c}", project="p", status="finished", created_at=1.0,
                           ended_at=2.0, heartbeat_at=2.0)
            for c in "ab")
    text = metric_chart([a, b], {a.id: series([469], [0.81]), b.id: series([469], [0.86])}, "test/acc1", width=80)
    assert "0.81 (step 469)" in text and "0.86 (step 469)" in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_chart_ticks_are_whole_steps_and_accuracy_stays_within_one() -> None:
    a, b = (RunRecord(id=f"{c}" * 16, name=f"run-{c}", project="p", status="finished", created_at=1.0,
                           ended_at=2.0, heartbeat_at=2.0)
            for c in "ab")
    text = metric_chart([a, b], {a.id: series([234, 469, 703], [0.5, 0.9, 0.99]),
                                 b.id: series([234, 469, 703], [0.4, 0.8, 0.97])}, "test/acc1", width=80)
    numbers = [float(n) for n in re.findall(r"\d+\.\d+", text)]
    assert numbers and max(numbers) <= 1.0, text
    tick_line = next(line for line in text.splitlines() if "234" in line and "703" in line)
    assert not re.search(r"\d\.\d", tick_line), tick_line
    legend = [line for line in text.splitlines() if "run-a" in line or "run-b" in line]
    assert "•" in legend[0] and "+" in legend[1], text  # each run its own marker, told apart without colour


def test_compare_marks_differences_without_colour_and_name_is_no_difference(store: Path) -> None:
    a, b = LONG_NAMES
    data = json.loads(run_cli("compare", a, b, "--store", str(store), "--json").stdout)
    assert data["differing_params"] == ["lr"]
    out = run_cli("compare", a, b, "--store", str(store), env={**NARROW, "NO_COLOR": "1"})
    assert out.returncode == 0, out.stderr
    assert "\x1b[" not in out.stdout
    assert re.search(r"\* lr\b", out.stdout) and "(* best)" in out.stdout
    assert "0.85*" in out.stdout  # the best final accuracy, marked in text
    assert max(len(line) for line in out.stdout.splitlines()) <= 80


def test_the_unknown_field_hint_when_nothing_is_close() -> None:
    from striate.tracking.query import Field, QueryError, check_known_fields

    with pytest.raises(QueryError, match="no run in this store records any params"):
        check_known_fields([Field("param", "lr")], set(), {"loss"}, "in the filter")
    with pytest.raises(QueryError, match="the metrics recorded are: loss"):
        check_known_fields([Field("metric", "zzzz")], {"lr"}, {"loss"}, "in the filter")
    check_known_fields([Field("param", "lr")], set(), set(), "in the filter")  # an empty store: nothing to check


# -- issue 11 review: long names, resume hints, copyable commands ---------------------------------------
@pytest.mark.parametrize("length", [60, 85, 150])
def test_runs_never_crops_a_long_name_nor_drops_the_id(tmp_path: Path, length: int) -> None:
    location = tmp_path / "s"
    name = "n" * (length - 1) + "z"
    run = striate.init(name=name, config={"lr": 0.1, "epochs": 1}, store=location, model="lenet5",
                       system_metrics=False)
    run.log({"test/acc1": 0.9}, step=1)
    run.finish()
    out = run_cli("runs", "--store", str(location), env=NARROW)
    assert out.returncode == 0, out.stderr
    assert name in out.stdout and run.id[:8] in out.stdout and "…" not in out.stdout, out.stdout
    assert re.search(rf"{run.id[:8]}\s+{name}", out.stdout), out.stdout
    if "hidden" in out.stdout:  # the note fits the width and names every hidden column
        note = out.stdout[out.stdout.index("hidden"):]
        assert all(len(line) <= 80 for line in note.splitlines()), note
        assert "id" not in note.split(":")[1].split(", ") and "started" in note
    else:  # one block per run: every column still there
        assert "started" in out.stdout and "best test acc 90.00%" in out.stdout


def test_resume_is_offered_only_with_a_checkpoint_and_says_what_it_redoes(
        capsys: pytest.CaptureFixture[str]) -> None:
    print_train_summary(record("crashed", epochs_completed=1), "striate-runs")
    text = " ".join(capsys.readouterr().out.split())
    assert "striate resume" not in text and "no checkpoint to resume from; run it again:" in text
    assert "striate reproduce 01234567" in text
    checkpoint = {"weights": "checkpoints/e.safetensors", "state": "checkpoints/e.state.pt", "global_step": 234}
    print_train_summary(record("stopped", epochs_completed=1, stopped_at_step=300, last_checkpoint=checkpoint,
                               stop_reason="interrupted (Ctrl-C)"), "striate-runs")
    text = " ".join(capsys.readouterr().out.split())
    assert "stopped in epoch 2/5 at step 300, interrupted (Ctrl-C)" in text, text
    assert "continue it from its checkpoint at step 234 (the 66 steps after it are redone):" in text
    assert "striate resume 01234567" in text


def test_printed_commands_are_never_broken_by_a_newline(tmp_path: Path) -> None:
    location = tmp_path / ("a-store-with-a-rather-long-path-name" * 2)
    run = striate.init(name="halted", config={"epochs": 4}, store=location, system_metrics=False)
    run.log({"train/loss": 0.5}, step=120)
    run.finish(status="stopped")
    out = run_cli("show", "halted", "--store", str(location), env=NARROW)  # captured: a pipe, not a tty
    assert f"python -m striate reproduce {run.id[:8]} --store {location}" in out.stdout.splitlines()[4], out.stdout
    from striate.cli.common import console

    record_ = open_store(location).get_run(run.id)
    with console.capture() as captured:
        print_train_summary(record_, str(location))
    lines = captured.get().splitlines()
    assert any(line.endswith(f"show {run.id[:8]} --store {location}") for line in lines), lines
    assert any(line.endswith(f"runs --store {location}") for line in lines), lines


def test_compare_with_a_metric_no_run_has_names_the_closest(store: Path) -> None:
    out = run_cli("compare", *LONG_NAMES, "--store", str(store), "--metric", "test/acc")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "'test/acc'" in out.stderr and "did you mean 'test/acc1'?" in out.stderr
    ok = run_cli("compare", *LONG_NAMES, "--store", str(store), "--metric", "train/loss", env=NARROW)
    assert ok.returncode == 0, ok.stderr


def test_columns_typos_and_empty_columns(store: Path) -> None:
    out = run_cli("runs", "--store", str(store), "--columns", "paramz.lr")
    assert out.returncode == 2 and "did you mean params.lr?" in out.stderr, out.stderr
    out = run_cli("runs", "--store", str(store), "--columns", "")
    assert out.returncode == 2 and "--columns names no column" in out.stderr, out.stderr


def test_epoch_lines_are_never_hard_wrapped(synthetic_data: Path, tmp_path: Path) -> None:
    out = run_cli("train", "--data", str(synthetic_data), "--epochs", "1", "--store", str(tmp_path / "s"),
                  "--no-progress", env=NARROW)
    assert out.returncode == 0, out.stderr
    (line,) = [line for line in out.stdout.splitlines() if line.startswith("epoch ")]
    assert "samples/s" in line, out.stdout


def test_show_keeps_metric_keys_and_artifact_paths_whole(tmp_path: Path) -> None:
    location = tmp_path / "s"
    run = striate.init(name="m", config={"epochs": 1}, store=location, system_metrics=False)
    run.log({"system/process_cpu_percent": 12.345678, "system/process_memory_rss_mb": 1234.5678}, step=10)
    art = tmp_path / "a.safetensors"
    art.write_bytes(b"x" * 100)
    run.log_artifact(art, "checkpoints/epoch-001-a-rather-long-name.safetensors", kind="checkpoint")
    run.finish()
    out = run_cli("show", "m", "--store", str(location), env=NARROW)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, out.stdout
    for whole in ("system/process_cpu_percent", "system/process_memory_rss_mb",
                  "checkpoints/epoch-001-a-rather-long-name.safetensors"):
        assert any(whole in line for line in lines), out.stdout


def test_data_ls_never_cuts_a_folder(synthetic_data: Path, tmp_path: Path) -> None:
    import shutil

    cache = tmp_path / ("a-cache-folder-with-a-long-name-" * 2)
    shutil.copytree(synthetic_data, cache / "datasets" / "mnist")
    out = run_cli("data", "ls", env={**NARROW, "STRIATE_CACHE": str(cache)})
    assert out.returncode == 0, out.stderr
    assert str(cache / "datasets" / "mnist") in out.stdout and "…" not in out.stdout, out.stdout


def test_chart_legend_is_below_the_plot_not_over_it() -> None:
    a, b = (RunRecord(id=f"{c}" * 16, name=f"run-{c}", project="p", status="finished", created_at=1.0,
                      ended_at=2.0, heartbeat_at=2.0)
            for c in "ab")
    text = metric_chart([a, b], {a.id: series([234, 469, 703], [0.5, 0.9, 0.99]),
                                 b.id: series([234, 469, 703], [0.4, 0.8, 0.97])}, "test/acc1", width=80)
    lines = text.splitlines()
    bottom = max(i for i, line in enumerate(lines) if "└" in line)
    legend = [i for i, line in enumerate(lines) if "run-a" in line or "run-b" in line]
    assert len(legend) == 2 and min(legend) > bottom, text


def test_ctrl_c_while_setting_up_says_training_never_began(synthetic_data: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while the data loads: one line, exit 130, no resume hint (a signal's KeyboardInterrupt,
    raised where loading would be: timing a real SIGINT into a sub-second load is not reliable)."""
    import striate.data.loader

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(striate.data.loader, "load_dataset", interrupted)
    out = run_cli("train", "--data", str(synthetic_data), "--epochs", "1", "--store", str(tmp_path / "s"),
                  "--no-progress", env=NARROW)
    assert out.returncode == 130, out.stderr
    assert out.stdout.strip() == "stopped before training began: interrupted (Ctrl-C) during set-up", out.stdout
