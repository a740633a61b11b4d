"""Writing a run's metrics as TensorBoard event files (needs the `tensorboard` package)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from striate.errors import ConfigError
from striate.tracking.store import RunRecord, Store


def export_run(store: Store, run_id: str, out_dir: Path) -> dict[str, int]:
    """Write every metric of a run as scalars under ``out_dir/<run name>-<id>``; return points per metric.

    Exporting a run again replaces the event files of its earlier export (TensorBoard reads every
    event file in a folder, so leaving them would show each point twice); other files are left alone.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("TensorBoard export needs the tensorboard package",
                          "pip install tensorboard (or pip install 'striate[integrations]')") from None
    record = store.get_run(run_id)
    # The name is stored text (maybe imported): never let it name a folder outside out_dir.
    safe_name = re.sub(r"[/\\\x00-\x1f]", "_", record.name) or "run"
    target = Path(out_dir) / f"{safe_name}-{record.id[:8]}"
    try:
        for old in sorted(target.glob("events.out.tfevents.*")) if target.is_dir() else []:
            if old.is_file() and not old.is_symlink():
                old.unlink()
        return _write(store, record, target, SummaryWriter)
    except OSError as exc:
        raise ConfigError(f"cannot write TensorBoard files to {target}: {exc.strerror or exc}",
                          "choose a folder you can write to, with free space") from None


def _write(store: Store, record: RunRecord, target: Path, writer_class: Any) -> dict[str, int]:
    written: dict[str, int] = {}
    writer = writer_class(log_dir=str(target))
    try:
        for key in sorted(record.metrics):
            series = store.history(record.id, key)
            for step, when, value in zip(series.steps.tolist(), series.times.tolist(), series.values.tolist()):
                writer.add_scalar(key, value, global_step=step, walltime=when)
            written[key] = len(series)
        flat = {k: v for k, v in record.config.items() if isinstance(v, (int, float, str, bool))}
        writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in sorted(flat.items())))
    finally:
        writer.close()
    return written
