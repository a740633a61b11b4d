"""`striate runs --where/--sort/--columns`, compare, diff, tag, note, archive, delete through the real CLI."""

from __future__ import annotations

import json

import pytest

import striate
from striate.tracking.store import open_store
from tests.conftest import run_cli


@pytest.fixture
def store(tmp_path):
    """Three recorded runs made through the public API (no training needed)."""
    location = tmp_path / "store"
    for name, lr, accs in (("slow", 0.01, [0.5, 0.6]), ("fast", 0.1, [0.7, 0.9]), ("wild", 1.0, [0.1, 0.2])):
        run = striate.init(name=name, config={"lr": lr, "optimizer": "sgd", "epochs": 2}, store=location,
                           model="lenet5", system_metrics=False)
        run.set(environment={"python": "3.11.7", "packages": {"torch": "2.13.0" if name != "wild" else "2.14.1"},
                             "git": {"commit": "abc" if name != "wild" else "def", "diff": ""}})
        for step, acc in enumerate(accs):
            run.log({"test/acc1": acc, "train/loss": 1 - acc}, step=step)
        run.finish()
    return location


def ids_by_name(location):
    return {r.name: r.id for r in open_store(location).list_runs()}


def test_where_sort_columns(store):
    out = run_cli("runs", "--store", str(store), "--where", "params.lr >= 0.1", "--sort", "-metrics.test/acc1.max",
                  "--columns", "name,params.lr,metrics.test/acc1.max", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"name": "fast", "params.lr": 0.1, "metrics.test/acc1.max": 0.9},
                                      {"name": "wild", "params.lr": 1.0, "metrics.test/acc1.max": 0.2}]
    table = run_cli("runs", "--store", str(store), "--where", "name = slow")
    assert "slow" in table.stdout and "fast" not in table.stdout


def test_bad_filter_is_one_line(store):
    out = run_cli("runs", "--store", str(store), "--where", "params.lr >>> 1")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "cannot parse" in out.stderr


def test_compare_highlights_differences(store):
    ids = ids_by_name(store)
    out = run_cli("compare", ids["slow"][:8], ids["fast"][:8], "--store", str(store), "--json")
    data = json.loads(out.stdout)
    assert data["differing_params"] == ["lr"]
    assert data["metrics"]["test/acc1"] == {ids["slow"]: 0.6, ids["fast"]: 0.9}
    assert data["chart"]["series"][ids["fast"]]["values"] == [0.7, 0.9]
    text = run_cli("compare", "slow", "fast", "--store", str(store), "--metric", "train/loss")
    assert text.returncode == 0 and "train/loss" in text.stdout and "2 identical hidden" in text.stdout


def test_diff_reports_config_packages_and_code(store):
    out = run_cli("diff", "fast", "wild", "--store", str(store), "--json")
    data = json.loads(out.stdout)
    assert data["config"] == {"lr": [0.1, 1.0]}
    assert data["packages"] == {"torch": ["2.13.0", "2.14.1"]}
    assert data["code"]["commit"] == ["abc", "def"]
    same = run_cli("diff", "fast", "fast", "--store", str(store))
    assert "no differences" in same.stdout


def test_tag_note_archive_delete(store):
    assert run_cli("tag", "fast", "best", "keep", "--store", str(store)).returncode == 0
    assert run_cli("tag", "fast", "keep", "--remove", "--store", str(store)).returncode == 0
    assert run_cli("note", "fast", "lr 0.1 is the sweet spot", "--store", str(store)).returncode == 0
    record = open_store(store).get_run("fast")
    assert record.tags == ["best"] and record.notes == "lr 0.1 is the sweet spot"
    assert json.loads(run_cli("runs", "--store", str(store), "--where", "tags contains best", "--json").stdout)[0][
        "name"] == "fast"

    assert run_cli("archive", "wild", "--store", str(store)).returncode == 0
    names = [r["name"] for r in json.loads(run_cli("runs", "--store", str(store), "--json").stdout)]
    assert "wild" not in names
    archived = [r["name"] for r in json.loads(run_cli("runs", "--archived", "--store", str(store), "--json").stdout)]
    assert "wild" in archived

    refused = run_cli("delete", "slow", "--store", str(store))
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert run_cli("delete", "slow", "--yes", "--store", str(store)).returncode == 0
    assert "slow" not in ids_by_name(store)


def test_show_requirements(store):
    out = run_cli("show", "wild", "--requirements", "--store", str(store))
    assert out.stdout == "torch==2.14.1\n"


def test_which_traces_a_weight_file_to_its_run(store, tmp_path):
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights" * 100)
    run = striate.init(name="producer", store=store, system_metrics=False)
    run.log_artifact(weights, "model.safetensors", kind="model")
    run.finish()
    out = run_cli("which", str(weights), "--store", str(store), "--json")
    assert json.loads(out.stdout) == [{"id": run.id, "name": "producer", "artifact": "model.safetensors",
                                       "status": "finished"}]
    other = tmp_path / "other.bin"
    other.write_bytes(b"nope")
    missing = run_cli("which", str(other), "--store", str(store))
    assert missing.returncode == 2 and "no run in this store produced" in missing.stderr


def test_stored_text_is_never_markup_and_infinite_metrics_still_chart(tmp_path):
    import striate

    store = str(tmp_path / "s")
    ids = []
    for value in (float("inf"), 1.0):
        run = striate.init(store=store, name="[/v2]", tags=["[/v2]", "[bold]x"], config={"lr": 0.1, "[/x]": 1},
                           system_metrics=False, capture_environment=False, capture_console=False)
        run.log({"loss": value, "acc": float("nan")}, step=0)
        run.log({"loss": value, "acc": 0.5}, step=1)
        run.finish()
        ids.append(run.id)
    listed = run_cli("runs", "--store", store, "--columns", "id,name,tags,params.[/x]")
    assert listed.returncode == 0, listed.stderr
    assert "[/v2],[bold]x" in listed.stdout and "params.[/x]" in listed.stdout
    for metric in ("loss", "acc"):
        compared = run_cli("compare", *ids, "--store", store, "--metric", metric)
        assert compared.returncode == 0 and "Traceback" not in compared.stderr, compared.stderr
        assert "[/v2]" in compared.stdout
