"""Reading and writing IDX files (the MNIST family's format), gzipped or raw."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import os
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterator

from striate.errors import DataError

if TYPE_CHECKING:
    import numpy as np

# IDX type code -> numpy dtype string and item size. numpy is imported only where arrays are made:
# checking and hashing files (`data get` of a verified dataset) does without it.
_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_ITEM_BYTES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}
_UBYTE = 0x08  # the type code write_idx writes (uint8)


MAX_DIMS = 4  # labels (1), images (3), images with channels (4)
MAX_BYTES_ENV = "STRIATE_DATA_MAX_BYTES"
DEFAULT_MAX_BYTES = 1024**3  # the largest MNIST-family file is 47 MB; this leaves room for bigger IDX datasets
_BLOCK = 1 << 20


def max_content_bytes() -> int:
    """The most bytes one decompressed dataset file may hold (``$STRIATE_DATA_MAX_BYTES``, default 1 GiB)."""
    raw = os.environ.get(MAX_BYTES_ENV, "").strip().replace("_", "")
    try:
        limit = int(raw) if raw else DEFAULT_MAX_BYTES
    except ValueError:
        limit = 0
    if limit < 1:
        raise DataError(f"{MAX_BYTES_ENV}={os.environ.get(MAX_BYTES_ENV)!r} is not a positive whole number",
                        f"set it to a number of bytes such as {DEFAULT_MAX_BYTES}, or unset it")
    return limit


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[BinaryIO]:
    """The file's decompressed byte stream (gzip detected by its magic bytes); nothing is read ahead."""
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise DataError(f"cannot read dataset file {path}: {exc.strerror}",
                        "check the path and its permissions") from None
    with fh:
        if fh.read(2) == b"\x1f\x8b":
            fh.seek(0)
            with gzip.GzipFile(fileobj=fh, mode="rb") as unzipped:
                yield unzipped  # type: ignore[misc]
        else:
            fh.seek(0)
            yield fh


def _header(stream: BinaryIO, source: str) -> tuple[bytes, int]:
    """The IDX header's bytes and the number of data bytes it promises (checked against the dimension cap)."""
    magic = stream.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _DTYPES:
        raise DataError(f"{source} is not an IDX file (bad magic number)",
                        "point --data at the four IDX files of MNIST or Fashion-MNIST")
    ndim = magic[3]
    if not 1 <= ndim <= MAX_DIMS:
        raise DataError(f"{source} declares {ndim} dimensions; an IDX dataset file has 1 to {MAX_DIMS} "
                        "(labels, images, images with channels)", "the file is corrupt or not a dataset file")
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataError(f"{source} is truncated (header incomplete)", "fetch the file again")
    shape = struct.unpack(f">{ndim}I", dims)
    return magic + dims, math.prod(shape) * _ITEM_BYTES[magic[2]]


def stream_content(path: Path, sink: Callable[[bytes], object], max_bytes: int | None = None) -> int:
    """Feed the decompressed content of ``path`` to ``sink`` in blocks; return its size.

    Never holds more than one block: the header is read first, and the content may be no larger than
    what it promises (dimensions x item size) nor than ``max_bytes`` (default :func:`max_content_bytes`),
    so a small gzip that expands to gigabytes is refused after reading a header, not after expanding.
    """
    limit = max_content_bytes() if max_bytes is None else max_bytes
    with _opened(path) as stream:
        try:
            header, promised = _header(stream, str(path))
            if len(header) + promised > limit:
                raise DataError(f"{path}: its header promises {len(header) + promised:,} bytes, over the "
                                f"{limit:,}-byte limit for a dataset file ({MAX_BYTES_ENV})",
                                f"if the file is genuine, raise the limit: "
                                f"{MAX_BYTES_ENV}={2 * (len(header) + promised)}")
            sink(header)
            left = promised
            while left:
                block = stream.read(min(left, _BLOCK))
                if not block:
                    break  # truncated: parse_idx names the shortfall
                sink(block)
                left -= len(block)
            if not left and stream.read(1):
                raise DataError(f"{path} holds more data than its header promises ({promised:,} bytes)",
                                "the file is corrupt or not a dataset file: fetch it again")
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"dataset file {path} is a corrupt gzip file ({exc})",
                            "delete it and fetch it again with `striate data get`") from None
    return len(header) + promised - left


def read_bytes(path: Path, max_bytes: int | None = None) -> bytes:
    """The decompressed content of ``path`` (gzip detected by its magic bytes), within the size limits."""
    chunks: list[bytes] = []
    stream_content(path, chunks.append, max_bytes)
    return b"".join(chunks)


def content_sha256(path: Path, max_bytes: int | None = None) -> str:
    """The SHA-256 of the decompressed content of ``path``, computed block by block."""
    digest = hashlib.sha256()
    stream_content(path, digest.update, max_bytes)
    return digest.hexdigest()


def parse_idx(content: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX ``content`` into an array; a DataError naming ``source`` when malformed."""
    import numpy as np

    if len(content) < 4 or content[0] != 0 or content[1] != 0 or content[2] not in _DTYPES:
        raise DataError(f"{source} is not an IDX file (bad magic number)",
                        "point --data at the four IDX files of MNIST or Fashion-MNIST")
    dtype = np.dtype(_DTYPES[content[2]])
    ndim = content[3]
    if not 1 <= ndim <= MAX_DIMS:
        raise DataError(f"{source} declares {ndim} dimensions; an IDX dataset file has 1 to {MAX_DIMS} "
                        "(labels, images, images with channels)", "the file is corrupt or not a dataset file")
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
    import numpy as np

    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise DataError(f"write_idx supports uint8 arrays only, got {array.dtype}", "convert with .astype(np.uint8)")
    header = bytes([0, 0, _UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    content = header + array.tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        content = gzip.compress(content, mtime=0)
    path.write_bytes(content)
