"""Reading and writing IDX files (the MNIST family's format), gzipped or raw."""

from __future__ import annotations

import gzip
import hashlib
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from striate.errors import DataError

_DTYPES: dict[int, np.dtype] = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
                                0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {np.dtype(np.uint8): 0x08}


def read_bytes(path: Path) -> bytes:
    """The decompressed content of ``path`` (gzip detected by its magic bytes)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read dataset file {path}: {exc.strerror}",
                        "check the path and its permissions") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"dataset file {path} is a corrupt gzip file ({exc})",
                            "delete it and fetch it again with `striate data get`") from None
    return raw


def parse_idx(content: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX ``content`` into an array; a DataError naming ``source`` when malformed."""
    if len(content) < 4 or content[0] != 0 or content[1] != 0 or content[2] not in _DTYPES:
        raise DataError(f"{source} is not an IDX file (bad magic number)",
                        "point --data at the four IDX files of MNIST or Fashion-MNIST")
    dtype = np.dtype(_DTYPES[content[2]])
    ndim = content[3]
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DataError(f"{source} is truncated (header incomplete)", "fetch the file again")
    shape = struct.unpack(f">{ndim}I", content[4:header])
    expected = math.prod(shape) * dtype.itemsize  # Python ints: a corrupt header cannot overflow to a match
    if len(content) - header != expected:
        raise DataError(f"{source} has {len(content) - header} data bytes but its header promises {expected}",
                        "the file is truncated or corrupt: fetch it again")
    return np.frombuffer(content, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: Path) -> tuple[np.ndarray, str]:
    """Read an IDX file; return the array and the SHA-256 of its decompressed content."""
    content = read_bytes(path)
    return parse_idx(content, str(path)), hashlib.sha256(content).hexdigest()


def write_idx(path: Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` (uint8) as an IDX file; gzip it when ``compress`` or the name ends in .gz."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise DataError(f"write_idx supports uint8 arrays only, got {array.dtype}", "convert with .astype(np.uint8)")
    header = bytes([0, 0, _CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    content = header + array.tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        content = gzip.compress(content, mtime=0)
    path.write_bytes(content)
