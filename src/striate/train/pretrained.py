"""Starting from a weight file or a recorded run: fine-tuning with another class count or input channel count."""

from __future__ import annotations

from pathlib import Path

import torch

from striate.errors import ConfigError, RunNotFoundError, StriateError
from striate.models.registry import ModelInfo, info_of


def resolve_pretrained(ref: str, store_location: str | None, model: str) -> Path:
    """The weight file ``--pretrained REF`` names: a file path as given, else the run REF (id, id prefix or
    name) of the store: its final ``model.safetensors``, or its latest checkpoint when it has none.

    The run must have trained ``model`` (its architecture), and the file must match its recorded SHA-256
    (a file without a recorded hash cannot be verified, and is refused). A bare REF that is both a file
    here and a run of the store is an error: ``./REF`` names the file, the run's id the run.
    """
    from striate.archives import unsafe_name
    from striate.tracking.store import default_store_location, holds_store, open_store
    from striate.tracking.store.base import ArtifactMissingError, artifact_path_problem, file_sha256

    path = Path(ref)
    location = str(store_location or default_store_location())
    if path.is_file():
        if "/" not in ref and "\\" not in ref and not location.startswith(("http://", "https://")) and (
                "://" in location or holds_store(location)):
            try:
                record = open_store(location, read_only=True).get_run(ref)
            except StriateError:  # not a run (or not one run): the file it is
                return path
            raise ConfigError(f"--pretrained {ref!r} names both the file {path} and run {record.id[:8]} "
                              f"({record.name}) in {location}",
                              f"write ./{ref} for the file, or the run id {record.id} for the run")
        return path
    looks_like_file = path.suffix in (".safetensors", ".pth", ".pt", ".bin") or "/" in ref or "\\" in ref
    if looks_like_file or ("://" not in location and not holds_store(location)):
        raise ConfigError(f"pretrained weight file {path} does not exist",
                          "pass the path of a .safetensors or .pth file, or a run id or name from `striate runs` "
                          "(with --store when the run is in another store)")
    store = open_store(location, read_only=True)
    try:
        record = store.get_run(ref)
    except RunNotFoundError as exc:
        raise ConfigError(f"--pretrained {ref!r} is neither a weight file nor a run in {location} ({exc.problem})",
                          "pass the path of a .safetensors or .pth file, or a run id or name from `striate runs`"
                          ) from None
    if record.model and record.model != model:
        raise ConfigError(f"run {record.id[:8]} ({record.name}) trained {record.model}, not {model}: its weights "
                          "do not fit this architecture",
                          f"train {record.model} to start from this run, or pick a run of {model} "
                          f"(striate runs --where \"model = '{model}'\")")
    recorded = {a["path"]: a for a in record.artifacts}
    # newest checkpoint first: artifacts are listed in the order they were recorded
    checkpoints = [a["path"] for a in reversed(record.artifacts) if a.get("kind") == "checkpoint"]
    for rel in ["model.safetensors", *checkpoints]:
        # The path is stored text: it must name a file inside the run's own folder.
        if rel not in recorded or unsafe_name(rel) or artifact_path_problem(rel):
            continue
        try:  # checked to stay in the run's folder; from a team server, downloaded and checked by SHA-256
            weights = store.artifact_file(record.id, rel)
        except ArtifactMissingError:
            continue
        expected = recorded[rel].get("sha256")
        if not expected:
            raise ConfigError(f"run {record.id[:8]}'s {rel} has no recorded SHA-256, so it cannot be verified",
                              "pick another run, or pass a weight file you trust by its path")
        if file_sha256(weights) != expected:
            raise ConfigError(f"run {record.id[:8]}'s {rel} does not match its recorded SHA-256",
                              "the stored file was changed or damaged; pick another run or pass a weight file")
        return weights
    raise ConfigError(f"run {record.id[:8]} ({record.name}, {record.status}) has no weights to start from: "
                      "no model.safetensors and no checkpoint",
                      f"pick a run that finished training or saved a checkpoint (`striate artifacts {record.id[:8]}` "
                      "lists its files)")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file or a PyTorch state dict (loaded with weights_only=True)."""
    if not path.is_file():
        raise ConfigError(f"pretrained weight file {path} does not exist",
                          "pass the path of a .safetensors or .pth file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error type for damaged files
            raise ConfigError(f"cannot read {path} as a safetensors file ({str(exc).splitlines()[0]})",
                              "pass an intact .safetensors file, e.g. a run's model.safetensors") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for non-weight pickles
        raise ConfigError(f"cannot read {path} as a weights-only state dict ({type(exc).__name__})",
                          "save the weights with torch.save(model.state_dict(), path) or as safetensors") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path} does not hold a state dict of tensors", "export the model's state_dict()")
    return state


def load_pretrained(model: torch.nn.Module, path: Path, num_classes: int,
                    state: dict[str, torch.Tensor] | None = None, info: ModelInfo | None = None) -> list[str]:
    """Load ``path`` into ``model``; return the keys left at their fresh initialization.

    The model's record (``info``, else the one ``striate.models.create`` attached) names
    the layers that may differ: the classifier(s), whose tensors for another class count
    are skipped, and the first convolution, which is averaged down for greyscale input
    (or repeated up) when the file was trained on another channel count, as timm does.
    Any other mismatch is an error. ``state`` is the file's content when the caller has
    already read it.
    """
    entry = info or info_of(model)
    state = state if state is not None else read_state_dict(path)
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        raise ConfigError(f"{path} has weights this model lacks: {', '.join(unexpected[:5])}",
                          "check that the file was saved from the same architecture")
    first_conv = entry.first_conv.weight_key if entry.first_conv else None
    heads = {f"{layer.name}.{part}" for layer in entry.classifiers for part in ("weight", "bias", "prototypes")}
    loadable: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for key, tensor in state.items():
        target = own[key]
        if tensor.shape == target.shape:
            loadable[key] = tensor
        elif tensor.ndim != target.ndim:  # e.g. a 0-d tensor where a layer's weights belong
            raise ConfigError(f"{path}: {key} has {tensor.ndim} dimensions {tuple(tensor.shape)} "
                              f"but the model needs {tuple(target.shape)}",
                              "use weights of the same architecture (or only a different class count)")
        elif key == first_conv and tensor.shape[0] == target.shape[0] and tensor.shape[2:] == target.shape[2:]:
            in_old, in_new = tensor.shape[1], target.shape[1]
            mean = tensor.mean(1, keepdim=True)
            loadable[key] = mean.repeat(1, in_new, 1, 1) * (in_old / in_new) if in_new != 1 else mean * in_old
        elif key in heads and tensor.shape[1:] == target.shape[1:] and target.shape[0] == num_classes:
            skipped.append(key)  # the classifier for another class count: keep the fresh one
        else:
            raise ConfigError(f"{path}: {key} has shape {tuple(tensor.shape)} "
                              f"but the model needs {tuple(target.shape)}",
                              "use weights of the same architecture (or only a different class count)")
    if not loadable:
        raise ConfigError(f"{path} holds no weights for this model's layers",
                          "use weights saved from the same architecture")
    missing = [k for k in own if k not in loadable]
    model.load_state_dict(loadable, strict=False)
    return missing
