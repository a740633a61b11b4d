"""classes.txt of a folder dataset: names in label order, or one clear error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from striate.data.folder import folder_classes
from striate.errors import DataError


def test_trailing_blank_lines_end_the_file_but_a_blank_line_inside_is_refused(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("cat\ndog\nbird\n\n\n")
    assert folder_classes(tmp_path, 3) == ("cat", "dog", "bird")
    (tmp_path / "classes.txt").write_text("cat\n\ndog\nbird\n")
    with pytest.raises(DataError, match=r"classes.txt line 2 is blank.* — fix: remove line 2"):
        folder_classes(tmp_path, 3)


def test_no_classes_file_means_label_numbers(tmp_path: Path) -> None:
    assert folder_classes(tmp_path, 3) == ("0", "1", "2")


@pytest.mark.parametrize("kind", ["loop", "dangling", "fifo", "folder", "device"])
def test_a_classes_file_that_is_not_a_regular_file_is_one_error(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "classes.txt"
    if kind == "loop":
        path.symlink_to(path)
    elif kind == "dangling":
        path.symlink_to(tmp_path / "missing")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path.symlink_to("/dev/zero")
    with pytest.raises(DataError, match=r"classes.txt is not a regular file"):
        folder_classes(tmp_path, 3)


def test_control_characters_in_a_class_name_are_refused(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("cat\n\x1b[31mdog\nbird\n")
    with pytest.raises(DataError, match=r"line 2 holds a control character .*\\x1b\[31mdog"):
        folder_classes(tmp_path, 3)
