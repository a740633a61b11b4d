"""A dataset folder given by path (`--data FOLDER`): its name and class names.

A folder is named by itself (its last path component), never by a catalog dataset. Its class
names come from a ``classes.txt`` beside the IDX files (one name per line, in label order) when
there is one, else they are the label numbers ``0 .. N-1``.
"""

from __future__ import annotations

from pathlib import Path

from striate.errors import DataError

CLASSES_FILE = "classes.txt"
MAX_CLASSES_FILE_BYTES = 1 << 20
MAX_CLASS_NAME = 200


def folder_name(folder: Path) -> str:
    """The name a dataset folder goes by: the folder's own name (``.`` resolved to the real one)."""
    return folder.resolve().name or str(folder)


def folder_classes(folder: Path, n_classes: int) -> tuple[str, ...]:
    """Class names for labels ``0 .. n_classes-1``: ``classes.txt`` when present, else the label numbers."""
    path = folder / CLASSES_FILE
    if not path.is_file():
        return tuple(str(i) for i in range(n_classes))
    fix = f"write one class name per line in {path}, in label order (label 0 first)"
    if path.stat().st_size > MAX_CLASSES_FILE_BYTES:
        raise DataError(f"{path} is larger than {MAX_CLASSES_FILE_BYTES // 1024} KiB", fix)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text", fix) from None
    names = tuple(line.strip() for line in lines if line.strip())
    long = next((n for n in names if len(n) > MAX_CLASS_NAME), None)
    if long is not None:
        raise DataError(f"{path} has a class name longer than {MAX_CLASS_NAME} characters ({long[:40]}...)", fix)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{path} names class {repeated[0]!r} more than once", fix)
    if len(names) < n_classes:
        raise DataError(f"{path} names {len(names)} classes but the labels go up to {n_classes - 1}", fix)
    return names
