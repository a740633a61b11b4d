import gzip

import numpy as np
import pytest

from striate.data.idx import parse_idx, read_idx, write_idx
from striate.errors import DataError


@pytest.mark.parametrize("name", ["images-idx3-ubyte.gz", "images-idx3-ubyte"])
def test_round_trip_gzip_and_raw(tmp_path, name):
    array = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    path = tmp_path / name
    write_idx(path, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    back, digest = read_idx(path)
    assert back.shape == (2, 28, 28) and back.dtype == np.uint8
    np.testing.assert_array_equal(back, array)
    assert len(digest) == 64


def test_bad_magic_is_rejected():
    with pytest.raises(DataError, match="not an IDX file"):
        parse_idx(b"\x01\x02\x03\x04rest", "x.idx")


def test_truncated_file_is_rejected(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, np.zeros(10, dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match="header promises 10"):
        read_idx(path)


def test_corrupt_gzip_is_rejected(tmp_path):
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00\x00\x00\x05" + b"abcde")[:-6])
    with pytest.raises(DataError, match="corrupt gzip"):
        read_idx(path)


def test_gzip_with_damaged_bytes_is_rejected(tmp_path):
    path = tmp_path / "images-idx3-ubyte.gz"
    write_idx(path, np.random.default_rng(0).integers(0, 255, (50, 28, 28), dtype=np.uint8))
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2  # past the IDX header: only the gzip checks can notice
    raw[middle:middle + 40] = bytes(255 - b for b in raw[middle:middle + 40])
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="corrupt gzip"):
        read_idx(path)
    raw = bytearray(path.read_bytes())
    raw[20:60] = bytes(255 - b for b in raw[20:60])  # the header itself decompresses to garbage
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="corrupt gzip|not an IDX file|dimensions|header promises"):
        read_idx(path)


def test_a_header_whose_sizes_overflow_is_rejected():
    header = b"\x00\x00\x08\x03" + (2**31).to_bytes(4, "big") * 3
    with pytest.raises(DataError, match="header promises"):
        parse_idx(header + b"abc", "x.idx")
