"""Finding, downloading and verifying dataset files.

Order of preference for a named dataset: the striate cache, a folder the user
names, the copy an OS package installed, then the official mirrors. Every file is
checked against the catalog's SHA-256 before it is used or cached. A file that passed is
recorded by path, size and modification time (``verified.json`` in the cache): it is hashed
again only when one of them changes, so a second ``striate data get`` returns at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from striate.data.catalog import FILE_NAMES, ROLES, DatasetSpec, FileSpec
from striate.data.idx import MAX_BYTES_ENV, content_sha256, max_content_bytes
from striate.errors import DataError

DOWNLOAD_TIMEOUT_S = 20.0


def cache_root() -> Path:
    """The folder where fetched datasets are kept (``$STRIATE_CACHE`` or ``~/.cache/striate``)."""
    return Path(os.environ.get("STRIATE_CACHE") or Path.home() / ".cache" / "striate")


def cache_dir(spec: DatasetSpec) -> Path:
    """The cache folder of one dataset."""
    return cache_root() / "datasets" / spec.name


def find_file(folder: Path, role: str) -> Path | None:
    """The file in ``folder`` that plays ``role`` (gzipped or raw), or None."""
    base = FILE_NAMES[role]
    for name in (base + ".gz", base, base.replace("-idx", ".idx") + ".gz", base.replace("-idx", ".idx")):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def has_all_files(folder: Path) -> bool:
    """Whether ``folder`` holds the four IDX files."""
    return all(find_file(folder, role) is not None for role in ROLES)


def check_file(path: Path, expected: FileSpec, content: bytes | None = None, label: str | None = None) -> str:
    """Verify ``path`` against its catalog checksums; return the SHA-256 of its decompressed content.

    The archive's own hash, when the catalog knows it, is checked first and without decompressing: a
    file that fails it is refused before it is expanded. Otherwise the content is hashed as it streams
    out of the gzip, within the sizes its IDX header promises (see :func:`striate.data.idx.stream_content`).
    Raises DataError (naming ``label``, default the path) when no known checksum matches.
    """
    mismatch = DataError(f"checksum mismatch for {label or path}: the file is corrupt or not the expected dataset "
                         "file", "delete it and run `striate data get` again")
    if expected.archive_sha256:
        if _file_sha256(path) == expected.archive_sha256:
            return hashlib.sha256(content).hexdigest() if content is not None else content_sha256(path)
        if not expected.content_sha256:
            raise mismatch  # refused unexpanded: nothing else could vouch for it
    if expected.content_sha256:
        try:
            digest = hashlib.sha256(content).hexdigest() if content is not None else content_sha256(path)
        except DataError as exc:
            if "limit" in exc.problem:  # over the size limit: say so, rather than "corrupt"
                raise
            digest = None
        if digest == expected.content_sha256:
            return digest
    raise mismatch


def _verified_path() -> Path:
    return cache_root() / "verified.json"


def _stamp(path: Path, expected: FileSpec) -> dict[str, object]:
    """What must be unchanged for an earlier verification of ``path`` to still hold."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "expected": [expected.content_sha256, expected.archive_sha256]}


def _read_verified() -> dict[str, dict[str, object]]:
    try:
        records = json.loads(_verified_path().read_text())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: everything is verified again
    return records if isinstance(records, dict) else {}


def verified_digest(path: Path, expected: FileSpec) -> str | None:
    """The content SHA-256 recorded when ``path`` last passed ``check_file``, if its size and mtime are unchanged."""
    record = _read_verified().get(str(path.resolve()))
    if not isinstance(record, dict):
        return None
    digest = record.get("content_sha256")
    try:
        fresh = {k: record.get(k) for k in ("size", "mtime_ns", "expected")} == _stamp(path, expected)
    except OSError:
        return None
    return digest if fresh and isinstance(digest, str) else None


def record_verified(path: Path, expected: FileSpec, digest: str) -> None:
    """Remember that ``path`` (as it is now) passed ``check_file``; best effort, a read-only cache records nothing."""
    records = _read_verified()
    try:
        records[str(path.resolve())] = {**_stamp(path, expected), "content_sha256": digest}
        target = _verified_path()
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".verified-")
        with os.fdopen(fd, "w") as out:
            json.dump(records, out, indent=1, sort_keys=True)
        os.replace(tmp, target)
    except OSError:
        pass


def check_file_once(path: Path, expected: FileSpec, content: bytes | None = None) -> str:
    """``check_file``, skipped when ``path`` passed it before and its size and mtime are unchanged."""
    digest = verified_digest(path, expected)
    if digest is None:
        digest = check_file(path, expected, content)
        record_verified(path, expected, digest)
    return digest


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_one(url: str, target: Path, expected: FileSpec) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    tmp = Path(tmp_name)
    limit = max_content_bytes()  # a compressed file is never larger than its content
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise DataError(f"{url} is {int(declared):,} bytes, over the {limit:,}-byte limit for a dataset "
                                f"file ({MAX_BYTES_ENV})", f"if the mirror is right, raise the limit: {MAX_BYTES_ENV}")
            received = 0
            for block in iter(lambda: response.read(1 << 20), b""):  # streamed to disk, never held whole
                received += len(block)
                if received > limit:
                    raise DataError(f"{url} sent more than {limit:,} bytes, the limit for a dataset file "
                                    f"({MAX_BYTES_ENV})", f"if the mirror is right, raise the limit: {MAX_BYTES_ENV}")
                out.write(block)
        check_file(tmp, expected, label=url)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def download(spec: DatasetSpec, dest: Path, mirrors: list[str] | None = None) -> Path:
    """Download every file of ``spec`` into ``dest`` from the first mirror that serves a genuine copy."""
    bases = list(mirrors or spec.mirrors)
    for role in ROLES:
        expected = spec.files[role]
        target = dest / expected.name
        failures = []
        for base in bases:
            url = base.rstrip("/") + "/" + expected.name
            try:
                _download_one(url, target, expected)
                break
            except DataError as exc:
                failures.append(f"{url}: {exc.problem}")
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                reason = getattr(exc, "reason", exc)
                failures.append(f"{url}: {reason}")
            except ValueError as exc:  # not a URL at all ("unknown url type")
                failures.append(f"{url}: {exc} (a mirror is a base URL such as https://host/path/)")
        else:
            raise DataError(f"could not download {spec.name} file {expected.name} ({'; '.join(failures)})",
                            _offline_hint(spec))
    return dest


def _offline_hint(spec: DatasetSpec) -> str:
    hint = f"`striate data get {spec.name} --from FOLDER` with a local copy"
    return f"{spec.install_hint}, or {hint}" if spec.install_hint and "apt-get" in spec.install_hint else hint


def copy_verified(spec: DatasetSpec, source: Path, dest: Path) -> Path:
    """Copy the four files of ``spec`` from ``source`` into ``dest``, verifying each on the way."""
    dest.mkdir(parents=True, exist_ok=True)
    for role in ROLES:
        found = find_file(source, role)
        if found is None:
            raise DataError(f"{source} has no {FILE_NAMES[role]}[.gz] file",
                            "point --from at a folder with all four IDX files")
        try:
            check_file(found, spec.files[role])
        except DataError as exc:  # the user's own folder: never suggest deleting their file
            raise DataError(exc.problem, f"point --from at a folder with the genuine {spec.name} files") from None
        target = dest / (FILE_NAMES[role] + (".gz" if found.suffix == ".gz" else ""))
        if found.resolve() != target.resolve():
            shutil.copyfile(found, target)
    return dest


def locate(spec: DatasetSpec, allow_download: bool = True, mirrors: list[str] | None = None) -> Path:
    """A folder holding the files of ``spec``: the cache, an OS package's copy, or a fresh download."""
    cached = cache_dir(spec)
    if has_all_files(cached):
        return cached
    for local in spec.local_copies:
        if has_all_files(Path(local)):
            return Path(local)
    if not allow_download:
        raise DataError(f"dataset {spec.name} is not available locally", _offline_hint(spec))
    return download(spec, cached, mirrors)


def get(spec: DatasetSpec, from_dir: Path | None = None, force_download: bool = False,
        mirrors: list[str] | None = None, allow_download: bool = True) -> Path:
    """Make ``spec`` available in the cache or in place and return its verified folder (``striate data get``)."""
    if from_dir is not None:
        if not from_dir.is_dir():
            raise DataError(f"folder {from_dir} does not exist", "name the folder that holds the four IDX files")
        return copy_verified(spec, from_dir, cache_dir(spec))
    if force_download:
        return download(spec, cache_dir(spec), mirrors)
    folder = locate(spec, allow_download=allow_download, mirrors=mirrors)
    for role in ROLES:
        found = find_file(folder, role)
        if found is None:
            raise DataError(f"{folder} lost its {FILE_NAMES[role]} file while being read", "run the command again")
        check_file_once(found, spec.files[role])
    return folder
