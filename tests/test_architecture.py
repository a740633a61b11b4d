"""The import structure is checked, not hoped for: layers one way (import-linter) and no cycles anywhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cycles(package: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    env_path = ":".join(str(p) for p in paths)
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "import_cycles.py"), package],
                          capture_output=True, text=True, env={"PYTHONPATH": env_path, "PATH": ""})


def test_striate_has_no_import_cycles():
    done = _cycles("striate", ROOT / "src")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_cycle_check_finds_a_cycle_hidden_in_a_function(tmp_path):
    package = tmp_path / "loopy"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from loopy import b\n")
    (package / "b.py").write_text("def late():\n    from loopy import a\n    return a\n")
    (package / "c.py").write_text("from loopy import a\n")
    done = _cycles("loopy", tmp_path)
    assert done.returncode == 1
    assert "import cycle: loopy.a <-> loopy.b" in done.stdout and "loopy.c" not in done.stdout


def test_the_layers_contract_holds_and_catches_an_upward_import(tmp_path):
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and "1 kept, 0 broken" in done.stdout, done.stdout + done.stderr
    # The same contract over a copy of the tree with one upward import must break.
    import shutil

    copy = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "striate", copy / "striate", ignore=shutil.ignore_patterns("__pycache__"))
    engine = copy / "striate" / "train" / "engine.py"
    engine.write_text(engine.read_text() + "\n\ndef _upward():\n    from striate.cli import progress\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    broken = subprocess.run([str(lint)], capture_output=True, text=True, cwd=tmp_path,
                            env={"PYTHONPATH": str(copy), "PATH": ""})
    assert broken.returncode == 1 and "striate.train.engine -> striate.cli.progress" in broken.stdout, broken.stdout
