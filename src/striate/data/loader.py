"""Datasets held in memory as uint8 tensors and served as batches on the training device.

Normalization and augmentation (random crop with padding, horizontal flip) are
batched tensor operations: the hot loop runs no per-sample Python.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from striate.data.catalog import DATASETS, ROLES, DatasetSpec
from striate.data.fetch import check_file_once, find_file, locate
from striate.data.folder import folder_classes, folder_name
from striate.data.idx import parse_idx, read_bytes
from striate.errors import DataError


@dataclass
class Split:
    """Images (N x C x H x W, uint8) and labels (N, int64) of one split."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class ImageDataset:
    """A train/test pair in memory, with the identity needed to reproduce a run."""

    name: str
    train: Split
    test: Split
    classes: tuple[str, ...]
    source: str
    file_sha256: dict[str, str] = field(default_factory=dict)
    _stats: tuple[tuple[int, tuple[int, ...]], tuple[float, float]] | None = field(default=None, repr=False)

    @property
    def fingerprint(self) -> str:
        """SHA-256 over the content hashes of the four files: the dataset's identity."""
        digest = hashlib.sha256()
        for role in ROLES:
            digest.update(f"{role}:{self.file_sha256[role]}\n".encode())
        return digest.hexdigest()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Channels, height, width of one image."""
        c, h, w = self.train.images.shape[1:]
        return int(c), int(h), int(w)

    def pixel_stats(self) -> tuple[float, float]:
        """Mean and standard deviation of the training pixels, scaled to [0, 1] (exact, from a histogram)."""
        key = (id(self.train.images), tuple(self.train.images.shape))
        if self._stats is not None and self._stats[0] == key:
            return self._stats[1]
        counts = np.bincount(self.train.images.numpy().ravel(), minlength=256).astype(np.float64)
        values = np.arange(256, dtype=np.float64) / 255.0
        total = counts.sum()
        mean = float((counts * values).sum() / total)
        var = float((counts * (values - mean) ** 2).sum() / total)
        self._stats = (key, (mean, max(var, 1e-12) ** 0.5))
        return self._stats[1]

    def identity(self) -> dict[str, object]:
        """What a run records about its data."""
        return {"name": self.name, "fingerprint": self.fingerprint, "source": self.source,
                "files": dict(self.file_sha256), "train_size": len(self.train), "test_size": len(self.test),
                "image_shape": list(self.image_shape), "classes": list(self.classes)}


def _read_folder(folder: Path, spec: DatasetSpec | None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    arrays: dict[str, np.ndarray] = {}
    hashes: dict[str, str] = {}
    for role in ROLES:
        path = find_file(folder, role)
        if path is None:
            raise DataError(f"{folder} has no {role.replace('_', ' ')} file",
                            "a dataset folder needs train-images, train-labels, t10k-images and t10k-labels IDX files")
        content = read_bytes(path)
        if spec is not None:
            hashes[role] = check_file_once(path, spec.files[role], content)
        else:
            hashes[role] = hashlib.sha256(content).hexdigest()
        arrays[role] = parse_idx(content, str(path))
    return arrays, hashes


def _split(images: np.ndarray, labels: np.ndarray, what: str) -> Split:
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise DataError(f"{what} images must be uint8 N x H x W (or N x H x W x C), got {images.dtype} {images.shape}",
                        "use IDX image files of unsigned bytes")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(f"{what} has {images.shape[0]} images but {labels.shape} labels",
                        "the image and label files do not belong together")
    if images.shape[0] == 0:
        raise DataError(f"{what} has no images", "use IDX files that hold at least one image per split")
    if 0 in images.shape[1:]:  # N x 0 x 28 parses, then trains to a NaN loss: an empty image is a data error
        raise DataError(f"{what} has empty images (each is {' x '.join(map(str, images.shape[1:]))} pixels)",
                        "use IDX image files whose images have at least one pixel")
    if labels.dtype.kind not in "iu" or int(labels.min()) < 0:
        raise DataError(f"{what}'s labels must be non-negative integers, got {labels.dtype} values from "
                        f"{labels.min()} to {labels.max()}", "use an IDX label file of class indices 0, 1, 2, ...")
    tensor = torch.from_numpy(images.copy())
    tensor = tensor.unsqueeze(1) if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2).contiguous()
    return Split(tensor, torch.from_numpy(labels.astype(np.int64)))


def load_dataset(data: str, allow_download: bool = True) -> ImageDataset:
    """Load a named dataset (``fashion-mnist``, ``mnist``) or a folder holding four IDX files."""
    spec = DATASETS.get(data)
    if spec is not None:
        folder = locate(spec, allow_download=allow_download)
    else:
        folder = Path(data).expanduser()
        if not folder.is_dir():
            raise DataError(f"unknown dataset {data!r}",
                            f"use one of {', '.join(sorted(DATASETS))} or a folder holding the four IDX files")
    arrays, hashes = _read_folder(folder, spec)
    train = _split(arrays["train_images"], arrays["train_labels"], "the training set")
    test = _split(arrays["test_images"], arrays["test_labels"], "the test set")
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(f"train images are {tuple(train.images.shape[1:])} "
                        f"but test images {tuple(test.images.shape[1:])}",
                        "both splits must have the same image size")
    n_classes = int(max(train.labels.max(), test.labels.max())) + 1
    if n_classes > len(train):
        raise DataError(f"labels go up to {n_classes - 1}: more classes than the {len(train)} training images",
                        "check the label files: they should hold class indices 0, 1, 2, ...")
    classes = spec.classes if spec is not None else folder_classes(folder, n_classes)
    if n_classes > len(classes):
        raise DataError(f"labels go up to {n_classes - 1} but {data} has {len(classes)} classes",
                        "check the label files")
    return ImageDataset(spec.name if spec else folder_name(folder), train, test, classes, str(folder), hashes)


def pad_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """Centre uint8 images in a ``size`` x ``size`` field of zeros (LeNet's 28 -> 32 padding)."""
    h, w = images.shape[-2:]
    if h >= size and w >= size:
        return images
    top, left = (size - h) // 2, (size - w) // 2
    return F.pad(images, (left, size - w - left, top, size - h - top))


class DeviceBatches:
    """Shuffled, augmented, normalized batches of one split, produced on ``device``.

    Batch order and augmentation for epoch ``e`` depend only on ``(seed, e)``, so a run
    can be replayed, or resumed at any epoch, exactly.
    """

    def __init__(self, split: Split, *, batch_size: int, device: torch.device, mean: float, std: float,
                 shuffle: bool = False, crop_padding: int = 0, flip: bool = False, seed: int = 0,
                 channels_last: bool = False, drop_last: bool = False, resize_to: int = 0) -> None:
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.batch_size = batch_size
        self.device = device
        self.shuffle = shuffle
        self.crop_padding = crop_padding
        self.flip = flip
        self.seed = seed
        self.channels_last = channels_last
        self.drop_last = drop_last
        self.resize_to = resize_to
        # Folding the /255 into the affine map saves one pass over every batch.
        self.scale = 1.0 / (255.0 * std)
        self.shift = -mean / std

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of ``epoch`` as (float images, labels), from batch ``start_batch`` on (for resuming)."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(self.seed * 1_000_003 + epoch)
        n = len(self.labels)
        order = torch.randperm(n, generator=gen, device=self.device) if self.shuffle else None
        augment = bool(self.crop_padding or self.flip)
        for i in range(start_batch, len(self)):
            if order is None:
                x = self.images[i * self.batch_size:(i + 1) * self.batch_size]
                y = self.labels[i * self.batch_size:(i + 1) * self.batch_size]
            else:
                idx = order[i * self.batch_size:(i + 1) * self.batch_size]
                x, y = self.images[idx], self.labels[idx]
            if augment:
                # Each batch draws from its own stream, so batch i is the same whether or not 0..i-1 ran.
                batch_gen = torch.Generator(device=self.device)
                batch_gen.manual_seed(((self.seed * 1_000_003 + epoch) * 1_000_033 + i) % (2**63 - 1))
                if self.crop_padding:
                    x = random_crop(x, self.crop_padding, batch_gen)
                if self.flip:
                    x = random_flip(x, batch_gen)
            x = x.float().mul_(self.scale).add_(self.shift)
            if self.resize_to and tuple(x.shape[-2:]) != (self.resize_to, self.resize_to):
                x = F.interpolate(x, size=(self.resize_to, self.resize_to), mode="bilinear", align_corners=False)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y


def random_crop(x: torch.Tensor, padding: int, gen: torch.Generator) -> torch.Tensor:
    """Pad a batch by ``padding`` and cut each image back at its own random offset."""
    b, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=gen, device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=gen, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    mask = torch.rand(x.shape[0], generator=gen, device=x.device) < 0.5
    return torch.where(mask[:, None, None, None], x.flip(3), x)
