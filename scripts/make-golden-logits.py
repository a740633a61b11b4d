#!/usr/bin/env python
"""Write tests/models/golden/torchvision-logits.json: torchvision's logits for fixed seeded weights and inputs.

Run where torchvision is installed, from the repository root:

    python scripts/make-golden-logits.py

For each torchvision model striate reproduces (AlexNet, VGG-11..19 with and without
BatchNorm, GoogLeNet), it makes the seeded weights of tests/models/golden.py (from the
keys of striate's own state_dict, in order), loads them into torchvision's model with
strict=True, runs the fixed inputs in eval mode and stores the logits with the
torchvision and torch versions. tests/models/test_golden_logits.py then checks striate's
outputs against the file without torchvision.

``--without-compiled-ops`` imports torchvision's model modules without its compiled
extension (``torchvision._C``), for machines where the installed wheel's extension does
not load beside the installed torch (a CUDA wheel next to a CPU torch). These models use
no torchvision operator, only PyTorch's; the file records that the extension was not loaded.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/models/golden.py holds the recipe the test shares

from tests.models import golden  # noqa: E402


def torchvision_models(without_compiled_ops: bool) -> tuple[Any, str, str]:
    """torchvision's model builders, its version and its git revision."""
    if not without_compiled_ops:
        import torchvision
        import torchvision.models

        return torchvision.models, torchvision.__version__, getattr(torchvision.version, "git_version", "")
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("torchvision is not installed")
    location = list(spec.submodule_search_locations)
    # Empty package objects stand in for torchvision/__init__.py and torchvision/models/__init__.py,
    # which load the compiled extension and the detection models; the model modules themselves do not.
    package = types.ModuleType("torchvision")
    package.__path__ = location
    sys.modules["torchvision"] = package
    models_package = types.ModuleType("torchvision.models")
    models_package.__path__ = [str(Path(location[0]) / "models")]
    sys.modules["torchvision.models"] = models_package
    version = importlib.import_module("torchvision.version")
    builders = types.SimpleNamespace()
    for module in ("alexnet", "vgg", "googlenet"):
        loaded = importlib.import_module(f"torchvision.models.{module}")
        for name in golden.PAIRS.values():
            if hasattr(loaded, name):
                setattr(builders, name, getattr(loaded, name))
    return builders, version.__version__, version.git_version


def main() -> None:
    """Build, load, run and write the golden file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--without-compiled-ops", action="store_true",
                        help="import torchvision's model modules without its compiled extension")
    parser.add_argument("--output", type=Path, default=golden.GOLDEN)
    args = parser.parse_args()
    tv_models, tv_version, tv_git = torchvision_models(args.without_compiled_ops)
    x = golden.inputs()
    rows = {}
    for name, builder in golden.PAIRS.items():
        ours = golden.striate_model(name)
        state = golden.seeded_state(ours)
        options = {"aux_logits": True, "init_weights": False} if builder == "googlenet" else {}
        reference = getattr(tv_models, builder)(weights=None, num_classes=golden.NUM_CLASSES, **options)
        reference.load_state_dict(state, strict=True)
        reference.eval()
        with torch.no_grad():
            expected = reference(x)
            got = ours(x)
        difference = float((expected - got).abs().max())
        print(f"{name:13s} torchvision.models.{builder}: max |logit| {float(expected.abs().max()):.3f}, "
              f"striate differs by {difference:.2e}")
        rows[name] = {"torchvision_builder": builder, "layout_sha256": golden.layout_digest(ours),
                      "logits": expected.tolist()}
    document = {
        "about": "torchvision's logits for the seeded weights and inputs of tests/models/golden.py; "
                 "written by scripts/make-golden-logits.py",
        "torchvision": tv_version, "torchvision_git": tv_git, "torch": torch.__version__,
        "compiled_ops_loaded": not args.without_compiled_ops,
        "seed": golden.SEED, "period": golden.PERIOD, "input_shape": list(golden.INPUT_SHAPE),
        "num_classes": golden.NUM_CLASSES, "models": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")


if __name__ == "__main__":
    main()
