"""A dataset folder given by path (`--data FOLDER`): its name and class names.

A folder is named by itself (its last path component), never by a catalog dataset. Its class
names come from a ``classes.txt`` beside the IDX files (one name per line, in label order) when
there is one, else they are the label numbers ``0 .. N-1``.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from striate.errors import DataError

CLASSES_FILE = "classes.txt"
MAX_CLASSES_FILE_BYTES = 1 << 20
MAX_CLASS_NAME = 200


def folder_name(folder: Path) -> str:
    """The name a dataset folder goes by: the folder's own name (``.`` resolved to the real one)."""
    return folder.resolve().name or str(folder)


def folder_classes(folder: Path, n_classes: int) -> tuple[str, ...]:
    """Class names for labels ``0 .. n_classes-1``: ``classes.txt`` when present, else the label numbers.

    A blank line (other than at the end) would shift every later name onto the wrong label, and a
    name with control characters (terminal escapes) would garble every table: both are refused, as
    is a ``classes.txt`` that is not a readable regular file (a folder, a FIFO, a device, a broken
    or looping link)."""
    path = folder / CLASSES_FILE
    fix = f"write one class name per line in {path}, in label order (label 0 first)"
    if not os.path.lexists(path):
        return tuple(str(i) for i in range(n_classes))
    if not path.is_file():  # is_file follows links: False for a loop, a dangling link, a FIFO, a device
        raise DataError(f"{path} is not a regular file (a folder, a FIFO, a device, or a broken or looping link)",
                        fix)
    try:
        if path.stat().st_size > MAX_CLASSES_FILE_BYTES:
            raise DataError(f"{path} is larger than {MAX_CLASSES_FILE_BYTES // 1024} KiB", fix)
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text", fix) from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}", fix) from None
    while lines and not lines[-1].strip():
        lines.pop()  # trailing blank lines end the file; they name no class
    blank = next((i for i, line in enumerate(lines, 1) if not line.strip()), None)
    if blank is not None:
        raise DataError(f"{path} line {blank} is blank: every later class name would move to the wrong label",
                        f"remove line {blank}, or give that label a name ({fix})")
    names = tuple(line.strip() for line in lines)
    for number, name in enumerate(names, 1):
        if any(unicodedata.category(ch) == "Cc" for ch in name):
            raise DataError(f"{path} line {number} holds a control character (e.g. a terminal escape): "
                            f"{ascii(name)[:60]}", f"use printable characters only ({fix})")
    long = next((n for n in names if len(n) > MAX_CLASS_NAME), None)
    if long is not None:
        raise DataError(f"{path} has a class name longer than {MAX_CLASS_NAME} characters ({long[:40]}...)", fix)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{path} names class {repeated[0]!r} more than once", fix)
    if len(names) < n_classes:
        raise DataError(f"{path} names {len(names)} classes but the labels go up to {n_classes - 1}", fix)
    return names
