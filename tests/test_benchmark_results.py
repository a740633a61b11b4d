"""Committed benchmark results say how to rerun them from any checkout: commands relative to the repository."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ABSOLUTE = re.compile(r"(^|[\s=\"'])/(work|root|home|tmp|Users|opt|srv)/")


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _documents(path: Path):
    text = path.read_text()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return [json.loads(text)]


def test_results_record_no_absolute_paths_of_the_machine_that_ran_them():
    files = sorted((ROOT / "benchmarks" / "results").glob("*.json*"))
    assert files, "benchmarks/results holds the raw outputs quoted in benchmarks/README.md"
    for path in files:
        for document in _documents(path):
            command = document.get("command") if isinstance(document, dict) else None
            if command is not None:
                assert not command.startswith(("/", "cd ")), f"{path.name}: {command}"
            leaked = [s for s in _strings(document) if ABSOLUTE.search(s)]
            assert not leaked, f"{path.name} records absolute paths: {leaked[:3]}"


def test_the_recorded_command_is_relative_to_the_repository(tmp_path):
    script = ROOT / "benchmarks" / "_print_command.py"
    script.write_text("from _machine import command_line\nprint(command_line())\n")
    try:
        done = subprocess.run([sys.executable, str(script), "--reps", "2"], capture_output=True, text=True,
                              cwd=tmp_path, check=True)
    finally:
        script.unlink()
    python = Path(sys.executable)
    shown = str(python.relative_to(ROOT)) if python.is_relative_to(ROOT) else python.name
    assert done.stdout.strip() == f"{shown} benchmarks/_print_command.py --reps 2"
