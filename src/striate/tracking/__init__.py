"""Experiment tracking: the run client, the read API and the stores."""

from striate.tracking.api import Api, RunView
from striate.tracking.run import Run, active_run, init, log

__all__ = ["Api", "Run", "RunView", "active_run", "init", "log"]
