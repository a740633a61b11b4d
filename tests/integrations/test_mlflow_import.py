"""Importing real MLflow 3.17 stores (made by make_fixture.py) — both backends, twice."""

import json
import math
from pathlib import Path

import pytest

from striate.integrations.mlflow_import import import_runs
from striate.tracking.store import open_store
from tests.conftest import run_cli

FIXTURE = Path(__file__).parent / "mlflow_fixture"


@pytest.mark.parametrize("source", [str(FIXTURE / "mlflow.db"), f"sqlite:///{FIXTURE / 'mlflow.db'}",
                                    str(FIXTURE / "mlruns")])
def test_import_params_metrics_tags_and_status(tmp_path, source):
    store = open_store(tmp_path)
    rows = import_runs(source, store)
    assert [r["name"] for r in rows] == ["mlrun-0", "mlrun-1", "failed-one"] and all(r["imported"] for r in rows)
    by_name = {r.name: r for r in store.list_runs()}
    run = by_name["mlrun-1"]
    assert run.project == "fashion" and run.status == "finished"
    assert run.config == {"batch_size": 128, "lr": 0.01, "optimizer": "sgd"}
    assert "team=vision" in run.tags and "stage=baseline" in run.tags
    loss = store.history(run.id, "loss")
    assert loss.steps.tolist() == [0, 1, 2, 3, 4]
    assert loss.values.tolist() == pytest.approx([1 / 2, 1 / 3, 1 / 4, 1 / 5, 1 / 6])
    assert run.ended_at >= run.created_at > 1.7e9
    failed = by_name["failed-one"]
    assert failed.status == "failed" and math.isnan(store.history(failed.id, "loss").values[0])
    assert store.search_runs(where="params.lr > 0.05 and metrics.acc.max > 0.85") == [by_name["mlrun-0"].id]


def test_importing_twice_creates_no_duplicates(tmp_path):
    first = run_cli("import", "mlflow", str(FIXTURE / "mlflow.db"), "--store", str(tmp_path), "--json")
    second = run_cli("import", "mlflow", str(FIXTURE / "mlflow.db"), "--store", str(tmp_path), "--json")
    assert [r["imported"] for r in json.loads(first.stdout)] == [True, True, True]
    assert [r["imported"] for r in json.loads(second.stdout)] == [False, False, False]
    assert len(open_store(tmp_path).list_runs()) == 3


def test_not_an_mlflow_store_is_one_clear_line(tmp_path):
    out = run_cli("import", "mlflow", str(tmp_path / "nothing"), "--store", str(tmp_path / "s"))
    assert out.returncode == 2 and "no MLflow store" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_export_tensorboard_cli(tmp_path):
    pytest.importorskip("tensorboard")
    import_runs(str(FIXTURE / "mlflow.db"), open_store(tmp_path / "s"))
    out = run_cli("export-tensorboard", "mlrun-0", str(tmp_path / "tb"), "--store", str(tmp_path / "s"), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["points"] == {"acc": 5, "loss": 5}
