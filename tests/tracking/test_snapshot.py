"""Code snapshots: deterministic content addresses, .gitignore rules, size caps and a restore that refuses escapes."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from striate.errors import ConfigError
from striate.tracking.snapshot import restore_snapshot, snapshot_files, snapshot_source
from tests.conftest import tar_member


def make_tree(root: Path) -> Path:
    """A small project with things a snapshot must keep and things it must leave out."""
    files = {
        "train.py": "print('train')\n",
        "pkg/__init__.py": "",
        "pkg/model.py": "WIDTH = 3\n",
        "pkg/keep.log": "kept by a negated pattern\n",
        "pkg/notes.log": "ignored by the root .gitignore\n",
        "pkg/sub/secret.txt": "ignored by a nested .gitignore\n",
        "pkg/sub/public.txt": "kept\n",
        "data/big.bin": "ignored folder\n",
        ".gitignore": "*.log\n!keep.log\ndata/\n",
        "pkg/sub/.gitignore": "secret.txt\n",
        ".git/HEAD": "ref: refs/heads/main\n",
        "pkg/__pycache__/model.cpython-311.pyc": "bytecode",
        "venv/pyvenv.cfg": "home = /usr\n",
        "venv/lib/site.py": "never",
        "striate-runs/striate.db": "a store",
        "elsewhere-store/striate.db": "another store",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "train.py").chmod(0o755)
    return root


def names(archive: str | Path) -> list[str]:
    with tarfile.open(archive, "r:gz") as tar:
        return tar.getnames()


def test_snapshot_keeps_source_and_honours_gitignore(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "project")
    result = snapshot_source(root, tmp_path / "out")
    assert names(result["path"]) == [".gitignore", "pkg/__init__.py", "pkg/keep.log", "pkg/model.py",
                                     "pkg/sub/.gitignore", "pkg/sub/public.txt", "train.py"]
    assert result["files"] == 7 and not result["truncated"]
    assert Path(result["path"]).name == f"code-{result['sha256'][:16]}.tar.gz"


def test_same_tree_same_hash_and_bytes_changed_file_new_hash(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "a")
    first = snapshot_source(root, tmp_path / "out1")
    copy = tmp_path / "b"
    shutil.copytree(root, copy)  # new mtimes, other absolute path: the hash must not care
    os.utime(copy / "pkg" / "model.py", (1, 1))
    second = snapshot_source(copy, tmp_path / "out2")
    assert first["sha256"] == second["sha256"]
    assert Path(first["path"]).read_bytes() == Path(second["path"]).read_bytes()
    (copy / "pkg" / "model.py").write_text("WIDTH = 4\n")
    assert snapshot_source(copy, tmp_path / "out3")["sha256"] != first["sha256"]


def test_dest_inside_root_is_not_snapshotted(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "project")
    first = snapshot_source(root, root / "snapshots")
    second = snapshot_source(root, root / "snapshots")
    assert first["sha256"] == second["sha256"]
    assert not any(n.startswith("snapshots/") for n in names(second["path"]))


def test_size_caps_skip_big_files_and_truncate(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "a.py").write_bytes(b"a" * 100)
    (root / "b.py").write_bytes(b"b" * 100)
    (root / "c.py").write_bytes(b"c" * 100)
    (root / "0huge.py").write_bytes(b"h" * 5000)
    result = snapshot_source(root, tmp_path / "out", max_total_bytes=250, max_file_bytes=1000)
    assert result["truncated"] is True
    assert names(result["path"]) == ["a.py", "b.py"]
    assert result["bytes"] == 200 and result["files"] == 2
    reasons = {s["path"]: s["reason"] for s in result["skipped"]}
    assert "larger than 1000" in reasons["0huge.py"] and "limit" in reasons["c.py"]


def test_symlinks_are_skipped_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "real.py").write_text("x = 1\n")
    (root / "link.py").symlink_to("/etc/passwd")
    result = snapshot_source(root, tmp_path / "out")
    assert names(result["path"]) == ["real.py"]
    assert {"path": "link.py", "reason": "link"} in result["skipped"]


def test_snapshot_files_takes_only_the_given_files(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "project")
    result = snapshot_files(root, ["pkg/model.py", "data/big.bin", "missing.py", "../outside.py"], tmp_path / "out")
    assert names(result["path"]) == ["data/big.bin", "pkg/model.py"]  # explicit files skip .gitignore rules
    reasons = {s["path"]: s["reason"] for s in result["skipped"]}
    assert reasons["missing.py"] == "missing" and "'..'" in reasons["../outside.py"]


def test_restore_round_trip_and_checks(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "project")
    result = snapshot_source(root, tmp_path / "out")
    target = tmp_path / "restored"
    info = restore_snapshot(Path(result["path"]), target, sha256=result["sha256"])
    assert info["files"] == 7
    assert (target / "pkg" / "model.py").read_text() == "WIDTH = 3\n"
    assert os.access(target / "train.py", os.X_OK)
    with pytest.raises(ConfigError, match="would overwrite"):
        restore_snapshot(Path(result["path"]), target)
    restore_snapshot(Path(result["path"]), target, overwrite=True)
    with pytest.raises(ConfigError, match="content hash"):
        restore_snapshot(Path(result["path"]), tmp_path / "other", sha256="0" * 64)


def craft(path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """Write a tar.gz holding exactly ``entries``, however unsafe."""
    with tarfile.open(path, "w:gz") as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


MALICIOUS = {
    "dotdot": (tar_member("../evil.py"), b"evil"),
    "nested-dotdot": (tar_member("pkg/../../evil.py"), b"evil"),
    "absolute": (tar_member("/tmp/striate-evil.py"), b"evil"),
    "symlink": (tar_member("passwd", tarfile.SYMTYPE, "/etc/passwd"), None),
    "hardlink": (tar_member("linked", tarfile.LNKTYPE, "../../outside"), None),
    "device": (tar_member("dev", tarfile.CHRTYPE), None),
    "fifo": (tar_member("pipe", tarfile.FIFOTYPE), None),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_restore_refuses_malicious_archives_before_writing(tmp_path: Path, case: str) -> None:
    good = (tar_member("good.py"), b"x = 1\n")
    archive = craft(tmp_path / "evil.tar.gz", [good, MALICIOUS[case]])
    target = tmp_path / "sandbox" / "target"
    with pytest.raises(ConfigError, match="unsafe"):
        restore_snapshot(archive, target)
    assert not (tmp_path / "sandbox").exists()  # nothing extracted, not even the good member
    assert not (tmp_path / "evil.py").exists()


def test_restore_refuses_a_corrupt_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tarball")
    with pytest.raises(ConfigError, match="cannot read"):
        restore_snapshot(bad, tmp_path / "target")
