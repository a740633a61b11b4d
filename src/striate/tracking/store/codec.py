"""The one chunk codec: how metric points are packed into rows, read back and summarized.

A chunk holds the points of one metric logged in one flush: steps as little-endian int64,
wall-clock times and values as little-endian float64, each array as one byte string. Stored,
the steps and times of a flush are one *frame* shared by every chunk logged at the same points
(:func:`share_frames`): a flush of 10 keys logged together writes its steps and times once, not
10 times. Every read and write path of every backend goes through :func:`pack` /
:func:`pack_all`, :func:`share_frames`, :func:`unpack` and :func:`summarize`; summaries of a
series are always built by merging chunk summaries in order (:func:`merge`), whether a flush
adds one chunk or a rewrite recomputes them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

if TYPE_CHECKING:
    import numpy as np

# numpy dtype strings; numpy is imported by the functions that use it, so that commands which
# never decode a metric history (`runs`, `tag`, ...) do not import it.
STEP_DTYPE = "<i8"
FLOAT_DTYPE = "<f8"
STEP_SIZE = 8  # bytes per step (int64)


@dataclass
class MetricSeries:
    """Points of one metric: steps, wall-clock times (Unix seconds) and values, as arrays.

    ``steps, times, values = series`` unpacks the three arrays; ``len(series)`` is the number of points.
    """

    key: str
    steps: np.ndarray
    times: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return int(self.steps.shape[0])

    def __iter__(self) -> Iterator[np.ndarray]:
        """The three arrays, in the order ``steps, times, values``, so that a series unpacks."""
        return iter((self.steps, self.times, self.values))


@dataclass(frozen=True)
class PackedChunk:
    """One chunk as stored: the packed step, time and value arrays of one metric."""

    key: str
    steps: bytes
    times: bytes
    values: bytes

    @property
    def count(self) -> int:
        """How many points the chunk holds."""
        return len(self.steps) // STEP_SIZE


@dataclass(frozen=True)
class MetricChunk:
    """A chunk travelling between stores (sync): ``uid`` makes sending it twice a no-op, ``seq`` is its
    position in the source store (``chunks_since(run, seq)`` continues after it)."""

    uid: str
    key: str
    steps: bytes
    times: bytes
    values: bytes
    seq: int = 0

    @property
    def packed(self) -> PackedChunk:
        """The chunk's payload, as the codec reads it."""
        return PackedChunk(self.key, self.steps, self.times, self.values)


@dataclass(frozen=True)
class Summary:
    """What listing and filtering need of a metric: last/min/max over finite values, count, last step.

    NaN and infinities are "no value" (None): SQLite would store NaN as NULL, PostgreSQL would keep it
    and sort it above every number, so both get None."""

    last: float | None
    min: float | None
    max: float | None
    count: int
    last_step: int | None

    def as_dict(self) -> dict[str, float | int | None]:
        """The record's ``metrics[key]`` form."""
        return {"last": self.last, "min": self.min, "max": self.max, "count": self.count,
                "last_step": self.last_step}


def pack(series: MetricSeries) -> PackedChunk:
    """A series -> the row bytes of one chunk."""
    import numpy as np

    return PackedChunk(series.key, np.ascontiguousarray(series.steps, dtype=STEP_DTYPE).tobytes(),
                       np.ascontiguousarray(series.times, dtype=FLOAT_DTYPE).tobytes(),
                       np.ascontiguousarray(series.values, dtype=FLOAT_DTYPE).tobytes())


def pack_all(series: Sequence[MetricSeries]) -> list[PackedChunk]:
    """Series -> chunks; series holding the same step and time arrays (the keys of one flush logged
    together) get the same bytes objects, so :func:`share_frames` finds them shared at no cost."""
    import numpy as np

    frames: dict[tuple[int, int], tuple[bytes, bytes]] = {}
    packed = []
    for s in series:
        ident = (id(s.steps), id(s.times))
        frame = frames.get(ident)
        if frame is None:
            frame = frames[ident] = (np.ascontiguousarray(s.steps, dtype=STEP_DTYPE).tobytes(),
                                     np.ascontiguousarray(s.times, dtype=FLOAT_DTYPE).tobytes())
        packed.append(PackedChunk(s.key, frame[0], frame[1],
                                  np.ascontiguousarray(s.values, dtype=FLOAT_DTYPE).tobytes()))
    return packed


def share_frames(chunks: Sequence[PackedChunk]) -> tuple[list[tuple[bytes, bytes]], list[int]]:
    """The distinct (steps, times) frames of ``chunks`` in order of first use, and for each chunk the
    index of its frame: chunks with equal step and time bytes share one frame, whatever their keys."""
    index: dict[tuple[bytes, bytes], int] = {}
    refs = []
    for chunk in chunks:
        # bytes cache their hash and tuples compare by identity first: a frame shared by
        # object (pack_all) costs one dict lookup per chunk, not a pass over its bytes
        refs.append(index.setdefault((chunk.steps, chunk.times), len(index)))
    return list(index), refs


def unpack(key: str, chunks: Sequence[PackedChunk]) -> MetricSeries:
    """Chunks of one metric, in storage order -> one series (an empty one when there are none)."""
    import numpy as np

    if len(chunks) == 1:
        only = chunks[0]
        steps, times, values = only.steps, only.times, only.values
    else:
        steps = b"".join(c.steps for c in chunks)
        times = b"".join(c.times for c in chunks)
        values = b"".join(c.values for c in chunks)
    return MetricSeries(key, np.frombuffer(steps, dtype=STEP_DTYPE), np.frombuffer(times, dtype=FLOAT_DTYPE),
                        np.frombuffer(values, dtype=FLOAT_DTYPE))


def summarize(series: MetricSeries) -> Summary:
    """The summary of one chunk's (or series') points."""
    import numpy as np

    n = len(series)
    if n == 0:
        return Summary(None, None, None, 0, None)
    values = np.asarray(series.values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return Summary(last=finite_or_none(values[-1]),
                   min=float(finite.min()) if finite.size else None,
                   max=float(finite.max()) if finite.size else None,
                   count=n, last_step=int(series.steps[-1]))


def merge(earlier: Summary | None, later: Summary) -> Summary:
    """The summary of two consecutive runs of points (``later`` logged after ``earlier``)."""
    if earlier is None or earlier.count == 0:
        return later
    if later.count == 0:
        return earlier
    return Summary(last=later.last, min=_pick(min, earlier.min, later.min), max=_pick(max, earlier.max, later.max),
                   count=earlier.count + later.count, last_step=later.last_step)


def summarize_chunks(chunks: Iterable[PackedChunk]) -> Summary:
    """The summary of a whole series from its chunks in storage order: the same merge a flush does."""
    total: Summary | None = None
    for chunk in chunks:
        total = merge(total, summarize(unpack(chunk.key, [chunk])))
    return total or Summary(None, None, None, 0, None)


def truncate(chunk: PackedChunk, after_step: int) -> PackedChunk | None:
    """The chunk without its points above ``after_step``; the same chunk when none is; None when all are."""
    series = unpack(chunk.key, [chunk])
    keep = series.steps <= after_step
    if keep.all():
        return chunk
    if not keep.any():
        return None
    return pack(MetricSeries(chunk.key, series.steps[keep], series.times[keep], series.values[keep]))


def finite_or_none(value: float | np.floating | None) -> float | None:
    """A summary value: NaN and infinities are no value."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _pick(choose: Callable[[float, float], float], a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return choose(a, b)
