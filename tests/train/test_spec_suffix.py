"""A layer-spec model travels with its run whatever the case of its suffix (`striate train NET.YAML`)."""

from __future__ import annotations

import json

import yaml

from striate.export import export
from striate.tracking.store import open_store
from tests.conftest import run_cli

TINY = {"input_size": 28, "layers": [{"conv": {"out": 4, "kernel": 3}}, "relu", {"pool": {"kind": "max", "kernel": 2}},
                                     {"linear": "classes"}]}
OTHER = {"input_size": 28, "layers": [{"conv": {"out": 6, "kernel": 5}}, "relu", {"linear": "classes"}]}


def test_an_upper_case_spec_suffix_stores_the_spec_with_the_run(synthetic_data, tmp_path):
    spec = tmp_path / "NET.YAML"
    spec.write_text(yaml.safe_dump(TINY))
    store = tmp_path / "store"
    trained = run_cli("train", str(spec), "--data", str(synthetic_data), "--epochs", "1", "--batch-size", "64",
                      "--store", str(store), "--no-progress", "--json")
    assert trained.returncode == 0, trained.stderr
    run_id = json.loads(trained.stdout)["id"]
    record = open_store(store).get_run(run_id)
    assert [a["path"].lower() for a in record.artifacts if a.get("kind") == "model-spec"] == ["model_spec.yaml"]
    assert record.summary["model_spec"]["layers"] == TINY["layers"]
    # The file changes after training: export rebuilds the network the run trained, not what is on disk now.
    spec.write_text(yaml.safe_dump(OTHER))
    result = export(run_id, "torchscript", tmp_path / "net.pt", store=str(store))
    assert result.max_abs_diff <= 1e-4 and result.input_shape == (1, 28, 28)
