"""LeNet-5 on a slice of the real Fashion-MNIST (Debian's dataset-fashion-mnist; skipped when absent)."""

import pytest

from striate.config import TrainConfig
from striate.data.loader import Split, load_dataset
from striate.tracking.run import init
from striate.tracking.store import open_store
from striate.train.engine import train
from tests.conftest import REAL_FASHION_MNIST

pytestmark = pytest.mark.skipif(not REAL_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist not installed")


def test_lenet5_learns_real_fashion_mnist(tmp_path):
    full = load_dataset("fashion-mnist", allow_download=False)
    assert len(full.train) == 60_000 and len(full.test) == 10_000
    assert full.image_shape == (1, 28, 28) and full.classes[0] == "T-shirt/top"
    full.train = Split(full.train.images[:12_000], full.train.labels[:12_000])
    full.test = Split(full.test.images[:2_000], full.test.labels[:2_000])
    config = TrainConfig(epochs=2, seed=0)
    store = open_store(tmp_path)
    run = init(config=config.to_dict(), store=store)
    result = train(config, run=run, dataset=full)
    run.finish(result.status)
    assert result.test_acc1 is not None and result.test_acc1 > 0.75
    record = store.get_run(run.id)
    assert record.dataset["name"] == "fashion-mnist" and record.dataset["train_size"] == 12_000
