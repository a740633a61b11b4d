"""Reading archives that came from elsewhere (imported runs, code snapshots): every member is checked first.

An archive is hostile until checked: a member that is absolute, climbs out with '..', is a link or a
device, or repeats an earlier name is refused with the whole archive, before anything is extracted.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path, PurePosixPath

from striate.errors import ConfigError

_DRIVE = re.compile(r"^[A-Za-z]:")
_FILTER_ERROR = getattr(tarfile, "FilterError", tarfile.TarError)  # FilterError is Python >= 3.10.12


def unsafe_name(name: str) -> str | None:
    """Why an archive member name could escape the folder it is extracted into (None when safe)."""
    if not name or name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "absolute path"
    if "\x00" in name:
        return "NUL byte in name"
    if ".." in re.split(r"[/\\]", name):
        return "'..' in path"
    return None


def open_archive(archive: Path) -> tarfile.TarFile:
    """Open a .tar.gz for reading, turning a missing or corrupt file into a ConfigError."""
    if not Path(archive).is_file():
        raise ConfigError(f"archive {archive} does not exist", "check the path")
    try:
        return tarfile.open(archive, "r:gz")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ConfigError(f"cannot read {archive}: {exc}", "check that it is a complete .tar.gz file") from None


def check_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """Every member, after refusing the whole archive if any is a link, device or escapes the target."""
    try:
        members = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ConfigError(f"cannot read {archive}: {exc}", "check that it is a complete .tar.gz file") from None
    seen: set[str] = set()
    for member in members:
        problem = unsafe_name(member.name)
        if problem is None and not (member.isreg() or member.isdir()):
            kind = "link" if member.issym() or member.islnk() else "device or special file"
            problem = f"{kind} (only regular files and folders are allowed)"
        normal = str(PurePosixPath(member.name))
        if problem is None and normal in seen and not member.isdir():
            problem = "duplicate member"  # a second copy could replace a file after it was checked
        if problem:
            raise ConfigError(f"refusing {archive}: member {member.name!r} is unsafe: {problem}",
                              "only import archives written by striate from a source you trust")
        seen.add(normal)
    return members


def extract_members(tar: tarfile.TarFile, members: list[tarfile.TarInfo], target: Path) -> None:
    """Extract already-checked members; tarfile's ``data`` filter is a second line of defence."""
    try:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(target, members=members, filter="data")
        else:  # Python < 3.10.12 lacks filters; check_members already refused every unsafe member
            tar.extractall(target, members=members)
    except _FILTER_ERROR as exc:
        raise ConfigError(f"refusing unsafe archive member: {exc}",
                          "only import archives written by striate from a source you trust") from None
