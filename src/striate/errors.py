"""One exception tree for striate: every error names the problem and the fix.

The CLI prints ``str(error)`` as one red line and exits with ``error.exit_code``.
``http_status`` lets a future server map errors onto HTTP responses.
"""

from __future__ import annotations


class StriateError(Exception):
    """Base of every error striate raises on purpose."""

    exit_code = 2
    http_status = 400

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem if not fix else f"{problem} — fix: {fix}")


class ConfigError(StriateError):
    """A configuration value or file is invalid."""


class DataError(StriateError):
    """A dataset is missing, corrupt or cannot be fetched."""

    http_status = 422


class ModelError(StriateError):
    """A model name or model option is invalid."""

    http_status = 404


class StoreError(StriateError):
    """The tracking store cannot be opened or written."""

    http_status = 503


class RunNotFoundError(StoreError):
    """No run matches the given id or prefix."""

    http_status = 404


class TrainingError(StriateError):
    """Training itself went wrong: the loss diverged, a checkpoint could not be written."""

    exit_code = 4
    http_status = 422


class AuthError(StriateError):
    """A request to the server carries no valid credentials."""

    http_status = 401


class ForbiddenError(StriateError):
    """The user may see the project but not do this to it."""

    http_status = 403


class NotFoundError(StriateError):
    """No such user or project (as far as the caller may know)."""

    http_status = 404


class ConflictError(StriateError):
    """The thing to create exists already."""

    http_status = 409


class TooManyRequestsError(StriateError):
    """Too many attempts in a short time (failed logins): wait before trying again."""

    http_status = 429

    def __init__(self, problem: str, fix: str | None = None, retry_after_s: int = 60) -> None:
        super().__init__(problem, fix)
        self.retry_after_s = retry_after_s
