"""`striate reproduce`: run a recorded run again and prove it matched.

A reproduction rebuilds the run's code (its git commit in a temporary worktree with the recorded
uncommitted diff applied, or its stored source snapshot), its exact resolved config and its data
(checked by content hash), runs `striate train` there as a new run linked by `reproduction_of`,
and with `verify` compares weights and metric series with the original.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import yaml

from striate.config import TrainConfig
from striate.errors import ConfigError, StoreError, StriateError
from striate.reproduce.drift import describe, package_drift
from striate.tracking.store import RunRecord, Store, open_store
from striate.train.resume import check_dataset_fingerprint, pin_threads

# Wall-clock figures and machine readings differ between any two runs; they are not compared.
UNCOMPARED_PREFIXES = ("system/", "train/samples_per_s")
VERDICT_EXIT = {"identical": 0, "within tolerance": 3, "differs": 4}


class DriftError(StriateError):
    """The environment differs from the recorded one and --strict was given."""

    exit_code = 5


# --- reproduce --------------------------------------------------------------------------------------
@dataclass
class Verdict:
    """How a reproduction compares with its original."""

    verdict: str  # identical | within tolerance | differs
    weights_identical: bool
    first_difference: dict[str, Any] | None  # {"step": N, "metric": key, "original": v, "reproduction": w}
    max_abs_difference: float

    @property
    def exit_code(self) -> int:
        return VERDICT_EXIT[self.verdict]


def compare_runs(store: Store, original: RunRecord, repro: RunRecord, tolerance: float) -> Verdict:
    """Weights hash and every compared metric series, point by point."""
    weights_same = bool(original.summary.get("weights_hash")) and \
        original.summary.get("weights_hash") == repro.summary.get("weights_hash")
    first: dict[str, Any] | None = None
    worst = 0.0
    keys = sorted(k for k in set(original.metrics) | set(repro.metrics) if not k.startswith(UNCOMPARED_PREFIXES))
    for key in keys:
        a, b = store.history(original.id, key), store.history(repro.id, key)
        n = min(len(a), len(b))
        same_steps = np.array_equal(a.steps[:n], b.steps[:n])
        if len(a) != len(b) or not same_steps:
            # Where the step lists part: inside the common prefix, or where the shorter one ends.
            mismatch = n if same_steps else int(np.argmax(a.steps[:n] != b.steps[:n]))
            step = int((a if len(a) > mismatch else b).steps[mismatch])
            candidate = {"step": step, "metric": key, "original": None, "reproduction": None}
            if first is None or step < first["step"]:
                first = candidate
            worst = float("inf")
            continue
        nan_a, nan_b = np.isnan(a.values), np.isnan(b.values)
        diff = np.abs(a.values - b.values)
        diff = np.where(nan_a & nan_b, 0.0, np.where(nan_a | nan_b, np.inf, diff))  # NaN on one side only differs
        if n and diff.max() > 0:
            worst = max(worst, float(diff.max()))
            index = int(np.argmax(diff > 0))
            candidate = {"step": int(a.steps[index]), "metric": key, "original": float(a.values[index]),
                         "reproduction": float(b.values[index])}
            if first is None or candidate["step"] < first["step"]:
                first = candidate
    if weights_same and first is None:
        verdict = "identical"
    elif worst <= tolerance and (weights_same or tolerance > 0):
        verdict = "within tolerance"  # with --tolerance 0, different weights are a difference on their own
    else:
        verdict = "differs"
    return Verdict(verdict, weights_same, first, worst)


@contextlib.contextmanager
def rebuilt_code(record: RunRecord, store: Store) -> Iterator[tuple[Path | None, str]]:
    """A temporary folder holding the run's code; yields (working directory, how it was rebuilt)."""
    git = record.environment.get("git") or {}
    recorded_cwd = record.environment.get("cwd")
    tmp = Path(tempfile.mkdtemp(prefix="striate-repro-"))
    worktree: Path | None = None
    try:
        root = git.get("root")
        if git.get("in_repo") and git.get("commit") and root and Path(root).is_dir() and _git_has(root, git["commit"]):
            worktree = tmp / "code"
            _git(["worktree", "add", "--detach", str(worktree), git["commit"]], root)
            if git.get("diff_truncated"):
                raise ConfigError(f"run {record.name}'s uncommitted diff was too large to record in full",
                                  "commit the changes before runs you want to reproduce")
            if git.get("diff"):
                apply = subprocess.run(["git", "apply", "--whitespace=nowarn", "-"], cwd=worktree,
                                       input=git["diff"], text=True, capture_output=True)
                if apply.returncode != 0:
                    raise ConfigError(f"the run's uncommitted diff does not apply to commit {git['commit'][:10]}: "
                                      f"{apply.stderr.strip().splitlines()[0] if apply.stderr.strip() else ''}",
                                      "check the repository history")
            how = f"git {git['commit'][:10]}" + (" + uncommitted diff" if git.get("diff") else "")
            untracked = next((a for a in record.artifacts if a["kind"] == "code-untracked"), None)
            if untracked is not None:
                from striate.tracking.snapshot import restore_snapshot

                restore_snapshot(Path(store.artifact_root) / record.id / untracked["path"], worktree, overwrite=True)
                how += " + untracked files"
            cwd = worktree / os.path.relpath(recorded_cwd, root) if recorded_cwd else worktree
            yield cwd, how
            return
        snapshot = next((a for a in record.artifacts if a["kind"] == "code-snapshot"), None)
        if snapshot is not None:
            from striate.tracking.snapshot import restore_snapshot

            target = tmp / "code"
            restore_snapshot(Path(store.artifact_root) / record.id / snapshot["path"], target)
            yield target, f"source snapshot {snapshot['sha256'][:12]}"
            return
        yield None, "current code (the run recorded no git commit or source snapshot)"
    finally:
        if worktree is not None and git.get("root"):
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=git["root"],
                           capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def _git(args: list[str], cwd: str | Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ConfigError(f"git {' '.join(args[:2])} failed: {done.stderr.strip()[:200]}", "check the repository")
    return done.stdout


def _git_has(root: str, commit: str) -> bool:
    return subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=root,
                          capture_output=True).returncode == 0


def reproduce(store_location: str, run_ref: str, strict: bool = False,
              progress: bool = False) -> dict[str, Any]:
    """Run a recorded run again as a new run linked by reproduction_of; return what happened."""
    from striate.tracking.capture import packages

    store = open_store(store_location)
    original = store.get_run(run_ref)
    drift = package_drift(original.environment.get("packages") or {}, packages())
    if drift and strict:
        raise DriftError(f"the environment differs from run {original.name}'s: {describe(drift)}",
                         f"install the recorded versions (`striate show {original.id[:8]} --requirements`) "
                         "or drop --strict")
    config = TrainConfig.from_mapping(original.config, source=f"run {original.name}")
    store_path = str(Path(store_location).resolve())
    with rebuilt_code(original, store) as (cwd, how):
        workdir = cwd or Path.cwd()
        with _chdir(workdir):
            check_dataset_fingerprint(config, original)
        config_file = workdir / ".striate-reproduction.yaml"
        settings = pin_threads(config, original).to_dict()
        settings["name"] = f"{original.name}-repro"
        config_file.write_text(yaml.safe_dump(settings))
        env = dict(os.environ)
        if cwd is not None and (cwd / "src" / "striate").is_dir():
            env["PYTHONPATH"] = os.pathsep.join([str(cwd / "src"), env.get("PYTHONPATH", "")])
        command = [sys.executable, "-m", "striate", "train", "-c", str(config_file), "--store", store_path,
                   "--reproduction-of", original.id, "--json"]
        if not progress:
            command.append("--no-progress")
        done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
        config_file.unlink(missing_ok=True)
    if done.returncode != 0:
        message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        raise StoreError(f"the reproduction failed: {message}", "see `striate runs` for its record")
    new_id = json.loads(done.stdout)["id"]
    return {"original": original.id, "reproduction": new_id, "code": how, "drift": drift}


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)
