"""`striate models`, `striate models show` and `striate export` through the real command."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from striate import models
from tests.conftest import run_cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "my_cnn.yaml"


def test_models_lists_every_model_with_counts():
    done = run_cli("models", "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["name"]: r for r in json.loads(done.stdout)}
    assert sorted(rows) == models.names()
    assert rows["lenet5"]["parameters"] == 61_706 and rows["lenet5"]["macs"] == 416_520
    table = run_cli("models", "--channels", "3", "--classes", "1000")
    assert table.returncode == 0 and "lenet5" in table.stdout and "3 input channel(s), 1000 classes" in table.stdout


def test_show_prints_the_layer_table_and_writes_diagrams(tmp_path):
    svg, png = tmp_path / "net.svg", tmp_path / "net.png"
    done = run_cli("models", "show", "lenet5", "--diagram", str(svg))
    assert done.returncode == 0, done.stderr
    assert "117,600" in done.stdout and "416,520" in done.stdout
    # Layer names are shown as a tree: each enclosing module once, its layers indented under it.
    names = [line.split()[1] for line in done.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert names[:3] == ["0", "1", "2"] and "features" in done.stdout and "classifier" in done.stdout
    assert "61,706" in done.stdout and f"wrote the diagram to {svg}" in done.stdout
    ET.parse(svg)  # well-formed
    shown = run_cli("models", "show", str(EXAMPLE), "--input", "3x64x64", "--classes", "5", "--json",
                    "--diagram", str(png))
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["input_shape"] == [3, 64, 64] and data["output_shape"] == [5]
    assert data["layers"][0] == {"name": "1", "type": "Conv2d", "output_shape": [32, 64, 64], "parameters": 896,
                                 "macs": 32 * 64 * 64 * 27}
    assert data["diagram"] == str(png) and png.read_bytes()[:4] == b"\x89PNG"


def test_show_errors_are_one_red_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"layers": [{"conv": 8}, "flatten", {"linear": {"in": 100, "out": 10}}]}))
    for args, message in [
        (("models", "show", "lenet"), "unknown model 'lenet' — fix: did you mean lenet5"),
        (("models", "show", "lenet5", "--input", "3x32"), "cannot read input shape '3x32'"),
        (("models", "show", "lenet5", "--input", "1x16x16"), "needs inputs of at least 32x32"),
        (("models", "show", str(bad)), "bad: layer 3 (linear): expects 100 inputs but receives 8x30x30=7200"),
    ]:
        done = run_cli(*args)
        assert done.returncode == 2, done.stdout
        assert done.stderr.startswith("error: ") and message in done.stderr and len(done.stderr.splitlines()) == 1


def test_export_command(tmp_path):
    out = tmp_path / "lenet5.onnx"
    done = run_cli("export", "lenet5", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert f"to {out}" in done.stdout and "onnxruntime vs PyTorch, max abs difference" in done.stdout
    assert out.is_file()
    wrong = run_cli("export", "lenet5", "--format", "keras")
    assert wrong.returncode == 2 and "unknown export format 'keras'" in wrong.stderr


def test_models_and_googlenets_layers_read_whole_at_80_columns():
    narrow = {"COLUMNS": "80"}
    listed = run_cli("models", env=narrow)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert "…" not in listed.stdout, "nothing is cut"
    # Each model's description takes at most four lines (a row is a line with a name in the first column).
    starts = [i for i, line in enumerate(lines) if line[:1] == " " and line[1:2].isalpha() and
              line.split()[0] in models.names()]
    assert [lines[i].split()[0] for i in starts] == models.names()
    assert max(b - a for a, b in zip(starts, starts[1:])) <= 4

    shown = run_cli("models", "show", "googlenet", env=narrow)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines) and "…" not in shown.stdout
    # inception3a's first branch: the module, its branch, then the layer, each indented one step more.
    at = lines.index(next(line for line in lines if line.strip() == "inception3a"))
    assert lines[at + 1].strip() == "branch1" and lines[at + 2].split()[1:3] == ["conv", "Conv2d"]
    depth = [len(lines[at + k]) - len(lines[at + k].lstrip()) for k in range(2)]
    assert depth[1] == depth[0] + 2
    assert "LocalResponseNorm" in shown.stdout and "AdaptiveAvgPool2d" in shown.stdout
