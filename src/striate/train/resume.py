"""Continuing a stopped, crashed or failed run exactly from its last checkpoint, and what reruns must pin."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from striate.config import TrainConfig
from striate.errors import ConfigError, DataError, StoreError
from striate.tracking.store import RunRecord, Store
from striate.tracking.store.base import ArtifactMissingError, file_sha256
from striate.train import checkpoint as ckpt
from striate.train.engine import ResumePoint


def check_dataset_fingerprint(config: TrainConfig, record: RunRecord) -> None:
    """Refuse to rerun or continue ``record`` on data whose content differs from what it trained on."""
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


def resume_point(store: Store, record: RunRecord) -> ResumePoint:
    """The run's last checkpoint, read and checked (present, SHA-256 as recorded, readable) before anything
    about the run is changed."""
    if record.status == "finished":
        raise ConfigError(f"run {record.name} already finished", "resume continues stopped, crashed or failed runs")
    if record.status == "running":
        raise ConfigError(f"run {record.name} is still running (its process is alive)", "stop it first (Ctrl-C)")
    last = record.summary.get("last_checkpoint")
    if not last:
        raise ConfigError(f"run {record.name} has no checkpoint to resume from",
                          "use `striate reproduce` to run it again from the start")
    recorded = {a["path"]: a["sha256"] for a in record.artifacts}
    files: dict[str, Path] = {}
    for part in ("weights", "state"):
        try:  # the store's file, checked to stay in the run's folder (from a team server: downloaded, checked)
            path = store.artifact_file(record.id, last[part])
        except ArtifactMissingError:
            raise ConfigError(f"run {record.name}'s last checkpoint file {last[part]} is missing",
                              "use `striate reproduce` to run it again from the start") from None
        except StoreError as exc:
            raise ConfigError(f"run {record.name}'s last checkpoint file cannot be used: {exc.problem}",
                              "use `striate reproduce` to run it again from the start") from None
        if last[part] in recorded and file_sha256(path) != recorded[last[part]]:
            raise ConfigError(f"run {record.name}'s last checkpoint file {last[part]} is damaged (its SHA-256 "
                              "differs from the one recorded)",
                              "use `striate reproduce` to run it again from the start")
        files[part] = path
    try:
        state = ckpt.load_training_state(files["state"])
        weights = load_file(str(files["weights"]))
    except Exception as exc:
        raise ConfigError(f"run {record.name}'s last checkpoint cannot be read ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})",
                          "use `striate reproduce` to run it again from the start") from None
    return ResumePoint(files["weights"], weights, state)
