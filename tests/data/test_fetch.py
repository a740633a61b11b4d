"""The downloader against a real HTTP server on 127.0.0.1, including corrupted downloads."""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from striate.data import fetch
from striate.data.catalog import FASHION_MNIST, FILE_NAMES, ROLES, DatasetSpec, FileSpec
from striate.data.idx import read_bytes
from striate.errors import DataError
from tests.conftest import REAL_FASHION_MNIST, run_cli, write_dataset


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that stops reading early (a refused download) is expected here


@pytest.fixture
def serve():
    """Serve folders over HTTP on 127.0.0.1; yields a function folder -> base URL."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = _QuietServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def spec_for(folder: Path, by: str = "archive") -> DatasetSpec:
    files = {}
    for role in ROLES:
        path = folder / (FILE_NAMES[role] + ".gz")
        if by == "archive":
            files[role] = FileSpec(path.name, archive_sha256=hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            files[role] = FileSpec(path.name, content_sha256=hashlib.sha256(read_bytes(path)).hexdigest())
    return DatasetSpec(name="synthetic", files=files, mirrors=(), classes=tuple(str(i) for i in range(10)))


@pytest.mark.parametrize("by", ["archive", "content"])
def test_download_verifies_and_caches(tmp_path, serve, by):
    source = write_dataset(tmp_path / "origin")
    spec = spec_for(source, by)
    base = serve(source)
    dest = fetch.download(spec, tmp_path / "dl", mirrors=[base])
    for role in ROLES:
        assert (dest / spec.files[role].name).read_bytes() == (source / spec.files[role].name).read_bytes()


def test_corrupted_download_is_rejected_and_not_kept(tmp_path, serve):
    source = write_dataset(tmp_path / "origin")
    spec = spec_for(source)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(source, corrupt)
    victim = corrupt / spec.files["train_images"].name
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    dest = tmp_path / "dl"
    mirror = serve(corrupt)
    with pytest.raises(DataError, match="checksum mismatch") as info:
        fetch.download(spec, dest, mirrors=[mirror])
    name = spec.files["train_images"].name
    assert f"could not download {spec.name} file {name}" in info.value.problem
    assert f"{mirror.rstrip('/')}/{name}: checksum mismatch" in info.value.problem  # which mirror served it
    # The fix offers a local copy; this dataset has no OS package, so no apt-get advice.
    assert info.value.fix == f"`striate data get {spec.name} --from FOLDER` with a local copy"
    assert not (dest / spec.files["train_images"].name).exists()
    assert not list(dest.glob(".part-*")), "partial downloads must be cleaned up"


def test_falls_back_to_the_next_mirror(tmp_path, serve):
    source = write_dataset(tmp_path / "origin")
    spec = spec_for(source)
    empty = tmp_path / "empty"
    empty.mkdir()
    dest = fetch.download(spec, tmp_path / "dl", mirrors=[serve(empty), serve(source)])
    assert fetch.has_all_files(dest)


def test_unreachable_mirror_names_the_fix(tmp_path):
    source = write_dataset(tmp_path / "origin")
    spec = spec_for(source)
    with pytest.raises(DataError, match="could not download") as info:
        fetch.download(spec, tmp_path / "dl", mirrors=["http://127.0.0.1:9/"])
    assert "--from" in str(info.value)


def test_get_from_folder_copies_verified_files(tmp_path):
    source = write_dataset(tmp_path / "origin")
    spec = spec_for(source, "content")
    folder = fetch.get(spec, from_dir=source)
    assert folder == fetch.cache_dir(spec)
    assert fetch.has_all_files(folder)


def test_get_from_folder_rejects_wrong_files(tmp_path):
    source = write_dataset(tmp_path / "origin")
    other = write_dataset(tmp_path / "other", seed=7)
    with pytest.raises(DataError, match="checksum mismatch") as info:
        fetch.get(spec_for(source, "content"), from_dir=other)
    assert "delete" not in info.value.fix, "the user's own files are never to be deleted"


def test_a_mirror_that_is_not_a_url_is_a_clear_error(tmp_path):
    spec = spec_for(write_dataset(tmp_path / "origin"))
    with pytest.raises(DataError, match="notaurl.*base URL"):
        fetch.download(spec, tmp_path / "dl", mirrors=["notaurl"])


def test_offline_without_local_copy_says_how_to_get_it(tmp_path):
    spec = DatasetSpec(name="nowhere", files=FASHION_MNIST.files, mirrors=(), classes=("a",),
                       install_hint="sudo apt-get install dataset-nowhere")
    with pytest.raises(DataError, match="not available locally") as info:
        fetch.locate(spec, allow_download=False)
    assert "apt-get install dataset-nowhere" in str(info.value)


@pytest.mark.skipif(not REAL_FASHION_MNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_cli_downloads_real_fashion_mnist_from_a_local_mirror(tmp_path, serve):
    base = serve(REAL_FASHION_MNIST)
    cache = tmp_path / "clicache"
    done = run_cli("data", "get", "fashion-mnist", "--download", "--mirror", base, "--json",
                   env={"STRIATE_CACHE": str(cache)})
    assert done.returncode == 0, done.stderr
    assert fetch.has_all_files(cache / "datasets" / "fashion-mnist")
    broken = tmp_path / "broken"
    shutil.copytree(REAL_FASHION_MNIST, broken)
    (broken / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    failed = run_cli("data", "get", "fashion-mnist", "--download", "--mirror", serve(broken),
                     env={"STRIATE_CACHE": str(tmp_path / "cache2")})
    assert failed.returncode != 0
    assert len(failed.stderr.strip().splitlines()) == 1 and "t10k-labels" in failed.stderr


def test_a_verified_file_is_hashed_again_only_when_its_size_or_mtime_changes(tmp_path):
    source = write_dataset(tmp_path / "origin")
    spec = spec_for(source, "content")
    folder = fetch.get(spec, from_dir=source)
    assert fetch.get(spec) == folder  # verified and recorded
    path = fetch.find_file(folder, "train_labels")
    expected = spec.files["train_labels"]
    assert fetch.verified_digest(path, expected) == expected.content_sha256
    # Other bytes under the same size and mtime are taken on the record's word (that is the bargain) ...
    genuine, before = path.read_bytes(), path.stat()
    changed = bytearray(genuine)
    changed[len(changed) // 2] ^= 0xFF
    path.write_bytes(bytes(changed))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert fetch.get(spec) == folder
    # ... and a new mtime (or size) means the file is verified again, and refused.
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert fetch.verified_digest(path, expected) is None
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch.get(spec)
    path.write_bytes(genuine[:-1])
    assert fetch.verified_digest(path, expected) is None
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch.get(spec)
    # Put back, it is verified (and recorded) once more.
    path.write_bytes(genuine)
    assert fetch.get(spec) == folder and fetch.verified_digest(path, expected) == expected.content_sha256


def test_loading_a_dataset_uses_and_keeps_the_verification_record(tmp_path):
    from striate.data.loader import _read_folder

    source = write_dataset(tmp_path / "origin")
    spec = spec_for(source, "content")
    _, hashes = _read_folder(source, spec)
    assert all(fetch.verified_digest(fetch.find_file(source, r), spec.files[r]) == hashes[r] for r in ROLES)
