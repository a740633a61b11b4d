"""`striate sweep validate SPEC`: the parsed search space in 80 columns, or one error line naming the key."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sweep-lenet5.yaml"


def test_validate_prints_the_search_space_in_80_columns():
    result = run_cli("sweep", "validate", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "the sweep spec is valid: 3 parameter(s)"
    assert max(len(line) for line in lines) <= 80
    text = result.stdout
    for part in ("max test/acc1", "tpe (seed 0)", "asha (min_epochs 1, reduction_factor 3)",
                 "24 trials, 30m wall time", "lr            log_uniform 0.005 .. 0.3",
                 "batch_size    choice 64 | 128 | 256"):
        assert part in text, part


def test_long_spaces_wrap_within_80_columns(tmp_path):
    spec = tmp_path / "grid.yaml"
    values = ", ".join(str(n) for n in range(8, 400, 8))
    spec.write_text(f"""
parameters:
  optimizer: {{choice: [sgd, adamw]}}
  model_options.a_rather_long_option_name_indeed: {{choice: [{values}]}}
  batch_size: {{choice: [{values}]}}
objective: {{metric: test/loss, goal: min}}
method: grid
""")
    result = run_cli("sweep", "validate", str(spec))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "4802 trials (the whole grid)" in result.stdout  # 2 x 49 x 49
    assert "392" in result.stdout  # the last value is printed, on a wrapped line


def test_validate_json(tmp_path):
    result = run_cli("sweep", "validate", str(EXAMPLE), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["method"] == "tpe" and data["max_trials"] == 24
    assert [p["name"] for p in data["parameters"]] == ["lr", "weight_decay", "batch_size"]


def test_a_bad_spec_is_one_error_line_naming_the_key(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("parameters: {lr: {uniform: {low: 0.1, hihg: 1}}}\nobjective: {metric: test/acc1, goal: max}\n")
    result = run_cli("sweep", "validate", str(spec))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "parameters.lr.uniform.hihg" in lines[0] and "did you mean 'high'?" in lines[0]


def test_a_missing_spec_is_one_error_line(tmp_path):
    result = run_cli("sweep", "validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "cannot read sweep spec" in result.stderr and "Traceback" not in result.stderr
