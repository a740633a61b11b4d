"""A PyTorch Lightning logger that records into striate: ``Trainer(logger=StriateLogger(project=...))``."""

from __future__ import annotations

import os
from argparse import Namespace
from typing import Any, Mapping

try:
    from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
    from lightning.pytorch.utilities import rank_zero_only
except ImportError:  # the older package name
    try:
        from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment  # type: ignore[no-redef,assignment]
        from pytorch_lightning.utilities import rank_zero_only  # type: ignore[no-redef]
    except ImportError:
        from striate.errors import ConfigError

        raise ConfigError("the Lightning logger needs PyTorch Lightning",
                          "pip install lightning") from None

from striate.tracking.run import Run, init
from striate.tracking.store.sql import flatten_params


class StriateLogger(Logger):
    """Logs Lightning's hyperparameters and metrics to a striate run (created on first use)."""

    def __init__(self, project: str = "default", name: str | None = None, tags: list[str] | None = None,
                 store: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self._project = project
        self._run_name = name
        self._tags = tags
        self._store = store
        self._run: Run | None = None
        self._pending_config: dict[str, Any] = {}

    @property
    def name(self) -> str:
        """The project, which Lightning shows as the logger name."""
        return self._project

    @property
    def version(self) -> str:
        """The striate run id."""
        return self.experiment.id

    @property
    @rank_zero_experiment
    def experiment(self) -> Run:
        """The striate run, started on first access."""
        if self._run is None:
            self._run = init(project=self._project, name=self._run_name, tags=self._tags, store=self._store,
                             config=self._pending_config)
        return self._run

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Record hyperparameters as the run's config (flattened params for filtering)."""
        values = vars(params) if isinstance(params, Namespace) else dict(params)
        values = {k: v if isinstance(v, (int, float, str, bool, type(None), list, dict)) else str(v)
                  for k, v in values.items()}
        if self._run is None:
            self._pending_config.update(values)
            return
        config = {**self._run.config, **values}
        self._run.config = config
        self._run.store.update_run(self._run.id, config=config)
        self._run.store.set_params(self._run.id, flatten_params(config))

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Enqueue metric values (the run's background writer stores them)."""
        self.experiment.log({k: float(v) for k, v in metrics.items()}, step=step)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Finish the run: Lightning's "success" becomes finished, "failed" failed, anything else stopped."""
        if self._run is not None and self._run.status == "running":
            self._run.finish({"success": "finished", "failed": "failed"}.get(status, "stopped"))
