"""Reaching a run's files and data: `artifacts`, `history`, `--pretrained RUN`, `--version`."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
from safetensors.torch import load_file

import striate
from striate.tracking.store import open_store
from tests.conftest import run_cli


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, str]:
    """A store with one finished run: three artifacts (one in a folder) and two metrics."""
    store = tmp_path / "s"
    run = striate.init(name="files-run", store=store, system_metrics=False)
    files = (("model.safetensors", b"w" * 3000), ("notes.txt", b"hello"), ("checkpoints/epoch-001.bin", b"c"))
    for name, data in files:
        source = tmp_path / "src" / name
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_bytes(data)
        run.log_artifact(source, name, kind="model" if name.endswith("safetensors") else "file")
    for step in range(5):
        run.log({"train/loss": 1.0 / (step + 1), "test/acc1": step / 10}, step=step * 100)
    run.finish()
    return store, run.id


def test_artifacts_lists_path_kind_size_and_hash(recorded: tuple[Path, str]) -> None:
    store, run_id = recorded
    done = run_cli("artifacts", "files-run", "--store", str(store), env={"COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines()}
    everything = sorted(a["path"] for a in open_store(store).get_run(run_id).artifacts)  # with the code snapshot
    assert list(lines)[:-1] == everything and {"checkpoints/epoch-001.bin", "notes.txt"} <= set(everything)
    model = lines["model.safetensors"].split()
    assert model[1:4] == ["model", "3.0", "kB"] and len(model[4]) == 12
    assert done.stdout.splitlines()[-1].startswith(f"{len(everything)} artifact(s)")
    assert all(len(line) <= 80 for line in done.stdout.splitlines())
    rows = json.loads(run_cli("artifacts", run_id[:6], "checkpoints", "--store", str(store), "--json").stdout)
    assert [r["path"] for r in rows] == ["checkpoints/epoch-001.bin"] and len(rows[0]["sha256"]) == 64
    missing = run_cli("artifacts", run_id[:6], "model.safetensor", "--store", str(store))
    assert missing.returncode != 0 and "did you mean 'model.safetensors'" in missing.stderr


def test_artifacts_download_one_or_all(recorded: tuple[Path, str], tmp_path: Path) -> None:
    store, run_id = recorded
    one = run_cli("artifacts", run_id[:8], "notes.txt", "--download", str(tmp_path / "one"), "--store", str(store))
    assert one.returncode == 0, one.stderr
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["notes.txt"]
    assert (tmp_path / "one" / "notes.txt").read_bytes() == b"hello"
    every = run_cli("artifacts", run_id[:8], "-d", str(tmp_path / "all"), "--store", str(store))
    assert every.returncode == 0, every.stderr
    assert f"downloaded {len(open_store(store).get_run(run_id).artifacts)} file(s)" in every.stdout
    assert (tmp_path / "all" / "checkpoints" / "epoch-001.bin").read_bytes() == b"c"
    assert (tmp_path / "all" / "model.safetensors").stat().st_size == 3000
    # Again: identical files are fine; a different file in the way needs --force.
    assert run_cli("artifacts", run_id[:8], "-d", str(tmp_path / "all"), "--store", str(store)).returncode == 0
    (tmp_path / "all" / "notes.txt").write_text("mine")
    clash = run_cli("artifacts", run_id[:8], "-d", str(tmp_path / "all"), "--store", str(store))
    assert clash.returncode != 0 and "already exists" in clash.stderr and "--force" in clash.stderr
    assert (tmp_path / "all" / "notes.txt").read_text() == "mine"
    forced = run_cli("artifacts", run_id[:8], "-d", str(tmp_path / "all"), "--force", "--store", str(store))
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "all" / "notes.txt").read_bytes() == b"hello"


@pytest.mark.parametrize("crafted", ["../../escaped.txt", "/tmp/striate-escaped.txt", "a/../../escaped.txt"])
def test_a_crafted_artifact_path_cannot_escape_the_download_folder(recorded: tuple[Path, str], tmp_path: Path,
                                                                    crafted: str) -> None:
    store, run_id = recorded
    opened = open_store(store)
    opened.add_artifact(run_id, crafted, "file", 5, "0" * 64)  # an altered or imported record
    (tmp_path / "escaped.txt").unlink(missing_ok=True)
    done = run_cli("artifacts", run_id[:8], "--download", str(tmp_path / "out" / "dl"), "--store", str(store))
    assert done.returncode != 0 and "refusing artifact path" in done.stderr and "nothing was copied" in done.stderr
    assert not (tmp_path / "out" / "dl").exists()  # refused before anything was copied
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "out" / "escaped.txt").exists()
    assert not Path("/tmp/striate-escaped.txt").exists()


def test_a_downloaded_file_that_no_longer_matches_its_hash_is_refused(recorded: tuple[Path, str],
                                                                      tmp_path: Path) -> None:
    store, run_id = recorded
    (store / "artifacts" / run_id / "notes.txt").write_text("tampered")
    done = run_cli("artifacts", run_id[:8], "notes.txt", "-d", str(tmp_path / "dl"), "--store", str(store))
    assert done.returncode != 0 and "does not match its recorded SHA-256" in done.stderr
    assert not (tmp_path / "dl" / "notes.txt").exists()


def test_one_damaged_file_means_nothing_is_downloaded(recorded: tuple[Path, str], tmp_path: Path) -> None:
    store, run_id = recorded
    (store / "artifacts" / run_id / "notes.txt").write_text("tampered")  # sorts after model.safetensors
    done = run_cli("artifacts", run_id[:8], "-d", str(tmp_path / "dl"), "--store", str(store))
    assert done.returncode != 0 and "notes.txt" in done.stderr and "nothing was copied" in done.stderr
    assert not (tmp_path / "dl").exists() or not any((tmp_path / "dl").rglob("*"))


def test_an_artifact_without_a_recorded_hash_is_reported_unchecked(recorded: tuple[Path, str],
                                                                   tmp_path: Path) -> None:
    store, run_id = recorded
    opened = open_store(store)
    opened.remove_artifact(run_id, "notes.txt")
    opened.add_artifact(run_id, "notes.txt", "file", 99, "")  # no hash, and a wrong size, recorded
    done = run_cli("artifacts", run_id[:8], "notes.txt", "-d", str(tmp_path / "dl"), "--store", str(store))
    assert done.returncode == 0, done.stderr
    assert "not checked (no recorded hash)" in done.stdout and "sha256" not in done.stdout
    assert "(5 B, not checked" in done.stdout  # the size of the file written, not the recorded 99


def test_a_symlink_in_the_download_folder_is_named(recorded: tuple[Path, str], tmp_path: Path) -> None:
    store, run_id = recorded
    (tmp_path / "dl").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "dl" / "checkpoints").symlink_to(tmp_path / "elsewhere")
    done = run_cli("artifacts", run_id[:8], "-d", str(tmp_path / "dl"), "--store", str(store))
    assert done.returncode != 0 and "contains a symlink at" in done.stderr and "checkpoints" in done.stderr
    assert "altered" not in done.stderr and not any((tmp_path / "elsewhere").iterdir())


def test_which_of_a_missing_path_says_it_does_not_exist(recorded: tuple[Path, str], tmp_path: Path) -> None:
    store, _ = recorded
    missing = run_cli("which", str(tmp_path / "nonexist"), "--store", str(store))
    assert missing.returncode != 0 and "nonexist does not exist" in missing.stderr
    folder = run_cli("which", str(tmp_path), "--store", str(store))
    assert folder.returncode != 0 and "is not a regular file" in folder.stderr


def test_history_prints_csv_for_piping(recorded: tuple[Path, str]) -> None:
    store, run_id = recorded
    done = run_cli("history", "files-run", "--metric", "train/loss", "--csv", "--store", str(store))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [int(r["step"]) for r in rows] == [0, 100, 200, 300, 400]
    assert [float(r["value"]) for r in rows] == [1.0, 0.5, 1 / 3, 0.25, 0.2]  # full precision
    assert all(float(r["time"]) > 1e9 for r in rows)
    human = run_cli("history", run_id[:8], "-m", "test/acc1", "--store", str(store))
    assert human.returncode == 0 and human.stdout.splitlines()[0].split() == ["step", "time", "value"]
    assert len(human.stdout.splitlines()) == 6
    keys = run_cli("history", run_id[:8], "--store", str(store))
    assert "train/loss  (5 points)" in keys.stdout


def test_history_json_keeps_nan_and_infinities_apart(tmp_path: Path) -> None:
    store = tmp_path / "s"
    run = striate.init(name="diverged", store=store, system_metrics=False)
    for step, value in enumerate([1.0, float("nan"), float("inf"), float("-inf")]):
        run.log({"train/loss": value}, step=step)
    run.finish()
    done = run_cli("history", "diverged", "-m", "train/loss", "--json", "--store", str(store))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["values"] == [1.0, "NaN", "Infinity", "-Infinity"]


def test_history_of_an_unknown_key_names_the_closest(recorded: tuple[Path, str]) -> None:
    store, run_id = recorded
    done = run_cli("history", run_id[:8], "--metric", "test/acc", "--csv", "--store", str(store))
    assert done.returncode != 0 and done.stdout == ""
    assert "has no metric 'test/acc'" in done.stderr and "did you mean 'test/acc1'" in done.stderr


def test_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"striate {version('striate')}"


def test_pretrained_takes_a_run_reference(synthetic_data: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    base = ("--data", str(synthetic_data), "--epochs", "1", "--batch-size", "64", "--store", store,
            "--no-progress", "--json")
    first = run_cli("train", "lenet5", "--name", "source-run", *base)
    assert first.returncode == 0, first.stderr
    source_id = json.loads(first.stdout)["id"]
    # A learning rate too small to move the weights: the new run ends with the weights it started from,
    # the source's trained ones (a fresh model of the same seed would end at the source's initial weights).
    tuned = run_cli("train", "lenet5", "--pretrained", "source-run", "--lr", "1e-12", *base)
    assert tuned.returncode == 0, tuned.stderr
    new_id = json.loads(tuned.stdout)["id"]
    assert open_store(store).get_run(new_id).config["pretrained"] == "source-run"
    src_w, new_w = (load_file(str(Path(store) / "artifacts" / i / "model.safetensors")) for i in (source_id, new_id))
    assert max(float((src_w[k] - new_w[k]).abs().max()) for k in src_w) < 1e-6

    wrong = run_cli("train", "alexnet", "--pretrained", source_id[:8], *base)
    assert wrong.returncode != 0 and f"run {source_id[:8]} (source-run) trained lenet5, not alexnet" in wrong.stderr
    nothing = run_cli("train", "lenet5", "--pretrained", "no-such-run", *base)
    assert nothing.returncode != 0 and "neither a weight file nor a run" in nothing.stderr
    here = tmp_path / "here"
    here.mkdir()
    (here / "source-run").write_bytes(b"not weights")  # a file that shares the run's name
    both = run_cli("train", "lenet5", "--pretrained", "source-run", *base, cwd=here)
    assert both.returncode != 0 and "names both the file" in both.stderr and "./source-run" in both.stderr
    assert source_id in both.stderr
    as_file = run_cli("train", "lenet5", "--pretrained", "./source-run", *base, cwd=here)
    assert as_file.returncode != 0 and "names both" not in as_file.stderr and "cannot read" in as_file.stderr
    opened = open_store(store)
    entry = next(a for a in opened.get_run(source_id).artifacts if a["path"] == "model.safetensors")
    opened.remove_artifact(source_id, "model.safetensors")
    opened.add_artifact(source_id, "model.safetensors", entry["kind"], entry["size"], "")  # no hash recorded
    unverified = run_cli("train", "lenet5", "--pretrained", source_id[:8], *base)
    assert unverified.returncode != 0 and "no recorded SHA-256" in unverified.stderr
    os.remove(Path(store) / "artifacts" / source_id / "model.safetensors")
    for path in (Path(store) / "artifacts" / source_id / "checkpoints").glob("*.safetensors"):
        path.unlink()
    bare = run_cli("train", "lenet5", "--pretrained", source_id[:8], *base)
    assert bare.returncode != 0 and "has no weights to start from" in bare.stderr
    assert len(open_store(store).list_runs()) == 2  # the refused ones left no run behind
