"""Dataset files are untrusted until checked: bombs, odd headers and empty images are DataErrors, in bounded memory."""

from __future__ import annotations

import gzip
import hashlib
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from striate.data import fetch
from striate.data.catalog import ROLES, FileSpec
from striate.data.idx import parse_idx, read_bytes, read_idx, write_idx
from striate.data.loader import load_dataset
from striate.errors import DataError
from tests.conftest import write_dataset
from tests.data.test_fetch import serve, spec_for  # noqa: F401  (serve is a fixture)

BOMB_MB = 300


def write_bomb(path: Path, megabytes: int = BOMB_MB) -> None:
    """A gzip of a valid IDX header promising ``megabytes`` MB of zeros, which it holds: about 0.3 MB on disk."""
    rows = megabytes * 1024 * 1024 // (28 * 28)
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(b"\x00\x00\x08\x03" + struct.pack(">3I", rows, 28, 28))
        zeros = bytes(28 * 28 * 1024)
        for start in range(0, rows, 1024):
            fh.write(zeros[: 28 * 28 * min(1024, rows - start)])


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "train-images-idx3-ubyte.gz"
    write_bomb(path)
    return path


def peak_mb(action) -> float:  # type: ignore[no-untyped-def]
    tracemalloc.start()
    try:
        action()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / 1e6


@pytest.mark.parametrize("by", ["archive", "content"])
def test_a_gzip_bomb_is_checked_in_bounded_memory(bomb: Path, by: str) -> None:
    """The report: a 4.7 MB gzip took 2.35 GB before its checksum failed. Now a few MB, whatever it expands to."""
    expected = FileSpec(bomb.name, archive_sha256="0" * 64) if by == "archive" else \
        FileSpec(bomb.name, content_sha256="0" * 64)

    def check() -> None:
        with pytest.raises(DataError, match="checksum mismatch"):
            fetch.check_file(bomb, expected)

    assert peak_mb(check) < 16


def test_the_archive_hash_is_checked_before_expanding(bomb: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expanded: list[Path] = []
    monkeypatch.setattr(fetch, "content_sha256", lambda path, *a: expanded.append(path) or "")
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch.check_file(bomb, FileSpec(bomb.name, archive_sha256="0" * 64))
    assert expanded == []


def test_a_downloaded_bomb_is_refused_in_bounded_memory(tmp_path: Path, bomb: Path, serve) -> None:  # noqa: F811
    source = write_dataset(tmp_path / "origin")
    spec = spec_for(source, "content")
    bomb_folder = tmp_path / "mirror"
    bomb_folder.mkdir()
    for role in ROLES:
        (bomb_folder / spec.files[role].name).write_bytes(bomb.read_bytes())
    mirror = serve(bomb_folder)

    def download() -> None:
        with pytest.raises(DataError, match="checksum mismatch"):
            fetch.download(spec, tmp_path / "dl", mirrors=[mirror])

    assert peak_mb(download) < 16
    assert not list((tmp_path / "dl").glob("*"))


def test_content_over_the_limit_is_refused_from_the_header(bomb: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIATE_DATA_MAX_BYTES", str(100 * 1024 * 1024))
    with pytest.raises(DataError, match="over the 104,857,600-byte limit .*STRIATE_DATA_MAX_BYTES") as info:
        read_bytes(bomb)
    assert "STRIATE_DATA_MAX_BYTES=" in str(info.value.fix)
    with pytest.raises(DataError, match="over the 104,857,600-byte limit"):
        fetch.check_file(bomb, FileSpec(bomb.name, content_sha256="0" * 64))
    monkeypatch.setenv("STRIATE_DATA_MAX_BYTES", "-3")
    with pytest.raises(DataError, match="not a positive whole number"):
        read_bytes(bomb)


def test_a_download_larger_than_the_limit_stops_early(tmp_path: Path, serve, monkeypatch) -> None:  # noqa: F811
    source = write_dataset(tmp_path / "origin")
    spec = spec_for(source)
    monkeypatch.setenv("STRIATE_DATA_MAX_BYTES", "1000")
    with pytest.raises(DataError, match="over the 1,000-byte limit|more than 1,000 bytes"):
        fetch.download(spec, tmp_path / "dl", mirrors=[serve(source)])


def test_more_data_than_the_header_promises_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 3) + b"abc" + bytes(10**6)))
    with pytest.raises(DataError, match="more data than its header promises"):
        read_idx(path)


def test_a_header_with_70_dimensions_is_a_data_error(tmp_path: Path) -> None:
    content = b"\x00\x00\x08" + bytes([70]) + struct.pack(">70I", *([1] * 70)) + b"x"
    with pytest.raises(DataError, match="declares 70 dimensions"):
        parse_idx(content, "x.idx")
    (tmp_path / "x-idx3-ubyte").write_bytes(content)
    with pytest.raises(DataError, match="declares 70 dimensions"):
        read_idx(tmp_path / "x-idx3-ubyte")
    with pytest.raises(DataError, match="declares 0 dimensions"):
        parse_idx(b"\x00\x00\x08\x00x", "x.idx")


@pytest.mark.parametrize("shape", [(5, 0, 28), (5, 28, 0), (5, 28, 28, 0)])
def test_empty_images_are_a_data_error(tmp_path: Path, shape: tuple[int, ...]) -> None:
    folder = write_dataset(tmp_path / "d", compress=False)
    write_idx(folder / "train-images-idx3-ubyte", np.zeros(shape, np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(shape[0], np.uint8))
    with pytest.raises(DataError, match="empty images"):
        load_dataset(str(folder))


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6)), st.booleans())
def test_idx_round_trip(array: np.ndarray, compress: bool) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "a-idx"
        write_idx(path, array, compress=compress)
        back, digest = read_idx(path)
        np.testing.assert_array_equal(back, array)
        assert back.shape == array.shape and digest == hashlib.sha256(read_bytes(path)).hexdigest()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=64), st.sampled_from([b"", b"\x00\x00\x08", b"\x00\x00\x0d\x02", b"\x00\x00\x08\x46"]),
       st.booleans())
def test_any_bytes_give_an_array_or_a_data_error(tmp_path: Path, tail: bytes, prefix: bytes, compress: bool) -> None:
    content = prefix + tail
    path = tmp_path / "f-idx"
    path.write_bytes(gzip.compress(content) if compress else content)
    for read in (lambda: parse_idx(content, "f"), lambda: read_idx(path)[0]):
        try:
            array = read()
        except DataError as exc:
            assert "\n" not in str(exc)
            continue
        assert 1 <= array.ndim <= 4


def test_a_dataset_spec_with_both_hashes_still_accepts_a_recompressed_file(tmp_path: Path) -> None:
    """Debian re-gzips Fashion-MNIST: the archive hash fails, the content hash vouches for it."""
    folder = write_dataset(tmp_path / "d")
    path = folder / "train-labels-idx1-ubyte.gz"
    content = read_bytes(path)
    spec = FileSpec(path.name, archive_sha256="0" * 64, content_sha256=hashlib.sha256(content).hexdigest())
    assert fetch.check_file(path, spec) == spec.content_sha256
