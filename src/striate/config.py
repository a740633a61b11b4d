"""The training configuration: defaults, then a YAML file, then command-line overrides.

Every setting is declared once below (name, type, default, help); the CLI, the
validation and the docs are derived from these declarations. Unknown keys are
rejected with the closest known name; the resolved config is stored with the run.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from striate.errors import ConfigError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


def _setting(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """Everything that determines a training run."""

    model: str = _setting("lenet5", "registered model name (`striate models`)")
    data: str = _setting("fashion-mnist", "dataset name (fashion-mnist, mnist) or folder of IDX files")
    epochs: int = _setting(10, "passes over the training set")
    batch_size: int = _setting(128, "training images per step")
    optimizer: str = _setting("sgd", "sgd or adamw", choices=OPTIMIZERS)
    lr: float = _setting(0.05, "peak learning rate")
    momentum: float = _setting(0.9, "SGD momentum (AdamW: beta1)")
    nesterov: bool = _setting(True, "Nesterov momentum (SGD)")
    weight_decay: float = _setting(5e-4, "L2 weight decay (decoupled for AdamW)")
    schedule: str = _setting("onecycle", "learning-rate schedule: constant, step, cosine, onecycle", choices=SCHEDULES)
    step_epochs: int = _setting(0, "step schedule: epochs between decays (0: a third of the run)")
    step_gamma: float = _setting(0.1, "step schedule: factor applied at each decay")
    warmup_fraction: float = _setting(0.15, "onecycle: fraction of steps spent warming up")
    label_smoothing: float = _setting(0.0, "label smoothing in the cross-entropy loss (0 to <1)")
    crop_padding: int = _setting(0, "augmentation: random crop after padding by this many pixels (0: off)")
    flip: bool = _setting(False, "augmentation: random horizontal flip")
    seed: int = _setting(0, "seed for weights, data order and augmentation")
    device: str = _setting("auto", "auto (CUDA when present), cpu or cuda", choices=DEVICES)
    precision: str = _setting("auto", "auto (bf16 on CUDA for models of >= 10 M multiply-adds per image, "
                              "else fp32), fp32 or bf16", choices=PRECISIONS)
    channels_last: bool = _setting(True, "NHWC memory layout for convolutions (faster on CPU and tensor cores)")
    threads: int = _setting(0, "CPU threads for torch (0: torch's default)")
    eval_batch_size: int = _setting(1024, "images per evaluation batch")
    log_every: int = _setting(50, "steps between logged training metrics")
    checkpoint: bool = _setting(True, "save a checkpoint after each epoch and at the end")
    keep_checkpoints: int = _setting(0, "epoch checkpoints to keep (0: all)")
    checkpoint_every: int = _setting(0, "also checkpoint every this many steps within an epoch (0: epochs only)")
    deterministic: str = _setting("auto", "deterministic kernels: auto (on for CPU, off for CUDA), on, off",
                                  choices=("auto", "on", "off"))
    project: str = _setting("default", "project the run belongs to")
    name: str = _setting("", "run name (empty: generated)")
    tags: list = _setting([], "run tags")
    model_options: dict = _setting({}, "extra keyword options for the model builder")
    pretrained: str = _setting("", "weight file (safetensors or a state dict) or run id/name to start from; "
                                   "the classifier is replaced when the class count differs")
    image_size: int = _setting(0, "resize images to this side on the device (0: pad to the model's minimum)")

    # -- building ---------------------------------------------------------------------------------
    @classmethod
    def fields(cls) -> list[dataclasses.Field[Any]]:
        """The declared settings."""
        return list(dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """Defaults overridden by ``values``; unknown keys and bad values raise ConfigError."""
        return cls().override(values, source)

    @classmethod
    def from_file(cls, path: Path) -> TrainConfig:
        """Defaults overridden by a YAML (or JSON) file."""
        return cls().override(load_file(path), str(path))

    def override(self, values: Mapping[str, Any], source: str = "override") -> TrainConfig:
        """A copy with ``values`` applied, coerced to each setting's type and validated."""
        known = {f.name: f for f in self.fields()}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            norm = key.replace("-", "_")
            if norm not in known:
                close = difflib.get_close_matches(norm, known, n=1)
                fix = f"did you mean {close[0]!r}?" if close else "`striate train --help` lists the settings"
                raise ConfigError(f"unknown setting {key!r} in {source}", fix)
            changes[norm] = coerce(known[norm], value, source)
        result = dataclasses.replace(self, **changes)
        result.validate()
        return result

    def validate(self) -> None:
        """Raise ConfigError naming the first invalid value."""
        checks = [
            (self.epochs >= 1, "epochs", "must be at least 1"),
            (self.batch_size >= 1, "batch_size", "must be at least 1"),
            (self.eval_batch_size >= 1, "eval_batch_size", "must be at least 1"),
            (self.lr > 0, "lr", "must be positive"),
            (0 <= self.momentum < 1, "momentum", "must be in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay", "must be >= 0"),
            (0 <= self.label_smoothing < 1, "label_smoothing", "must be in [0, 1)"),
            (self.crop_padding >= 0, "crop_padding", "must be >= 0"),
            (0 < self.warmup_fraction < 1, "warmup_fraction", "must be in (0, 1)"),
            (self.step_epochs >= 0, "step_epochs", "must be >= 0"),
            (0 < self.step_gamma <= 1, "step_gamma", "must be in (0, 1]"),
            (self.threads >= 0, "threads", "must be >= 0"),
            (self.log_every >= 1, "log_every", "must be at least 1"),
            (self.keep_checkpoints >= 0, "keep_checkpoints", "must be >= 0"),
            (self.image_size >= 0, "image_size", "must be >= 0"),
            (self.checkpoint_every >= 0, "checkpoint_every", "must be >= 0"),
            (not (self.nesterov and self.optimizer == "sgd" and self.momentum == 0), "nesterov",
             "needs momentum > 0"),
        ]
        for ok, key, rule in checks:
            if not ok:
                raise ConfigError(f"invalid {key}={getattr(self, key)!r}: {rule}",
                                  f"set a valid --{key.replace('_', '-')}")

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data (stored with the run)."""
        return dataclasses.asdict(self)


def load_file(path: Path) -> dict[str, Any]:
    """Read a YAML/JSON config file into a mapping (size- and alias-capped: see striate.safe_yaml)."""
    from striate import safe_yaml

    try:
        with open(path, "rb") as fh:
            text = fh.read(safe_yaml.MAX_BYTES + 1)  # never more than the cap, whatever the file's size
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}", "check the path given to -c") from None
    data = safe_yaml.loads(text, f"config file {path}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, not a {type(data).__name__}",
                          "write `key: value` lines, e.g. `epochs: 5`")
    return data


def _annotation(f: dataclasses.Field[Any]) -> Any:
    hints = typing.get_type_hints(TrainConfig)
    return hints[f.name]


def coerce(f: dataclasses.Field[Any], value: Any, source: str) -> Any:
    """Convert ``value`` (often a string from the command line) to the type of setting ``f``."""
    kind = _annotation(f)
    if isinstance(kind, types.GenericAlias):
        kind = typing.get_origin(kind)
    bad = ConfigError(f"invalid {f.name}={value!r} in {source}: expected {getattr(kind, '__name__', kind)}",
                      f"e.g. {f.name}={f.default if f.default is not dataclasses.MISSING else '...'}")
    try:
        if kind is bool:
            if isinstance(value, bool):
                result: Any = value
            elif isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
                result = True
            elif isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
                result = False
            else:
                raise bad
        elif kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise bad
            result = int(value)
        elif kind is float:
            if isinstance(value, bool):
                raise bad
            result = float(value)
        elif kind is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise bad
            result = str(value)
        elif kind is list:
            result = [s.strip() for s in value.split(",") if s.strip()] if isinstance(value, str) else list(value)
        elif kind is dict:
            if isinstance(value, str):
                from striate import safe_yaml

                value = safe_yaml.loads(value, f"{f.name} in {source}")
            if not isinstance(value, dict):
                raise bad
            result = dict(value)
        else:  # pragma: no cover - every declared type is handled above
            result = value
    except (TypeError, ValueError, OverflowError):  # OverflowError: float() of an integer past 1e308
        raise bad from None
    choices = f.metadata.get("choices")
    if choices and result not in choices:
        raise ConfigError(f"invalid {f.name}={value!r} in {source}", f"choose one of: {', '.join(choices)}")
    return result


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """``["lr=0.1", "epochs=3"]`` -> ``{"lr": "0.1", "epochs": "3"}``."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"cannot read override {pair!r}", "write --set key=value, e.g. --set lr=0.1")
        result[key.strip()] = value.strip()
    return result
