"""Archives: reading ones that came from elsewhere (imported runs, code snapshots), every member checked first;
giving the ones striate writes the user's usual file mode.

An archive is hostile until checked: a member that is absolute, climbs out with '..', is a link or a
device, or repeats an earlier name is refused with the whole archive, before anything is extracted.
Members are checked as they are read, so an archive with too many members or too many bytes is
refused at the first member over the cap, not after the whole stream has been read.
"""

from __future__ import annotations

import os
import re
import tarfile
from pathlib import Path, PurePosixPath

from striate.errors import ConfigError

_DRIVE = re.compile(r"^[A-Za-z]:")
_FILTER_ERROR = getattr(tarfile, "FilterError", tarfile.TarError)  # FilterError is Python >= 3.10.12
MAX_MEMBERS = 1_000_000  # far above any run or snapshot striate writes; each member costs memory to list


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


def check_members(tar: tarfile.TarFile, archive: Path, *, max_members: int = MAX_MEMBERS,
                  max_bytes: int | None = None, limit_name: str = "", limit_hint: str = "") -> list[tarfile.TarInfo]:
    """Every member, after refusing the whole archive if any is a link, device or escapes the target.

    Members are checked while the archive is read: past ``max_members`` members, or once the regular
    files declare more than ``max_bytes`` bytes, the archive is refused without reading further.
    ``limit_name`` names the byte cap in the error ("the import limit of ... (VARIABLE)") and
    ``limit_hint`` is the fix it gives (e.g. the environment variable that raises it).
    """
    members: list[tarfile.TarInfo] = []
    seen: set[str] = set()
    total = 0
    fix = limit_hint or "only import archives written by striate from a source you trust"
    try:
        for member in tar:  # one header at a time: nothing past the first refused member is read
            if len(members) >= max_members:
                raise ConfigError(f"refusing {archive}: it has more than {max_members:,} members",
                                  "striate writes far fewer, and this cap is fixed (no setting raises it): "
                                  "only import archives written by striate from a source you trust")
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
            if member.isreg():
                total += member.size
                if max_bytes is not None and total > max_bytes:
                    raise ConfigError(f"refusing {archive}: its members expand to more than {max_bytes:,} bytes "
                                      f"(at member {member.name!r}), over {limit_name or 'the limit'}", fix)
            members.append(member)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ConfigError(f"cannot read {archive}: {exc}", "check that it is a complete .tar.gz file") from None
    return members


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back: there is no other portable way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def give_user_mode(path: Path) -> None:
    """Give a file made by ``tempfile.mkstemp`` (always 0600) the mode an ordinary new file would get:
    0666 less the user's umask, as ``open()`` and ``tar`` would create it."""
    os.chmod(path, 0o666 & ~current_umask())


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
