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


class UntrustedRunError(StriateError):
    """Reproducing would run code that did not come from this machine, and nobody said to trust it."""


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
            yield _inside(worktree, os.path.relpath(recorded_cwd, root) if recorded_cwd else ".", record), how
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


def _inside(folder: Path, relative: str, record: RunRecord) -> Path:
    """``folder/relative``, refused when a recorded path would lead out of the reproduction's own folder."""
    target = (folder / relative).resolve()
    if not target.is_relative_to(folder.resolve()):
        raise ConfigError(f"run {record.name} records a working directory outside its repository ({relative})",
                          "reproduce only runs whose records you trust; this record was altered or is not striate's")
    return target


def _git(args: list[str], cwd: str | Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ConfigError(f"git {' '.join(args[:2])} failed: {done.stderr.strip()[:200]}", "check the repository")
    return done.stdout


def _git_has(root: str, commit: str) -> bool:
    return subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=root,
                          capture_output=True).returncode == 0


# The reproduction's `striate train` never sees the restored code folder on its import path: a
# recorded file named striate/ or json.py must not replace the installed package or the standard
# library. (`python -c` puts '' first on sys.path; the bootstrap drops it before importing anything.)
_TRAIN_BOOTSTRAP = "import sys; del sys.path[0]; from striate.cli.app import main; sys.argv[0] = 'striate'; main()"


def foreign_origin(store: Store, record: RunRecord) -> str | None:
    """Where a run's code came from when that is not this machine (None for a run recorded here).

    Imported runs (``environment.imported_from``, set by every importer whatever the archive says),
    runs recorded on another host, and reproductions of such runs are foreign.
    """
    import socket

    seen: set[str] = set()
    while True:
        imported = record.environment.get("imported_from")
        if imported:
            source = imported.get("archive") if isinstance(imported, dict) else imported
            return f"imported from {source}"
        if record.host and record.host != socket.gethostname():
            return f"recorded on another host ({record.host})"
        if not record.reproduction_of or record.reproduction_of in seen:
            return None
        seen.add(record.id)
        try:
            record = store.get_run(record.reproduction_of)
        except StriateError:
            return None


def what_will_run(record: RunRecord) -> list[str]:
    """Lines telling a user what reproducing ``record`` runs: its config and where its code comes from."""
    config = record.config
    lines = [f"striate train with run {record.name}'s recorded config: model {config.get('model')}, "
             f"data {config.get('data')}, {config.get('epochs')} epochs"]
    git = record.environment.get("git") or {}
    if git.get("commit"):
        lines.append(f"code: git commit {str(git['commit'])[:10]} of {git.get('root')}"
                     + (f" with a recorded uncommitted diff of {len(git.get('diff') or '')} characters"
                        if git.get("diff") else ""))
    snapshot = record.summary.get("code_snapshot") or {}
    if snapshot:
        lines.append(f"code: source snapshot {str(snapshot.get('sha256'))[:12]} ({snapshot.get('files')} files), "
                     "restored as the working directory; its Python files are never imported")
    return lines


def reproduce(store_location: str, run_ref: str, strict: bool = False,
              progress: bool = False, trust: bool = False) -> dict[str, Any]:
    """Run a recorded run again as a new run linked by reproduction_of; return what happened.

    A run whose code did not come from this machine is refused unless ``trust`` is given.
    """
    from striate.tracking.capture import packages

    store = open_store(store_location)
    original = store.get_run(run_ref)
    origin = foreign_origin(store, original)
    if origin and not trust:
        raise UntrustedRunError(f"run {original.name} was {origin}; reproducing it runs "
                                + "; ".join(what_will_run(original)),
                                f"pass --trust if you trust its source (`striate show {original.id[:8]}` shows "
                                "its record)")
    drift = package_drift(original.environment.get("packages") or {}, packages())
    if drift and strict:
        raise DriftError(f"the environment differs from run {original.name}'s: {describe(drift)}",
                         f"install the recorded versions (`striate show {original.id[:8]} --requirements`) "
                         "or drop --strict")
    config = TrainConfig.from_mapping(original.config, source=f"run {original.name}")
    store_path = str(Path(store_location).resolve())
    with rebuilt_code(original, store) as (cwd, how), tempfile.TemporaryDirectory(prefix="striate-repro-") as tmp:
        workdir = cwd or Path.cwd()
        with _chdir(workdir):
            check_dataset_fingerprint(config, original)
        config_file = Path(tmp) / "reproduction.yaml"  # never inside the code folder or the user's folder
        settings = pin_threads(config, original).to_dict()
        settings["name"] = f"{original.name}-repro"
        config_file.write_text(yaml.safe_dump(settings))
        env = dict(os.environ)
        if cwd is not None and how.startswith("git") and (cwd / "src" / "striate").is_dir():
            # A run of striate's own repository on this machine reruns with that commit's striate.
            env["PYTHONPATH"] = os.pathsep.join([str(cwd / "src"), env.get("PYTHONPATH", "")])
        command = [sys.executable, "-c", _TRAIN_BOOTSTRAP, "train", "-c", str(config_file), "--store", store_path,
                   "--reproduction-of", original.id, "--json"]
        if not progress:
            command.append("--no-progress")
        done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        raise StoreError(f"the reproduction failed: {message}", "see `striate runs` for its record")
    new_id = json.loads(done.stdout)["id"]
    return {"original": original.id, "reproduction": new_id, "code": how, "drift": drift, "origin": origin}


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)
