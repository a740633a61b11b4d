"""striate's torchvision-compatible models compute torchvision's logits, checked without torchvision.

The golden file holds logits torchvision computed (scripts/make-golden-logits.py) for weights and
inputs that tests/models/golden.py regenerates here from a seed; test_torchvision_real.py makes
the same comparison live where torchvision is installed.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.models import golden


@pytest.fixture(scope="module")
def recorded() -> dict:
    """The golden file: it must exist (make it with scripts/make-golden-logits.py)."""
    assert golden.GOLDEN.is_file(), f"{golden.GOLDEN} is missing: run scripts/make-golden-logits.py"
    return json.loads(golden.GOLDEN.read_text())


def test_the_file_covers_every_pair_with_the_current_recipe(recorded):
    assert sorted(recorded["models"]) == sorted(golden.PAIRS)
    assert (recorded["seed"], recorded["period"], recorded["num_classes"], tuple(recorded["input_shape"])) == (
        golden.SEED, golden.PERIOD, golden.NUM_CLASSES, golden.INPUT_SHAPE)
    assert recorded["torchvision"]  # which torchvision computed them


@pytest.mark.parametrize("name", sorted(golden.PAIRS))
def test_logits_match_torchvisions(recorded, name):
    row = recorded["models"][name]
    model = golden.striate_model(name)
    assert golden.layout_digest(model) == row["layout_sha256"], "the state_dict layout changed: the seeded " \
        "weights no longer match torchvision's; regenerate only if torchvision's layout changed too"
    expected = torch.tensor(row["logits"])
    with torch.no_grad():
        got = model(golden.inputs())
    assert got.shape == expected.shape == (golden.INPUT_SHAPE[0], golden.NUM_CLASSES)
    scale = float(expected.abs().max())
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * max(scale, 1.0))
