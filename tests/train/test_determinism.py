"""Deterministic kernels are switched on and back off without importing Inductor (issue 11: start-up)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys, torch
from striate.train.determinism import deterministic_mode
with deterministic_mode(True, torch.device("cpu")):
    inside = torch.are_deterministic_algorithms_enabled()
print(inside, torch.are_deterministic_algorithms_enabled(), "torch._inductor" in sys.modules)
"""


def test_deterministic_mode_sets_and_restores_the_flag_without_inductor():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["True", "False", "False"], done.stderr
