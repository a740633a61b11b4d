"""Writing a run's metrics as TensorBoard event files (needs the `tensorboard` package)."""

from __future__ import annotations

from pathlib import Path

from striate.errors import ConfigError
from striate.tracking.store import Store


def export_run(store: Store, run_id: str, out_dir: Path) -> dict[str, int]:
    """Write every metric of a run as scalars under ``out_dir/<run name>``; return points per metric."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("TensorBoard export needs the tensorboard package",
                          "pip install tensorboard (or pip install 'striate[integrations]')") from None
    record = store.get_run(run_id)
    target = out_dir / f"{record.name}-{record.id[:8]}"
    written: dict[str, int] = {}
    writer = SummaryWriter(log_dir=str(target))
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
