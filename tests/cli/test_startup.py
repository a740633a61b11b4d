"""Commands that only read or tag runs, and the model list, start without torch (issue 11, item 1).

Each command runs in a fresh interpreter (a subprocess: what a command imports is only visible in
a process that has imported nothing else) and reports which heavy modules it loaded. numpy is
allowed: the store decodes metric chunks with it, at a tenth of torch's import time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import striate

# torch and what only training, export or plotting needs; any of them makes a quick command slow.
HEAVY = ("torch", "torchvision", "onnx", "onnxruntime", "safetensors", "pandas", "matplotlib", "scipy", "PIL")

PROBE = """
import json, sys
heavy, args = json.loads(sys.argv[1]), sys.argv[2:]
sys.argv = ["striate", *args]
from striate.cli.app import app
try:
    app()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"code": code, "loaded": sorted(h for h in heavy if h in sys.modules)}), file=sys.stderr)
"""


def loaded_by(args: list[str], cwd: Path) -> dict[str, object]:
    """Run `striate ARGS` in a fresh interpreter; its exit code and the heavy modules it imported."""
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(HEAVY), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "80"})
    return json.loads(done.stderr.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with two small runs, recorded through the Python API (no torch, no training)."""
    root = tmp_path_factory.mktemp("startup")
    for i, lr in enumerate((0.1, 0.2)):
        with striate.init(project="p", name=f"run-{i}", config={"lr": lr, "model": "lenet5"}, store=root / "store",
                          capture_console=False, system_metrics=False, capture_environment=False) as run:
            for step in range(3):
                run.log({"train/loss": 1.0 / (step + 1), "test/acc1": 0.2 * step}, step=step)
            run.log({"final/acc1": 0.5 + lr}, step=3)  # one point: compare draws value bars, not a plot
    return root


@pytest.mark.parametrize("args", [
    ["--help"], ["runs"], ["show", "run-0"], ["compare", "run-0", "run-1"], ["tag", "run-0", "x"], ["models"],
    ["runs", "--help"], ["train", "--help"],
], ids=lambda a: " ".join(a))
def test_quick_commands_import_no_torch(store, args):
    result = loaded_by([*args, "--store", "store"] if args[0] in ("runs", "show", "compare", "tag")
                       and "--help" not in args else args, store)
    assert result == {"code": 0, "loaded": []}


# Lighter than torch, but each was a large share of a read command's start-up (issue 11, item 1):
# the filter parser (lark, and building its tables), the run client with its capture and thread
# machinery, and the plotting library.
LIGHT = ("lark", "striate.tracking.run", "striate.tracking.capture", "striate.tracking.spool", "plotext")


def light_loaded_by(args: list[str], cwd: Path) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(LIGHT), *args, "--store", "store"], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "80"})
    result = json.loads(done.stderr.strip().splitlines()[-1])
    assert result["code"] == 0, done.stderr
    return list(result["loaded"])


@pytest.mark.parametrize("args", [
    ["runs"], ["runs", "--sort", "-metrics.test/acc1", "--columns", "id,params.lr,metrics.test/acc1.max"],
    ["show", "run-0"], ["compare", "run-0", "run-1", "--metric", "final/acc1"], ["tag", "run-0", "y"],
    ["runs", "--json"],
], ids=lambda a: " ".join(a))
def test_read_commands_import_no_parser_run_client_or_plotting(store, args):
    assert light_loaded_by(args, store) == []


def test_the_light_probe_sees_what_a_filter_and_a_chart_import(store):
    # The checks above can fail: a filter needs the parser, a metric with several points the plot.
    assert light_loaded_by(["runs", "--where", "params.lr > 0.1"], store) == ["lark"]
    assert light_loaded_by(["compare", "run-0", "run-1"], store) == ["plotext"]


def test_data_get_of_a_verified_dataset_imports_no_torch(tmp_path):
    from tests.conftest import write_dataset

    write_dataset(tmp_path / "mnist-copy")
    env = {**os.environ, "STRIATE_CACHE": str(tmp_path / "cache")}
    # The four files are not MNIST's, so --from refuses them: still a data command that must not load torch.
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(HEAVY), "data", "get", "mnist", "--from",
                           str(tmp_path / "mnist-copy")], capture_output=True, text=True, timeout=120, env=env)
    result = json.loads(done.stderr.strip().splitlines()[-1])
    assert result == {"code": 2, "loaded": []}


def test_the_probe_sees_torch_when_a_command_imports_it(store):
    # `models show` builds the model: the check above would catch a quick command doing the same.
    assert "torch" in loaded_by(["models", "show", "lenet5"], store)["loaded"]


def test_the_lazy_tracking_exports_are_the_real_objects():
    # striate.tracking imports its client and read API on first use (so the store alone stays light).
    import striate.tracking as tracking
    from striate.tracking import api, run

    assert (tracking.init, tracking.log, tracking.Run, tracking.active_run) == (run.init, run.log, run.Run,
                                                                                run.active_run)
    assert (tracking.Api, tracking.RunView) == (api.Api, api.RunView)
    assert striate.init is run.init and striate.Api is api.Api
    assert set(tracking.__all__) <= set(dir(tracking))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tracking.nope  # noqa: B018


# numpy (the store's codec) and pydantic (Typer's value conversion) are imported only where needed:
# numpy when metric histories are decoded, pydantic when a value needs Typer's own conversion.
@pytest.mark.parametrize("args", [
    ["runs"], ["runs", "--json"], ["runs", "--sort", "-metrics.test/acc1", "--columns", "id,params.lr"],
    ["show", "run-0"], ["tag", "run-0", "z"], ["tag", "run-0", "z", "--remove"],
], ids=lambda a: " ".join(a))
def test_read_commands_import_no_numpy_or_pydantic(store, args):
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(["numpy", "pydantic"]), *args, "--store", "store"],
                          cwd=store, capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "80"})
    assert json.loads(done.stderr.strip().splitlines()[-1]) == {"code": 0, "loaded": []}, done.stderr


def test_the_numpy_and_pydantic_probe_sees_them_when_needed(store):
    def loaded(*args: str) -> list[str]:
        done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(["numpy", "pydantic"]), *args, "--store",
                               "store"], cwd=store, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "COLUMNS": "80"})
        return list(json.loads(done.stderr.strip().splitlines()[-1])["loaded"])

    assert loaded("compare", "run-0", "run-1") == ["numpy"]  # decodes the histories it plots
    assert loaded("runs", "--limit", "1") == ["pydantic"]  # text for an int option: Typer converts it


def test_plain_values_convert_as_typers_own_conversion_does():
    # The shortcut in cli/common.py returns what Typer's pydantic adapter would, for the values it takes.
    import typer.core

    if not hasattr(typer.core, "build_runtime_param"):
        pytest.skip("this Typer converts values without pydantic adapters: no shortcut is installed")
    from typer._coercion import resolve_type_descriptor
    from typer.models import ArgumentInfo, OptionInfo

    from striate.cli import common

    class Param:  # what coerce reads of a Click parameter
        def __init__(self, many: bool) -> None:
            self.multiple, self.nargs = many, (-1 if many else 1)

    cases = [(str, OptionInfo(), "a b "), (str, OptionInfo(), ""), (int, OptionInfo(), 20),
             (float, OptionInfo(), 0.5), (float, OptionInfo(), float("inf")), (list[str], ArgumentInfo(), ("x", "y")),
             (list[str], ArgumentInfo(), ()), (int, OptionInfo(), None), (list[str], ArgumentInfo(), None)]
    for annotation, info, value in cases:
        descriptor = resolve_type_descriptor(annotation, info)
        param = Param(many=annotation == list[str])
        shortcut = common._PlainValues(descriptor, typer.core.build_runtime_param)
        expected = typer.core.build_runtime_param(descriptor).coerce(value, param=param, ctx=None)
        got = shortcut.coerce(value, param=param, ctx=None)
        assert (got, type(got)) == (expected, type(expected)), (annotation, value)
        assert shortcut._built is None, (annotation, value)  # taken without building Typer's adapter
    # and a value it does not take goes to Typer's conversion, errors included
    shortcut = common._PlainValues(resolve_type_descriptor(int, OptionInfo()), typer.core.build_runtime_param)
    assert shortcut.coerce("7", param=Param(False), ctx=None) == 7
    with pytest.raises(typer.BadParameter, match="valid integer"):
        shortcut.coerce("x", param=Param(False), ctx=None)


# A dataset registered for the test (its files are the synthetic ones), then `data get` as users run it.
REGISTERED_PROBE = """
import json, sys
from striate.data import catalog
files = {role: catalog.FileSpec(name, content_sha256=sha) for role, (name, sha) in json.loads(sys.argv[2]).items()}
catalog.DATASETS["test-synthetic"] = catalog.DatasetSpec("test-synthetic", files, (), tuple("0123456789"))
heavy, args = json.loads(sys.argv[1]), sys.argv[3:]
sys.argv = ["striate", *args]
from striate.cli.app import app
try:
    app()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"code": code, "loaded": sorted(h for h in heavy if h in sys.modules)}), file=sys.stderr)
"""


def test_data_get_of_a_verified_dataset_imports_no_numpy(tmp_path):
    # Checking recorded files reads no arrays: numpy (striate.data.idx imports it where it parses) stays out.
    from striate.data.catalog import FILE_NAMES, ROLES
    from striate.data.idx import content_sha256
    from tests.conftest import write_dataset

    folder = write_dataset(tmp_path / "copy")
    files = {role: (FILE_NAMES[role] + ".gz", content_sha256(folder / (FILE_NAMES[role] + ".gz"))) for role in ROLES}
    env = {**os.environ, "STRIATE_CACHE": str(tmp_path / "cache")}

    def get(*args: str) -> dict[str, object]:
        done = subprocess.run([sys.executable, "-c", REGISTERED_PROBE, json.dumps(["numpy", *HEAVY]), json.dumps(files),
                               "data", "get", "test-synthetic", *args], capture_output=True, text=True, timeout=120,
                              env=env, cwd=tmp_path)
        return dict(json.loads(done.stderr.strip().splitlines()[-1]))

    assert get("--from", str(folder))["code"] == 0  # copied into the cache and checked
    assert get("--local-only")["code"] == 0  # checked again, and recorded as verified
    assert (tmp_path / "cache" / "verified.json").is_file()
    assert get("--local-only") == {"code": 0, "loaded": []}  # the timed case: a verified dataset
