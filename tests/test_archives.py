"""Archive reading checks members while it reads (caps refuse early); written archives follow the umask."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from striate.archives import check_members, open_archive
from striate.errors import ConfigError
from striate.tracking.snapshot import snapshot_files
from striate.tracking.store.sql import SqlStore
from striate.tracking.transfer import export_run
from tests.tracking.test_transfer import RUN_ID, make_run


def tar_bytes(sizes: list[int], end: bool = True) -> bytes:
    """A tar of files f0, f1, ... of the given sizes (zeros); without ``end``, no end-of-archive blocks,
    so whatever is appended is read as the next header."""
    out = io.BytesIO()
    for i, size in enumerate(sizes):
        info = tarfile.TarInfo(f"f{i}")
        info.size = size
        out.write(info.tobuf(format=tarfile.PAX_FORMAT))
        out.write(bytes(size + (-size % tarfile.BLOCKSIZE)))
    if end:
        out.write(bytes(2 * tarfile.BLOCKSIZE))
    return out.getvalue()


def write_gz(path: Path, raw: bytes) -> Path:
    path.write_bytes(gzip.compress(raw))
    return path


def write_cut(path: Path, sizes: list[int]) -> Path:
    """Members of ``sizes``, then a 300 kB random member whose compressed stream is cut off half-way:
    whoever reads that far fails (as on a huge or damaged archive); whoever stops earlier never sees it."""
    tail = tarfile.TarInfo("tail")
    tail.size = 300_000
    raw = tar_bytes(sizes, end=False) + tail.tobuf(format=tarfile.PAX_FORMAT) + os.urandom(tail.size)
    path.write_bytes(gzip.compress(raw)[:-150_000])
    return path


def test_a_member_over_the_byte_cap_is_refused_before_the_rest_is_read(tmp_path: Path) -> None:
    # Three members, then a cut-off one: reading every member first (getmembers) fails on the cut;
    # checking while reading refuses at the second member and never reaches it.
    archive = write_cut(tmp_path / "a.tar.gz", [100, 5000, 100])
    with open_archive(archive) as tar, pytest.raises(ConfigError, match="more than 1,000 bytes .*'f1'.*over the cap"):
        check_members(tar, archive, max_bytes=1000, limit_name="the cap")
    with open_archive(archive) as tar, pytest.raises(ConfigError, match="cannot read"):
        check_members(tar, archive)  # the cut is really there: reading on would have met it


def test_too_many_members_is_refused_at_the_first_one_over(tmp_path: Path) -> None:
    archive = write_cut(tmp_path / "a.tar.gz", [1] * 20)
    with open_archive(archive) as tar, pytest.raises(ConfigError, match="more than 5 members") as refused:
        check_members(tar, archive, max_members=5, limit_hint="raise STRIATE_IMPORT_MAX_BYTES")
    # The byte limit's setting does not move the member cap: the fix must not point there.
    assert "STRIATE_IMPORT_MAX_BYTES" not in str(refused.value) and "no setting raises it" in str(refused.value)
    # Without the cap the same archive is read to its damaged end: one clear error, no traceback.
    with open_archive(archive) as tar, pytest.raises(ConfigError, match="cannot read"):
        check_members(tar, archive)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(0, 3000), min_size=0, max_size=8), cap=st.integers(0, 10_000),
       max_members=st.integers(1, 10))
def test_caps_refuse_exactly_when_crossed(tmp_path: Path, sizes: list[int], cap: int, max_members: int) -> None:
    archive = write_gz(tmp_path / "p.tar.gz", tar_bytes(sizes))
    with open_archive(archive) as tar:
        if len(sizes) > max_members:
            with pytest.raises(ConfigError, match=f"more than {max_members} members"):
                check_members(tar, archive, max_bytes=None, max_members=max_members)
        elif sum(sizes) > cap:
            with pytest.raises(ConfigError, match=f"more than {cap:,} bytes"):
                check_members(tar, archive, max_bytes=cap, max_members=max_members)
        else:
            members = check_members(tar, archive, max_bytes=cap, max_members=max_members)
            assert [m.size for m in members] == sizes


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def test_export_run_archive_follows_the_umask(tmp_path: Path, umask_027: None) -> None:
    store = SqlStore.open_folder(tmp_path / "s")
    make_run(store)
    out = Path(export_run(store, RUN_ID, tmp_path / "run.tar.gz")["path"])
    assert out.stat().st_mode & 0o777 == 0o640  # 0666 less 027, not mkstemp's 0600


def test_code_snapshot_follows_the_umask(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("print(1)\n")
    old = os.umask(0o002)
    try:
        info = snapshot_files(tmp_path / "src", ["train.py"], tmp_path / "snap")
    finally:
        os.umask(old)
    written = list((tmp_path / "snap").glob("code-*.tar.gz"))
    assert written and info
    assert written[0].stat().st_mode & 0o777 == 0o664
