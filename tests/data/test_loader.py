import numpy as np
import pytest
import torch

from striate.data.loader import DeviceBatches, load_dataset, pad_to, random_crop, random_flip
from striate.errors import DataError
from tests.conftest import make_images, write_dataset


@pytest.mark.parametrize("compress", [True, False])
def test_load_folder_dataset(tmp_path, compress):
    folder = write_dataset(tmp_path / "d", n_train=50, n_test=20, compress=compress)
    ds = load_dataset(str(folder))
    assert ds.train.images.shape == (50, 1, 28, 28) and ds.train.images.dtype == torch.uint8
    assert ds.test.labels.shape == (20,) and ds.test.labels.dtype == torch.int64
    _, train_labels = make_images(50, seed=0)
    _, test_labels = make_images(20, seed=1)
    highest = int(max(train_labels.max(), test_labels.max()))
    assert ds.classes == tuple(str(i) for i in range(highest + 1))  # a folder's classes: 0 .. highest label
    assert len(ds.fingerprint) == 64
    assert ds.identity()["files"]["train_images"] == ds.file_sha256["train_images"]


def test_fingerprint_changes_with_content(tmp_path):
    a = load_dataset(str(write_dataset(tmp_path / "a", seed=1)))
    b = load_dataset(str(write_dataset(tmp_path / "b", seed=2)))
    a2 = load_dataset(str(write_dataset(tmp_path / "a2", seed=1, compress=False)))
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == a2.fingerprint, "the fingerprint hashes content, not compression"


def test_missing_file_and_unknown_name(tmp_path):
    folder = write_dataset(tmp_path / "d")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="test labels"):
        load_dataset(str(folder))
    with pytest.raises(DataError, match="unknown dataset 'fashion'"):
        load_dataset("fashion")


def test_mismatched_labels_rejected(tmp_path):
    from striate.data.idx import write_idx

    folder = write_dataset(tmp_path / "d", n_train=50)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(49, dtype=np.uint8))
    with pytest.raises(DataError, match="do not belong together"):
        load_dataset(str(folder))


def test_pixel_stats_match_direct_computation(synthetic_data):
    ds = load_dataset(str(synthetic_data))
    mean, std = ds.pixel_stats()
    pixels = ds.train.images.double() / 255
    assert mean == pytest.approx(float(pixels.mean()), abs=1e-9)
    assert std == pytest.approx(float(pixels.std(unbiased=False)), abs=1e-9)


def test_pad_to_centres_images():
    x = torch.full((2, 1, 28, 28), 7, dtype=torch.uint8)
    y = pad_to(x, 32)
    assert y.shape == (2, 1, 32, 32)
    assert int(y[:, :, 2:30, 2:30].min()) == 7 and int(y.sum()) == int(x.sum())
    assert pad_to(x, 28) is x


def test_batches_cover_the_split_once_per_epoch_and_are_seeded(synthetic_data):
    ds = load_dataset(str(synthetic_data))
    mean, std = ds.pixel_stats()
    make = lambda seed: DeviceBatches(ds.train, batch_size=64, device=torch.device("cpu"), mean=mean, std=std,
                                      shuffle=True, seed=seed)
    batches = make(0)
    labels = torch.cat([y for _, y in batches.epoch(1)])
    assert sorted(labels.tolist()) == sorted(ds.train.labels.tolist())
    assert len(batches) == 5
    first = [y for _, y in make(0).epoch(1)]
    again = [y for _, y in make(0).epoch(1)]
    other_epoch = [y for _, y in make(0).epoch(2)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other_epoch))
    x, _ = next(iter(make(0).epoch(1)))
    full = torch.cat([x for x, _ in make(0).epoch(1)])
    assert full.dtype == torch.float32
    assert abs(float(full.mean())) < 0.05 and abs(float(full.std()) - 1) < 0.05


def test_random_crop_shifts_whole_images():
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros((64, 1, 8, 8), dtype=torch.uint8)
    x[:, :, 3:5, 3:5] = 255
    out = random_crop(x, 2, gen)
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert (out.flatten(1).sum(1) == 4 * 255).all(), "a 2-pixel shift keeps the centred square inside"
    positions = {tuple(torch.nonzero(o[0])[0].tolist()) for o in out}
    assert len(positions) > 5, "offsets differ per image"


def test_random_flip_mirrors_about_half():
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros((200, 1, 4, 4), dtype=torch.uint8)
    x[:, :, :, 0] = 1
    out = random_flip(x, gen)
    flipped = int((out[:, 0, 0, 3] == 1).sum())
    assert 60 < flipped < 140
    assert torch.equal(out[:, :, :, 0] + out[:, :, :, 3], torch.ones((200, 1, 4), dtype=torch.uint8))


def write_raw_idx(path, array: np.ndarray, code: int) -> None:
    """An IDX file of any element type (write_idx writes uint8 only)."""
    import gzip
    import struct

    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(array.dtype.newbyteorder(">")).tobytes()))


@pytest.mark.parametrize("labels,code,message", [
    (np.full(320, -1, dtype=np.int8), 0x09, "non-negative integers"),
    (np.full(320, 2.7, dtype=np.float32), 0x0D, "non-negative integers"),
    (np.full(320, 1_000_000, dtype=np.int32), 0x0C, "more classes than"),
])
def test_label_files_that_are_not_class_indices_are_rejected(tmp_path, labels, code, message):
    folder = write_dataset(tmp_path / "d")
    write_raw_idx(folder / "train-labels-idx1-ubyte.gz", labels, code)
    with pytest.raises(DataError, match=message):
        load_dataset(str(folder))


def test_an_empty_split_is_rejected(tmp_path):
    from striate.data.idx import write_idx

    folder = write_dataset(tmp_path / "d")
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((0, 28, 28), dtype=np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(0, dtype=np.uint8))
    with pytest.raises(DataError, match="the test set has no images"):
        load_dataset(str(folder))
