"""Checkpoint files are written atomically: a process killed while saving never leaves a damaged file."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from striate.train import checkpoint as ckpt

WRITER = """
import sys, torch
from pathlib import Path
from striate.train import checkpoint as ckpt
model = torch.nn.Linear(1024, 2048)  # ~8 MB: a save takes long enough to be killed in the middle
path = Path(sys.argv[1])
i = 0
while True:
    i += 1
    with torch.no_grad():
        model.weight.fill_(float(i))
    ckpt.save_weights(model, path)
    ckpt.save_training_state(path.with_suffix(".state.pt"), {"i": i})
    print(i, flush=True)
"""


def test_a_save_killed_midway_leaves_the_previous_checkpoint_whole(tmp_path):
    path = tmp_path / "w.safetensors"
    for delay in (0.0, 0.013, 0.029, 0.047):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        proc.stdout.readline()  # one whole save done
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        tensors = load_file(str(path))  # a half-written file would not parse
        value = float(tensors["weight"][0, 0])
        assert torch.all(tensors["weight"] == value) and value >= 1
        state = ckpt.load_training_state(path.with_suffix(".state.pt"))
        assert state["i"] >= 1


def test_an_interrupted_save_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    model = torch.nn.Linear(4, 3)
    ckpt.save_weights(model, path)
    before = path.read_bytes()

    def half_write(tensors, filename):
        Path(filename).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "save_file", half_write)
    with torch.no_grad():
        model.weight.add_(1)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_weights(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_weights_follow_the_umask_like_other_artifacts(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        ckpt.save_weights(torch.nn.Linear(2, 2), tmp_path / "model.safetensors")
        ckpt.save_training_state(tmp_path / "state.pt", {"epoch": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "state.pt").stat().st_mode & 0o777 == 0o644
