"""The artifact path check (every store's file API and the team server use it): properties over any text."""

from __future__ import annotations

import posixpath
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from striate.errors import StoreError
from striate.tracking.store.base import artifact_path_problem, check_artifact_path, confined_file

NAME = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\%;:"),
               min_size=1, max_size=20).filter(lambda s: s not in (".", ".."))
HOSTILE = st.sampled_from(["..", ".", "", "/", "\\", "%2e%2e", "%252e", ";", "\x00", "\n", "%", "a\\..", "x;y"])
LEADING = st.sampled_from(["/", "C:", "c:", "file:", "s3:", "http:", "/etc"])


@settings(max_examples=200)
@given(st.text(max_size=60))
def test_an_accepted_path_stays_inside_the_runs_folder(path: str) -> None:
    if artifact_path_problem(path) is None:
        joined = posixpath.normpath(posixpath.join("/root/run", path))
        assert joined.startswith("/root/run/")
        assert not posixpath.isabs(path) and "\\" not in path and "\x00" not in path and "%" not in path
        assert ".." not in path.split("/") and "." not in path.split("/")


@settings(max_examples=150)
@given(st.lists(NAME, min_size=1, max_size=6))
def test_paths_of_plain_names_are_accepted(segments: list[str]) -> None:
    path = "/".join(segments)
    if len(path) <= 1000:
        assert artifact_path_problem(path) is None
        assert check_artifact_path(path) == path


@settings(max_examples=150)
@given(st.lists(NAME, max_size=4), HOSTILE, st.lists(NAME, max_size=4))
def test_a_hostile_part_anywhere_is_refused(before: list[str], hostile: str, after: list[str]) -> None:
    path = "/".join([*before, hostile, *after])
    assert artifact_path_problem(path) is not None
    with pytest.raises(StoreError, match="refusing artifact path"):
        check_artifact_path(path)


@settings(max_examples=100)
@given(LEADING, st.lists(NAME, max_size=4))
def test_an_absolute_path_drive_or_scheme_is_refused(leading: str, rest: list[str]) -> None:
    assert artifact_path_problem(leading + "/".join(rest)) is not None


def test_a_link_in_the_runs_folder_cannot_lead_out(tmp_path: Path) -> None:
    (tmp_path / "root" / "run").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "root" / "run" / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(StoreError, match="leads out of the run's artifact folder"):
        confined_file(tmp_path / "root", "run", "link/file.bin")
    assert confined_file(tmp_path / "root", "run", "a/b.bin") == tmp_path / "root" / "run" / "a" / "b.bin"
    for bad_run in ("..", ".", "a/b", ""):
        with pytest.raises(StoreError):
            confined_file(tmp_path / "root", bad_run, "x.bin")
