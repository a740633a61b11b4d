"""`striate reproduce`: run a recorded run again and prove it matched.

A reproduction rebuilds the run's code (its git commit in a fresh temporary clone with the recorded
uncommitted diff applied, or its stored source snapshot), its exact resolved config and its data
(checked by content hash), runs `striate train` there as a new run linked by `reproduction_of`,
and with `verify` compares weights and metric series with the original.
"""

from __future__ import annotations

import contextlib
import os
import re
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


_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # a full SHA-1 or SHA-256 id: nothing git reads as an option


@contextlib.contextmanager
def rebuilt_code(record: RunRecord, store: Store, origin: str | None = None,
                 repo: Path | None = None) -> Iterator[tuple[Path | None, str]]:
    """A temporary folder holding the run's code; yields (working directory, how it was rebuilt).

    The code is a fresh clone, made in the temporary folder, of the repository that holds the run's
    commit, checked out at that commit. The repository is the one the run recorded only for a run
    recorded on this machine (``origin`` None); for a foreign run it is ``repo``, or the repository
    of the current folder, never a path taken from the record. Nothing is written into the source
    repository (no worktree is registered there); it is only read from.
    """
    git = record.environment.get("git") or {}
    recorded_cwd = record.environment.get("cwd")
    tmp = Path(tempfile.mkdtemp(prefix="striate-repro-"))
    try:
        commit = git.get("commit")
        if commit is not None and not (isinstance(commit, str) and _COMMIT.fullmatch(commit)):
            raise ConfigError(f"run {record.name} records an invalid git commit {str(commit)[:80]!r}",
                              "reproduce only runs whose records you trust; this record was altered "
                              "or is not striate's")
        source = _source_repository(git, origin, repo) if git.get("in_repo") and commit else None
        if source is not None and commit is not None and _git_has(source, commit):
            code = tmp / "code"
            _clone_at(source, code, commit, git.get("branch"), shared=origin is None)
            if git.get("diff_truncated"):
                raise ConfigError(f"run {record.name}'s uncommitted diff was too large to record in full",
                                  "commit the changes before runs you want to reproduce")
            if git.get("diff"):
                apply = subprocess.run(["git", "apply", "--whitespace=nowarn", "-"], cwd=code,
                                       input=git["diff"], text=True, capture_output=True)
                if apply.returncode != 0:
                    raise ConfigError(f"the run's uncommitted diff does not apply to commit {commit[:10]}: "
                                      f"{apply.stderr.strip().splitlines()[0] if apply.stderr.strip() else ''}",
                                      "check the repository history")
            how = f"git {commit[:10]}" + (" + uncommitted diff" if git.get("diff") else "")
            untracked = next((a for a in record.artifacts if a["kind"] == "code-untracked"), None)
            if untracked is not None:
                from striate.tracking.snapshot import restore_snapshot

                restore_snapshot(store.artifact_file(record.id, untracked["path"]), code, overwrite=True)
                how += " + untracked files"
            relative = os.path.relpath(recorded_cwd, git["root"]) if recorded_cwd and git.get("root") else "."
            yield _inside(code, relative, record), how
            return
        snapshot = next((a for a in record.artifacts if a["kind"] == "code-snapshot"), None)
        if snapshot is not None:
            from striate.tracking.snapshot import restore_snapshot

            target = tmp / "code"
            restore_snapshot(store.artifact_file(record.id, snapshot["path"]), target)
            yield target, f"source snapshot {snapshot['sha256'][:12]}"
            return
        if commit:
            yield None, (f"current code (git commit {str(commit)[:10]} is not in "
                         f"{source or 'any repository reproduce may read'}, and the run has no source snapshot)")
            return
        yield None, "current code (the run recorded no git commit or source snapshot)"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _source_repository(git: dict[str, Any], origin: str | None, repo: Path | None) -> Path | None:
    """The repository to clone the run's commit from.

    A run recorded here names its own repository. A foreign record's ``root`` is a path someone else
    wrote: it is never used; the user's ``repo`` (or the repository of the current folder) is.
    """
    if origin is None and repo is None:
        root = git.get("root")
        return Path(root) if root and Path(root).is_dir() else None
    where = repo or Path.cwd()
    if repo is not None and not repo.is_dir():
        raise ConfigError(f"--repo {repo} is not a folder", "name the git repository that holds the run's commit")
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=where, capture_output=True, text=True)
    if top.returncode != 0:
        if repo is not None:
            raise ConfigError(f"--repo {repo} is not a git repository",
                              "name the git repository that holds the run's commit")
        return None
    return Path(top.stdout.strip())


def _clone_at(source: Path, target: Path, commit: str, branch: str | None, shared: bool) -> None:
    """Clone ``source`` into ``target`` (a new folder) and check out ``commit``, on ``branch`` as recorded.

    ``shared`` (this machine's own repository) borrows its objects instead of copying them, so a large
    repository clones in a moment; otherwise objects travel through git's transport and are checked.
    """
    _git(["clone", "--quiet", "--no-checkout", "--shared" if shared else "--no-local", str(source), str(target)],
         target.parent)
    if not _git_has(str(target), commit):  # a commit no branch reaches (rebased away, a stash)
        _git(["fetch", "--quiet", str(source), commit], target)
    if branch and branch != "HEAD" and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._/-]*", branch) \
            and ".." not in branch and not branch.endswith((".lock", "/", ".")):
        # The reproduction records the same branch name as the original, at the original's commit.
        _git(["checkout", "--quiet", "-B", branch, commit], target)
    else:
        _git(["checkout", "--quiet", "--detach", commit], target)


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


def _git_has(root: str | Path, commit: str) -> bool:
    return subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=root,
                          capture_output=True).returncode == 0


# The reproduction's `striate train` never sees the restored code folder on its import path: a
# recorded file named striate/ or json.py must not replace the installed package or the standard
# library. (`python -c` puts '' first on sys.path; the bootstrap drops it before importing anything.)
# argv[0] is the parent's own command (absolute), so the hints the training prints name a command that works.
_TRAIN_BOOTSTRAP = ("import sys; del sys.path[0]; from striate.cli.app import main; "
                    "sys.argv[0] = sys.argv.pop(1); main()")


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
        lines.append(f"code: git commit {str(git['commit'])[:10]}, cloned from --repo or the current folder's "
                     f"repository (the record's path {git.get('root')} is not used)"
                     + (f" with a recorded uncommitted diff of {len(git.get('diff') or '')} characters"
                        if git.get("diff") else ""))
    snapshot = record.summary.get("code_snapshot") or {}
    if snapshot:
        lines.append(f"code: source snapshot {str(snapshot.get('sha256'))[:12]} ({snapshot.get('files')} files), "
                     "restored as the working directory; its Python files are never imported")
    return lines


def reproduce(store_location: str, run_ref: str, strict: bool = False,
              progress: bool = True, trust: bool = False, repo: Path | None = None,
              show: bool = True) -> dict[str, Any]:
    """Run a recorded run again as a new run linked by reproduction_of; return what happened.

    The training's output is shown as `striate train` shows it (``show``): the live bar with
    ``progress``, and a line per epoch either way. ``repo`` is where a foreign run's commit is
    cloned from (the current folder's repository when not given).

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
    with rebuilt_code(original, store, origin, repo) as (cwd, how), \
            tempfile.TemporaryDirectory(prefix="striate-repro-") as tmp:
        workdir = cwd or Path.cwd()
        with _chdir(workdir):
            check_dataset_fingerprint(config, original)
        config_file = Path(tmp) / "reproduction.yaml"  # never inside the code folder or the user's folder
        settings = pin_threads(config, original).to_dict()
        settings["name"] = f"{original.name}-repro"
        config_file.write_text(yaml.safe_dump(settings))
        env = dict(os.environ)
        if origin is None and cwd is not None and how.startswith("git") and (cwd / "src" / "striate").is_dir():
            # A run of striate's own repository on this machine reruns with that commit's striate.
            env["PYTHONPATH"] = os.pathsep.join([str(cwd / "src"), env.get("PYTHONPATH", "")])
        argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
        command = [sys.executable, "-c", _TRAIN_BOOTSTRAP,
                   str(argv0.resolve()) if argv0 is not None and argv0.exists() else "striate",
                   "train", "-c", str(config_file), "--store", store_path,
                   "--reproduction-of", original.id]
        if not progress:
            command.append("--no-progress")
        child, stderr = _run_shown(command, workdir, env, show=show)
    new_id = _reproduction_id(store_location, original.id, child.pid)
    if child.returncode != 0 or new_id is None:
        message = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {child.returncode}"
        raise StoreError(f"the reproduction failed: {message}", "see `striate runs` for its record")
    if stderr and show:
        sys.stderr.write(stderr)  # the training's warnings, after its output
    return {"original": original.id, "reproduction": new_id, "code": how, "drift": drift, "origin": origin}


def _run_shown(command: list[str], cwd: Path, env: dict[str, str], show: bool) -> tuple[subprocess.Popen[str], str]:
    """Run the reproduction's `striate train`; its output (config, progress, epoch lines, summary) is shown
    as it comes when ``show``: straight to the terminal where there is one, else copied line by line."""
    with tempfile.TemporaryFile("w+") as errors:
        try:
            out_fd: int | None = sys.stdout.fileno() if show else subprocess.DEVNULL
        except (AttributeError, OSError, ValueError):  # no real file behind sys.stdout (a notebook, a test runner)
            out_fd = None
        sys.stdout.flush()
        child = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE if out_fd is None else out_fd,
                                 stderr=errors, text=True)
        if out_fd is None:
            assert child.stdout is not None
            for line in child.stdout:
                sys.stdout.write(line)
            child.stdout.close()
        child.wait()
        errors.seek(0)
        return child, errors.read()


def _reproduction_id(store_location: str, original_id: str, pid: int) -> str | None:
    """The run the reproduction's process created: it names the original and that process."""
    import socket

    for record in open_store(store_location).list_runs():
        if record.reproduction_of == original_id and record.pid == pid and record.host == socket.gethostname():
            return record.id
    return None


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)
