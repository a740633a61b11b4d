"""Export a model to ONNX or TorchScript, and prove the file computes what PyTorch computes.

The source is a registered model name or layer-spec file (fresh weights) or a run id
(the run's final ``model.safetensors``). Every export is reloaded and run on a
random batch of two; the largest absolute difference from PyTorch's logits is
reported and must stay within ``TOLERANCE``. ONNX uses PyTorch's ``torch.export``
based exporter (needs ``onnx`` and ``onnxscript``) and is checked with onnxruntime:
``pip install 'striate[export]'``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from striate.archives import give_user_mode
from striate.errors import ModelError, RunNotFoundError, StoreError, StriateError
from striate.models.registry import is_spec_path

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
TOLERANCE = 1e-4
# ONNX files are protobufs, capped at 2 GiB: weights above this size go to a `.onnx.data` side file.
EXTERNAL_DATA_BYTES = 1 << 30
_EXPORT_HINT = "pip install 'striate[export]' (onnx, onnxscript, onnxruntime)"


class ExportError(StriateError):
    """An export failed, or the exported file disagrees with PyTorch."""


@dataclass
class ExportResult:
    """Where the export went and how closely it matches PyTorch."""

    path: str
    format: str
    source: str  # "model lenet5 (fresh weights)" or "run 1a2b3c4d (lenet5)"
    input_shape: tuple[int, ...]
    num_classes: int
    max_abs_diff: float
    tolerance: float = TOLERANCE
    dynamic_batch: bool = True
    files: list[str] = field(default_factory=list)  # every file written: the model, and its .onnx.data if any
    sha256: str = ""  # of the model file: `striate which` finds the run by it
    run_id: str | None = None  # the run exported, when the source is a run
    recorded: str = ""  # "" when the export's hash was recorded with the run; else why not

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {**asdict(self), "input_shape": list(self.input_shape)}


@dataclass
class _Source:
    model: nn.Module
    description: str
    stem: str
    input_shape: tuple[int, int, int]
    num_classes: int
    run_id: str | None = None
    store_location: str | None = None


def export(target: str, fmt: str = "onnx", output: str | Path | None = None,
           input_shape: tuple[int, int, int] | None = None, num_classes: int | None = None,
           store: str | None = None, force: bool = False) -> ExportResult:
    """Export model name, spec file or run id ``target`` as ``fmt`` (onnx or torchscript) and verify it.

    An existing output is replaced only with ``force`` (and only a regular file); nothing is ever
    written inside a store folder or artifact root. The files are written in a temporary folder
    beside the output and moved into place at the end: an interrupted export leaves no half file."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
    if num_classes is not None and num_classes < 1:
        raise ExportError(f"--classes {num_classes} is not a class count", "give 1 or more, e.g. --classes 10")
    source = resolve(target, input_shape, num_classes, store)
    path = Path(output) if output else Path(source.stem + FORMATS[fmt])
    side_file = Path(f"{path}.data")
    _check_writable(path, [path, side_file] if fmt == "onnx" else [path], force, source, store)
    model = source.model.eval()
    # Export with a batch of 2 and check with 3: a batch of 1 could be baked into the graph unnoticed.
    example = torch.randn(2, *source.input_shape, generator=torch.Generator().manual_seed(0))
    check = torch.randn(3, *source.input_shape, generator=torch.Generator().manual_seed(1))
    try:
        with torch.no_grad():
            expected = model(check)
    except RuntimeError as exc:
        shape = "x".join(map(str, source.input_shape))
        raise ExportError(f"{source.description} cannot run on a {shape} input: {str(exc).splitlines()[0]}",
                          "give --input with the model's channels and at least its minimum size "
                          "(`striate models` lists them)") from None
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent))
    try:
        staged = staging / path.name  # same base name: an .onnx file names its .onnx.data side file
        if fmt == "onnx":
            diff, dynamic = _onnx(model, example, check, expected, staged)
        else:
            diff, dynamic = _torchscript(model, example, check, expected, staged), True
        staged_side = Path(f"{staged}.data")
        for written in (staged, staged_side):
            if written.exists():
                give_user_mode(written)  # mkdtemp's folder is private; the files follow the umask
        if staged_side.exists():
            os.replace(staged_side, side_file)
        elif fmt == "onnx" and side_file.is_file() and not side_file.is_symlink():
            side_file.unlink()  # an earlier export's weights (replaced with --force): it would mislead
        os.replace(staged, path)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}", "choose a writable --output") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not diff <= TOLERANCE:  # also catches NaN
        raise ExportError(f"the exported {fmt} model differs from PyTorch by {diff:.3g} (limit {TOLERANCE:g}); "
                          f"kept {path} for inspection", "report this model; try the other format meanwhile")
    from striate.tracking.store.base import file_sha256

    files = [str(path)] + ([str(side_file)] if fmt == "onnx" and side_file.is_file() else [])
    result = ExportResult(str(path), fmt, source.description, source.input_shape, source.num_classes, diff,
                          dynamic_batch=dynamic, files=files, sha256=file_sha256(path), run_id=source.run_id)
    if source.run_id is not None:
        result.recorded = _record_export(source, result)
    return result


def _record_export(source: _Source, result: ExportResult) -> str:
    """Add the export (file name, format, SHA-256 of each file) to the run's summary, so `striate which`
    finds the run from the exported file; return "" when recorded, else why it was not.

    Exporting only reads a store (it works on a read-only copy): when the store cannot be written,
    the export stands and the reason is reported instead.
    """
    import time

    from striate.tracking.store import open_store
    from striate.tracking.store.base import file_sha256

    try:
        store = open_store(source.store_location)
        record = store.get_run(str(source.run_id))
        exports = [e for e in (record.summary.get("exports") or []) if isinstance(e, dict)]
        for name in result.files:
            entry = {"file": Path(name).name, "format": result.format, "sha256": file_sha256(name),
                     "size": Path(name).stat().st_size, "exported_at": time.time()}
            exports = [e for e in exports if e.get("sha256") != entry["sha256"]] + [entry]
        store.update_run(record.id, summary={**record.summary, "exports": exports[-100:]})
    except Exception as exc:  # noqa: BLE001 - a read-only mount, a locked or remote store: the export stands
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    return ""


def _check_writable(path: Path, outputs: list[Path], force: bool, source: _Source, store: str | None) -> None:
    """Fail before the (slow) export when the output cannot be written: one error, not an exporter traceback.

    Refused: an existing output without ``force``; anything but a regular file even with it; and any
    path inside a store folder or artifact root (the database or a run's recorded weights)."""
    from striate.tracking.store import default_store_location, is_remote, store_owning

    roots: list[str | None] = []
    for location in (source.store_location, store, default_store_location()):
        if location and not is_remote(location):
            roots.append(str(Path(location) / "artifacts"))
    owner = store_owning(path, *roots)
    if owner is not None:
        raise ExportError(f"cannot write {path}: it is inside the store folder {owner}, where it would replace "
                          "the store's database or a run's files", "choose an --output outside the store folder")
    for existing in outputs:
        if existing.is_symlink() or (existing.exists() and not existing.is_file()):
            if existing.is_dir() and not existing.is_symlink():
                break  # a folder: reported below as unwritable
            raise ExportError(f"cannot write {existing}: it is not a regular file",
                              "choose a file name for --output")
        if existing.exists() and not force:
            raise ExportError(f"{existing} already exists", "choose another --output, or pass --force to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
        if path.is_dir():
            raise IsADirectoryError(21, "it is a folder")
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}", "choose a writable --output") from None


def resolve(target: str, input_shape: tuple[int, int, int] | None, num_classes: int | None,
            store: str | None) -> _Source:
    """The model to export: a registered model or spec with fresh weights, else a run's final weights."""
    from striate import models

    try:
        entry = models.info(target)
    except ModelError as model_error:
        from striate.tracking.store import default_store_location, holds_store

        location = Path(store or default_store_location())
        if not holds_store(location):  # opening a store would create one: do not, for a typo
            raise ExportError(f"{target!r} is neither a model nor a run id ({model_error.problem}); there is no "
                              f"store at {location} to look for runs in",
                              "give a name from `striate models`, a spec file, or --store with the run's store"
                              ) from None
        try:
            return _from_run(target, input_shape, num_classes, str(location))
        except RunNotFoundError:
            raise ExportError(f"{target!r} is neither a model nor a run id ({model_error.problem})",
                              "give a name from `striate models`, a spec file, or a run id from `striate runs` "
                              "(with --store when the store is elsewhere)") from None
    shape = input_shape or (1, entry.input_size, entry.input_size)
    classes = num_classes or 10
    # A spec's linear sizes are inferred for one input size: build it for the size asked for.
    options = {"input_size": shape[1]} if is_spec_path(target) else {}
    model = models.create(target, num_classes=classes, in_channels=shape[0], **options)
    return _Source(model, f"model {target} (fresh weights)", Path(target).stem, shape, classes)


def _from_run(run_id: str, input_shape: tuple[int, int, int] | None, num_classes: int | None,
              store_location: str | None) -> _Source:
    from striate import models
    from striate.models import spec
    from striate.tracking.store import open_store
    from striate.train.checkpoint import load_weights

    store = open_store(store_location, read_only=True)
    record = store.get_run(run_id)
    try:  # the store's file (for a team server: downloaded into the local cache, checked by SHA-256)
        weights = store.artifact_file(record.id, "model.safetensors")
    except StoreError as exc:
        raise ExportError(f"run {record.id[:8]} ({record.status}) has no final weights: {exc.problem}",
                          "export a run that finished training, or a model name for fresh weights") from None
    classes = list(record.dataset.get("classes") or [])
    if num_classes is not None and classes and num_classes != len(classes):
        raise ExportError(f"run {record.id[:8]} was trained for {len(classes)} classes, not {num_classes}",
                          "leave out --classes when exporting a run")
    n_classes = len(classes) or num_classes or 10
    config = record.config or {}
    options = dict(config.get("model_options") or {})
    name = record.model or config.get("model")
    if not name:
        raise ExportError(f"run {record.id[:8]} does not say which model it trained", "export a model name instead")
    stored_spec = _stored_spec(record, store)
    image_shape = list(record.dataset.get("image_shape") or [1, 28, 28])
    if input_shape is None:
        side = config.get("image_size") or (record.summary.get("input_shape") or [0, 0, 0])[1]
        if not side:
            minimum = models.info(name).min_input_size if not stored_spec else spec.min_input_size(stored_spec)
            side = max(image_shape[1], minimum)
        input_shape = (int(image_shape[0]), int(side), int(side))
    # Built exactly as the engine built it (no input_size), so the weights fit.
    if stored_spec:  # the spec saved with the run: the file may have changed or moved since
        model: nn.Module = spec.build_model(stored_spec, num_classes=n_classes, in_channels=input_shape[0], **options)
    else:
        model = models.create(name, num_classes=n_classes, in_channels=input_shape[0], **options)
    try:
        load_weights(model, weights)
    except RuntimeError as exc:
        raise ExportError(f"run {record.id[:8]}'s weights do not fit {name}: {str(exc).splitlines()[0]}",
                          "the model's code or spec changed since the run; check out the run's commit") from None
    return _Source(model, f"run {record.id[:8]} ({name})", f"{Path(name).stem}-{record.id[:8]}", input_shape,
                   n_classes, run_id=record.id, store_location=store_location)


def _stored_spec(record: Any, store: Any) -> dict[str, Any] | None:
    """The layer spec a run trained, if the run kept one (config, summary, or a "model-spec" artifact)."""
    from striate.models.spec import load_spec

    for holder in (record.config or {}, record.summary or {}):
        if isinstance(holder.get("model_spec"), dict):
            return holder["model_spec"]
    for artifact in record.artifacts or []:
        if artifact.get("kind") == "model-spec":
            return load_spec(store.artifact_file(record.id, artifact["path"]))
    return None


def _onnx(model: nn.Module, example: torch.Tensor, check: torch.Tensor, expected: torch.Tensor,
          path: Path) -> tuple[float, bool]:
    try:
        import onnxruntime
        import onnxscript  # noqa: F401 - the torch.export-based exporter needs it
    except ImportError:
        raise ExportError("ONNX export needs onnx, onnxscript and onnxruntime", _EXPORT_HINT) from None
    dynamic = True
    # One self-contained file unless the weights are too big for one protobuf (the exporter's default
    # writes a .onnx.data side file even for LeNet-5's 250 KB).
    weight_bytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    external = weight_bytes > EXTERNAL_DATA_BYTES
    with _quiet():
        try:
            torch.onnx.export(model, (example,), str(path), dynamo=True, input_names=["input"], external_data=external,
                              output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},))
        except Exception:  # noqa: BLE001 - some models specialize on the batch size; a fixed batch still works
            dynamic = False
            try:
                torch.onnx.export(model, (example[:1],), str(path), dynamo=True, input_names=["input"],
                                  output_names=["logits"], external_data=external)
            except Exception as exc:  # noqa: BLE001 - exporter errors come in many types
                raise ExportError(f"ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}",
                                  "try --format torchscript") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batch = check if dynamic else check[:1]
    got = session.run(None, {name: batch.numpy()})[0]
    return float((torch.from_numpy(got) - expected[: batch.shape[0]]).abs().max()), dynamic


def _torchscript(model: nn.Module, example: torch.Tensor, check: torch.Tensor, expected: torch.Tensor,
                 path: Path) -> float:
    with _quiet():  # torch.jit is deprecated upstream but still the format C++ and mobile runtimes load
        try:
            traced = torch.jit.trace(model, example)
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"TorchScript tracing failed: {type(exc).__name__}: {str(exc).splitlines()[0]}",
                              "try --format onnx") from None
        torch.jit.save(traced, str(path))
        reloaded = torch.jit.load(str(path))
        with torch.no_grad():
            got = reloaded(check)
    return float((got - expected).abs().max())


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' progress prints, warnings and log lines; errors still raise."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
