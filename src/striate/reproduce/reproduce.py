"""`striate resume` and `striate reproduce`: continue a run exactly, or run it again and prove it matched.

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
from safetensors.torch import load_file

from striate.config import TrainConfig
from striate.errors import ConfigError, DataError, RunNotFoundError, StoreError, StriateError
from striate.reproduce.drift import describe, package_drift
from striate.tracking.store import RunRecord, Store, holds_store, is_remote, open_store
from striate.tracking.store.base import file_sha256

# Wall-clock figures and machine readings differ between any two runs; they are not compared.
UNCOMPARED_PREFIXES = ("system/", "train/samples_per_s")
VERDICT_EXIT = {"identical": 0, "within tolerance": 3, "differs": 4}


class DriftError(StriateError):
    """The environment differs from the recorded one and --strict was given."""

    exit_code = 5


def _dataset_fingerprint_matches(config: TrainConfig, record: RunRecord) -> None:
    from striate.data.loader import load_dataset

    expected = record.dataset.get("fingerprint")
    if not expected:
        return
    found = load_dataset(config.data).fingerprint
    if found != expected:
        raise DataError(f"the data at {config.data!r} is not the run's data (fingerprint {found[:12]} "
                        f"instead of {expected[:12]})", "put the original dataset files back at that path")


def pin_threads(config: TrainConfig, record: RunRecord) -> TrainConfig:
    """The config with the original's thread count when it left it to torch (threads=0): on the CPU, the
    number of threads changes how sums are split, so weights are bit-identical only with the same count."""
    used = record.summary.get("torch_threads")
    if config.threads or not used:
        return config
    return config.override({"threads": int(used)}, f"run {record.name}'s thread count")


# --- resume -----------------------------------------------------------------------------------------
def resume(store_location: str, run_ref: str, progress: bool = True) -> tuple[Any, str]:
    """Continue a stopped, crashed or failed run from its last checkpoint; return (TrainResult, run id)."""
    from striate.data.loader import load_dataset
    from striate.tracking.run import reattach
    from striate.train import checkpoint as ckpt
    from striate.train.engine import ResumePoint, train

    store = open_store(store_location)
    record = store.get_run(run_ref)
    if is_remote(store_location):
        record = _take_over_from_spool(store, record)
    if record.status == "finished":
        raise ConfigError(f"run {record.name} already finished", "resume continues stopped, crashed or failed runs")
    if record.status == "running":
        raise ConfigError(f"run {record.name} is still running (its process is alive)", "stop it first (Ctrl-C)")
    last = record.summary.get("last_checkpoint")
    if not last:
        raise ConfigError(f"run {record.name} has no checkpoint to resume from",
                          "use `striate reproduce` to run it again from the start")
    folder = Path(store.artifact_root) / record.id
    recorded = {a["path"]: a["sha256"] for a in record.artifacts}
    for part in ("weights", "state"):
        path = folder / last[part]
        if not path.is_file():
            raise ConfigError(f"run {record.name}'s last checkpoint file {last[part]} is missing",
                              "use `striate reproduce` to run it again from the start")
        if last[part] in recorded and file_sha256(path) != recorded[last[part]]:
            raise ConfigError(f"run {record.name}'s last checkpoint file {last[part]} is damaged (its SHA-256 "
                              "differs from the one recorded)",
                              "use `striate reproduce` to run it again from the start")
    config = pin_threads(TrainConfig.from_mapping(record.config, source=f"run {record.name}"), record)
    _dataset_fingerprint_matches(config, record)
    dataset = load_dataset(config.data)
    # Everything that can fail is checked before the run is touched: reattaching drops the points
    # logged after the checkpoint and marks the run running again.
    try:
        state = ckpt.load_training_state(folder / last["state"])
        load_file(str(folder / last["weights"]))
    except Exception as exc:
        raise ConfigError(f"run {record.name}'s last checkpoint cannot be read ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})",
                          "use `striate reproduce` to run it again from the start") from None
    run = reattach(store, record.id, after_step=int(state["position"]["global_step"]), capture_console=True)
    try:
        result = train(config, run=run, dataset=dataset, progress=progress,
                       resume=ResumePoint(folder / last["weights"], state))
    except BaseException as exc:
        run.finish("stopped" if isinstance(exc, KeyboardInterrupt) else "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    run.finish(result.status)
    return result, record.id


def _take_over_from_spool(remote: Store, record: RunRecord) -> RunRecord:
    """Before a run on a server is resumed: send what this machine's spool still holds of it, then
    drop the spool's copy, so a later `striate sync` cannot put the old copy back over the resumed run."""
    from striate.tracking.spool import Syncer, spool_location

    location = spool_location()
    if not holds_store(location):
        return record
    spool = open_store(location)
    try:
        spool.get_run(record.id)
    except RunNotFoundError:
        return record
    Syncer(spool, remote, record.id).sync()
    spool.delete_run(record.id)
    return remote.get_run(record.id)


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
                from striate.reproduce.snapshot import restore_snapshot

                restore_snapshot(Path(store.artifact_root) / record.id / untracked["path"], worktree, overwrite=True)
                how += " + untracked files"
            cwd = worktree / os.path.relpath(recorded_cwd, root) if recorded_cwd else worktree
            yield cwd, how
            return
        snapshot = next((a for a in record.artifacts if a["kind"] == "code-snapshot"), None)
        if snapshot is not None:
            from striate.reproduce.snapshot import restore_snapshot

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
            _dataset_fingerprint_matches(config, original)
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
