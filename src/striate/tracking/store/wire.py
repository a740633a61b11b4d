"""How store data travels over HTTP between the striate client (``http.py``) and the team server.

Metric points travel as the codec's packed arrays (little-endian int64 steps, float64 times and
values), base64-encoded inside JSON: exact to the bit (NaN and infinities included), and a 1,000-point
batch is one short string per array instead of 3,000 JSON numbers. Run records travel as JSON
objects of :class:`RunRecord`'s fields; floats JSON cannot carry (NaN, ±inf) as the strings "NaN",
"Infinity" and "-Infinity" in the summary, where a run may hold them.

Everything decoded here comes from the network: :func:`decode_series` and :func:`decode_chunks`
check types, base64, array lengths and counts before anything reaches a store (ConfigError,
answered 400), and the server caps the body size before it is read.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
from typing import Any

import numpy as np

from striate.errors import ConfigError
from striate.tracking.store.base import Owner, RunRecord
from striate.tracking.store.codec import FLOAT_DTYPE, STEP_DTYPE, STEP_SIZE, MetricChunk, MetricSeries, pack_all
from striate.tracking.store.limits import check_keys

MAX_POINTS_PER_REQUEST = 5_000_000  # a request holding more is refused before its arrays are built
MAX_JSON_DEPTH = 64  # nesting of a run's config, summary, environment or dataset (a model's config is < 10 deep)
_FIX = "send what the striate client sends (see /api/v1/openapi.json)"
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise ConfigError(f"{what} is not a base64 string", _FIX)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{what} is not valid base64", _FIX) from None


def encode_series(series: list[MetricSeries]) -> list[dict[str, Any]]:
    """Series -> JSON objects (key and three base64 arrays); series of one flush share their arrays' text."""
    return [{"key": c.key, "steps": _b64(c.steps), "times": _b64(c.times), "values": _b64(c.values)}
            for c in pack_all(series)]


def _arrays(item: Any, what: str) -> tuple[str, bytes, bytes, bytes]:
    if not isinstance(item, dict):
        raise ConfigError(f"{what} is not an object", _FIX)
    key = item.get("key")
    if not isinstance(key, str) or not key:
        raise ConfigError(f"{what} has no metric key", _FIX)
    check_keys("metric key", [key])  # the width and characters every store can hold
    steps = _unb64(item.get("steps"), f"{what}.steps")
    times = _unb64(item.get("times"), f"{what}.times")
    values = _unb64(item.get("values"), f"{what}.values")
    if len(steps) % STEP_SIZE or not len(steps) == len(times) == len(values):
        raise ConfigError(f"{what} ({key[:40]!r}): steps, times and values must hold the same number of 8-byte "
                          f"items (got {len(steps)}, {len(times)} and {len(values)} bytes)", _FIX)
    return key, steps, times, values


def _check_total(items: list[Any], what: str) -> None:
    if not isinstance(items, list):
        raise ConfigError(f"{what} must be a list", _FIX)


def decode_series(items: Any) -> list[MetricSeries]:
    """JSON objects -> series, checked (ConfigError names the first bad one)."""
    _check_total(items, "series")
    decoded, total = [], 0
    cache: dict[str, np.ndarray] = {}
    for i, item in enumerate(items):
        key, steps, times, values = _arrays(item, f"series[{i}]")
        total += len(steps) // STEP_SIZE
        if total > MAX_POINTS_PER_REQUEST:
            raise ConfigError(f"the request holds over {MAX_POINTS_PER_REQUEST:,} points", "send them in batches")
        # the series of one flush carry the same steps and times text: decoded once
        step_array = cache.get(item["steps"])
        if step_array is None:
            step_array = cache[item["steps"]] = np.frombuffer(steps, dtype=STEP_DTYPE)
        time_array = cache.get("t" + item["times"])
        if time_array is None:
            time_array = cache["t" + item["times"]] = np.frombuffer(times, dtype=FLOAT_DTYPE)
        decoded.append(MetricSeries(key, step_array, time_array, np.frombuffer(values, dtype=FLOAT_DTYPE)))
    return decoded


def encode_chunks(chunks: list[MetricChunk]) -> list[dict[str, Any]]:
    """Chunks (a sync) -> JSON objects with their uids."""
    return [{"uid": c.uid, "key": c.key, "steps": _b64(c.steps), "times": _b64(c.times), "values": _b64(c.values)}
            for c in chunks]


def decode_chunks(items: Any) -> list[MetricChunk]:
    """JSON objects -> chunks, checked like :func:`decode_series`; every chunk needs a uid."""
    _check_total(items, "chunks")
    decoded, total = [], 0
    for i, item in enumerate(items):
        key, steps, times, values = _arrays(item, f"chunks[{i}]")
        uid = item.get("uid")
        if not isinstance(uid, str) or not uid or len(uid) > 200:
            raise ConfigError(f"chunks[{i}] has no uid (or one over 200 characters)", _FIX)
        total += len(steps) // STEP_SIZE
        if total > MAX_POINTS_PER_REQUEST:
            raise ConfigError(f"the request holds over {MAX_POINTS_PER_REQUEST:,} points", "send them in batches")
        decoded.append(MetricChunk(uid, key, steps, times, values))
    return decoded


def encode_owner(owner: Owner | None) -> dict[str, Any] | None:
    """The claim a write is made under, or None."""
    return None if owner is None else dataclasses.asdict(owner)


def decode_owner(value: Any) -> Owner | None:
    """The claim a write is made under, checked."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"host", "pid", "pid_started_at"}:
        raise ConfigError("owner must be an object with host, pid and pid_started_at", _FIX)
    host, pid, started = value["host"], value["pid"], value["pid_started_at"]
    if not (host is None or isinstance(host, str)) or not (pid is None or type(pid) is int) or not (
            started is None or isinstance(started, (int, float))):
        raise ConfigError("owner holds a value of the wrong type", _FIX)
    return Owner(host, pid, None if started is None else float(started))


def check_depth(value: Any, what: str, limit: int = MAX_JSON_DEPTH) -> None:
    """ConfigError when ``value`` (JSON from the network) nests deeper than ``limit`` (reading it back would
    exhaust the interpreter's recursion limit) or holds an integer beyond 64 bits (no column or float holds it)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                raise ConfigError(f"{what} nests deeper than {limit} levels", "flatten it")
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
        elif type(item) is int and not -(2**63) <= item < 2**63:
            raise ConfigError(f"{what} holds an integer beyond 64 bits", "send it as a string or a float")


def finite_json(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by their names (standard JSON has none)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def _restore_floats(value: Any) -> Any:
    if isinstance(value, str):
        return _NON_FINITE.get(value, value)
    if isinstance(value, dict):
        return {k: _restore_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore_floats(v) for v in value]
    return value


RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(RunRecord))


def record_to_json(record: RunRecord) -> dict[str, Any]:
    """A run record as a JSON object (every field; non-finite floats as names)."""
    return finite_json(dataclasses.asdict(record))


def record_from_json(data: Any) -> RunRecord:
    """A run record from the JSON :func:`record_to_json` wrote; the summary gets its NaN and infinities back."""
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise ConfigError("a run record must be an object with an id", _FIX)
    known = {k: v for k, v in data.items() if k in RECORD_FIELDS}
    if isinstance(known.get("summary"), dict):
        known["summary"] = _restore_floats(known["summary"])
    try:
        return RunRecord(**known)
    except TypeError as exc:
        raise ConfigError(f"a run record is incomplete: {exc}", _FIX) from None
