"""Export to ONNX (checked with onnxruntime) and TorchScript, from model names, spec files and trained runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from striate import export as export_module
from striate import models
from striate.export import ExportError, export
from striate.models.spec import build_model
from striate.train.checkpoint import load_weights
from tests.conftest import run_cli

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

# Every spec building block: inception, residual with projection, LRN, BatchNorm, ceil-mode and adaptive pools.
BLOCKS = {"name": "blocks", "input_size": 20, "layers": [
    {"conv": {"out": 8, "kernel": 3, "padding": 1}}, {"lrn": 3}, "relu",
    {"maxpool": {"kernel": 3, "stride": 2, "ceil_mode": True}},
    {"inception": [[{"conv": {"out": 4, "kernel": 1}}],
                   [{"conv": {"out": 4, "kernel": 1}}, {"conv": {"out": 6, "kernel": 3, "padding": 1}}],
                   [{"avgpool": {"kernel": 3, "stride": 1, "padding": 1}}, {"conv": {"out": 2, "kernel": 1}}]]},
    {"residual": {"body": [{"conv": {"out": 16, "kernel": 3, "stride": 2, "padding": 1}}, "batchnorm", "gelu"],
                  "projection": "auto"}},
    {"pool": {"kind": "avg", "output": 1}}, {"dropout": 0.3}, {"linear": "classes"}]}


def onnx_logits(path: str, x: torch.Tensor) -> np.ndarray:
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def test_onnx_round_trip_of_a_registered_model(tmp_path):
    result = export("lenet5", "onnx", tmp_path / "lenet5.onnx")
    assert result.max_abs_diff <= 1e-4 and result.dynamic_batch and result.input_shape == (1, 32, 32)
    x = torch.randn(5, 1, 32, 32)
    got = onnx_logits(result.path, x)
    assert got.shape == (5, 10)  # the batch dimension stays dynamic
    # LeNet-5's 250 KB of weights stay inside the .onnx file: no side file, and the CLI names the one file.
    assert result.files == [str(tmp_path / "lenet5.onnx")] and not (tmp_path / "lenet5.onnx.data").exists()
    (tmp_path / "old.onnx.data").write_bytes(b"stale")  # an earlier large export's side file is not left behind
    refused = run_cli("export", "lenet5", "-o", str(tmp_path / "old.onnx"))  # the side file is an output too
    assert refused.returncode != 0 and "old.onnx.data already exists" in refused.stderr
    done = run_cli("export", "lenet5", "-o", str(tmp_path / "old.onnx"), "--force")
    assert done.returncode == 0, done.stderr
    assert "wrote " in done.stdout and "old.onnx" in done.stdout and not (tmp_path / "old.onnx.data").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet5.onnx", "old.onnx"]


def test_weights_over_the_threshold_go_to_a_side_file_and_both_are_named(tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "EXTERNAL_DATA_BYTES", 1000)
    result = export("lenet5", "onnx", tmp_path / "big.onnx")
    assert result.files == [str(tmp_path / "big.onnx"), str(tmp_path / "big.onnx.data")]
    assert Path(result.files[1]).stat().st_size > 200_000  # the weights live there
    assert onnx_logits(result.path, torch.randn(2, 1, 32, 32)).shape == (2, 10)


# The classic architectures at small inputs (near their minimum sizes) and 3 classes, to keep export quick.
# Each takes 4-6 s alone on a 2-core machine; the two marked slow took 16-23 s there under load.
CLASSICS = [pytest.param("alexnet", (3, 63, 63), id="alexnet"),
            pytest.param("vgg11-bn", (1, 32, 32), id="vgg11-bn", marks=pytest.mark.slow),
            pytest.param("googlenet", (1, 32, 32), id="googlenet"),
            pytest.param("googlenet-bn", (3, 32, 32), id="googlenet-bn", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name,shape", CLASSICS)
def test_onnx_round_trip_of_the_classic_architectures(tmp_path, name, shape):
    torch.manual_seed(0)
    result = export(name, "onnx", tmp_path / f"{name}.onnx", input_shape=shape, num_classes=3)
    assert result.max_abs_diff <= 1e-4 and result.dynamic_batch and result.input_shape == shape
    session = onnxruntime.InferenceSession(result.path, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits"]  # GoogLeNet's aux heads: not run in eval
    torch.manual_seed(0)
    model = models.create(name, num_classes=3, in_channels=shape[0]).eval()  # the same weights as exported
    x = torch.randn(4, *shape)
    with torch.no_grad():
        expected = model(x).numpy()
    got = onnx_logits(result.path, x)
    assert got.shape == (4, 3) and np.abs(got - expected).max() <= 1e-4


def test_onnx_round_trip_of_a_spec_with_every_block(tmp_path):
    spec = tmp_path / "blocks.yaml"
    spec.write_text(yaml.safe_dump(BLOCKS))
    result = export(str(spec), "onnx", tmp_path / "blocks.onnx", input_shape=(3, 20, 20), num_classes=4)
    assert result.max_abs_diff <= 1e-4 and result.num_classes == 4
    assert onnx_logits(result.path, torch.randn(2, 3, 20, 20)).shape == (2, 4)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_round_trip(tmp_path):
    result = export("lenet5", "torchscript", tmp_path / "lenet5.pt", num_classes=3)
    assert result.max_abs_diff <= 1e-4
    reloaded = torch.jit.load(result.path)
    assert reloaded(torch.randn(4, 1, 32, 32)).shape == (4, 3)


def test_default_output_name_is_the_model_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert export("lenet5", "torchscript").path == "lenet5.pt"
    assert (tmp_path / "lenet5.pt").is_file()


def test_a_mismatch_beyond_the_tolerance_fails_loudly(tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "TOLERANCE", -1.0)  # any difference, even 0, now exceeds it
    with pytest.raises(ExportError, match=r"differs from PyTorch by .* \(limit -1\)"):
        export("lenet5", "onnx", tmp_path / "x.onnx")


def test_missing_onnx_packages_give_an_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    with pytest.raises(ExportError, match=r"pip install 'striate\[export\]'"):
        export("lenet5", "onnx", tmp_path / "x.onnx")


def test_bad_targets_and_formats(tmp_path):
    with pytest.raises(ExportError, match=r"unknown export format 'tflite' — fix: use one of: onnx, torchscript"):
        export("lenet5", "tflite")
    store = tmp_path / "nowhere"
    with pytest.raises(ExportError, match=r"'lenet' is neither a model nor a run id .*no store at"):
        export("lenet", store=str(store))
    assert not store.exists()  # a typo does not create a store
    with pytest.raises(ExportError, match=r"cannot run on a 1x2x2 input: .* — fix: give --input"):
        export("lenet5", "onnx", tmp_path / "x.onnx", input_shape=(1, 2, 2))
    with pytest.raises(ExportError, match="--classes 0 is not a class count"):
        export("lenet5", "onnx", tmp_path / "x.onnx", num_classes=0)


def test_export_a_trained_run_with_its_weights(synthetic_data, tmp_path):
    """Train a spec model through the real CLI, then export the run: the ONNX file holds the trained weights."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump({"input_size": 28, "layers": [
        {"conv": {"out": 4, "kernel": 3}}, "relu", {"pool": {"kind": "max", "kernel": 2}}, {"linear": "classes"}]}))
    store = tmp_path / "store"
    trained = run_cli("train", str(spec), "--data", str(synthetic_data), "--epochs", "1", "--batch-size", "64",
                      "--store", str(store), "--no-progress", "--json")
    assert trained.returncode == 0, trained.stderr
    run_id = json.loads(trained.stdout)["id"]

    out = tmp_path / "run.onnx"
    done = run_cli("export", run_id[:8], "--store", str(store), "-o", str(out), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["source"] == f"run {run_id[:8]} ({spec})" and result["input_shape"] == [1, 28, 28]
    assert result["num_classes"] == 10 and result["max_abs_diff"] <= 1e-4
    assert result["files"] == [str(out)] and not Path(f"{out}.data").exists()  # small: one file
    assert result["run_id"] == run_id and result["recorded"] == ""
    found = run_cli("which", str(out), "--store", str(store), "--json")  # the exported file leads to its run
    assert found.returncode == 0, found.stderr
    assert [(r["id"], r["artifact"]) for r in json.loads(found.stdout)] == [(run_id, "export: run.onnx (onnx)")]
    again = run_cli("export", run_id[:8], "--store", str(store), "-o", str(tmp_path / "run.pt"), "-f", "torchscript")
    assert again.returncode == 0, again.stderr
    assert f"wrote {tmp_path / 'run.pt'} (" in again.stdout and f"striate which {tmp_path / 'run.pt'}`" in again.stdout
    found = run_cli("which", str(tmp_path / "run.pt"), "--store", str(store))
    assert found.returncode == 0 and "export: run.pt (torchscript)" in found.stdout
    shown = run_cli("show", run_id[:8], "--store", str(store))
    assert "exported: run.onnx (onnx, sha256 " in shown.stdout and "run.pt (torchscript" in shown.stdout

    model = models.create(str(spec), num_classes=10, in_channels=1).eval()
    load_weights(model, store / "artifacts" / run_id / "model.safetensors")
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.abs(onnx_logits(str(out), x) - expected).max() <= 1e-4
    fresh = build_model(yaml.safe_load(spec.read_text()), num_classes=10).eval()
    with torch.no_grad():
        assert np.abs(fresh(x).numpy() - expected).max() > 1e-3  # the export did not use fresh weights

    with pytest.raises(ExportError, match=r"was trained for 10 classes, not 3"):
        export(run_id, store=str(store), num_classes=3)
    missing = Path(store / "artifacts" / run_id / "model.safetensors")
    missing.unlink()
    with pytest.raises(ExportError, match=r"has no final weights"):
        export(run_id, store=str(store))


def test_an_unwritable_output_is_one_error_before_exporting(tmp_path):
    from striate.errors import StriateError
    from striate.export import export

    for output in ("/proc/striate-test.onnx", str(tmp_path)):  # no file can be created there / a folder
        with pytest.raises(StriateError, match=r"cannot write .* — fix: choose a writable --output"):
            export("lenet5", "onnx", output=output)


def test_an_existing_output_is_replaced_only_with_force_and_never_inside_a_store(synthetic_data, tmp_path):
    out = tmp_path / "model.pt"
    out.write_bytes(b"keep me")
    refused = run_cli("export", "lenet5", "-f", "torchscript", "-o", str(out))
    assert refused.returncode != 0 and "already exists" in refused.stderr and "--force" in refused.stderr
    assert out.read_bytes() == b"keep me"
    done = run_cli("export", "lenet5", "-f", "torchscript", "-o", str(out), "--force")
    assert done.returncode == 0, done.stderr
    assert torch.jit.load(str(out))(torch.randn(1, 1, 32, 32)).shape == (1, 10)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging folder left
    link = tmp_path / "link.pt"
    link.symlink_to(out)
    refused = run_cli("export", "lenet5", "-f", "torchscript", "-o", str(link), "--force")
    assert refused.returncode != 0 and "not a regular file" in refused.stderr and link.is_symlink()

    store = tmp_path / "store"
    trained = run_cli("train", "lenet5", "--data", str(synthetic_data), "--epochs", "1", "--batch-size", "64",
                      "--store", str(store), "--json")
    assert trained.returncode == 0, trained.stderr
    run_id = json.loads(trained.stdout)["id"]
    database = store / "striate.db"
    weights = store / "artifacts" / run_id / "model.safetensors"
    before = weights.read_bytes()
    (tmp_path / "db-link").symlink_to(database)
    for target in (database, weights, tmp_path / "db-link", store / "new.pt"):
        for extra in ([], ["--force"]):
            refused = run_cli("export", "lenet5", "-f", "torchscript", "-o", str(target), *extra)
            assert refused.returncode != 0 and "inside the store folder" in refused.stderr, refused.stderr
            refused = run_cli("export", run_id[:8], "--store", str(store), "-o", str(target), *extra)
            assert refused.returncode != 0 and "inside the store folder" in refused.stderr, refused.stderr
    # SQLite may checkpoint its log into the file on close, so the database is checked for its run, not its bytes.
    assert database.read_bytes().startswith(b"SQLite format 3") and weights.read_bytes() == before
    from striate.tracking.store import open_store

    assert open_store(store).get_run(run_id).id == run_id and not (store / "new.pt").exists()


def test_an_interrupted_export_leaves_no_file(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        Path(args[1]).write_bytes(b"half")  # the exporter had started writing
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.jit, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export("lenet5", "torchscript", tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []
