import numpy as np
import pytest
import torch

import striate
from striate.tracking.store import open_store


def test_lightning_logger_records_a_real_trainer_run(tmp_path):
    lightning = pytest.importorskip("lightning")
    from striate.integrations.lightning import StriateLogger

    class Tiny(lightning.LightningModule):
        def __init__(self, lr: float = 0.1, width: int = 8):
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.ReLU(), torch.nn.Linear(width, 2))

        def training_step(self, batch, _index):
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=gen)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long()), batch_size=8)
    logger = StriateLogger(project="lit", name="tiny", store=tmp_path)
    trainer = lightning.Trainer(max_epochs=3, logger=logger, log_every_n_steps=2, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(Tiny(lr=0.05), data)
    record = open_store(tmp_path).get_run(logger.version)
    assert record.status == "finished" and record.project == "lit" and record.name == "tiny"
    assert record.config == {"lr": 0.05, "width": 8}
    assert record.metrics["train_loss"]["count"] == 12  # 24 steps, every 2nd logged
    found = open_store(tmp_path).search_runs(where="params.lr = 0.05")
    assert found == [logger.version]


def test_tensorboard_export_round_trips(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from striate.integrations.tensorboard import export_run

    run = striate.init(name="tb", config={"lr": 0.1}, store=tmp_path / "s", system_metrics=False)
    for step in range(50):
        run.log({"loss": 1 / (step + 1), "acc": step / 50}, step=step)
    run.finish()
    written = export_run(open_store(tmp_path / "s"), run.id, tmp_path / "tb")
    assert written == {"acc": 50, "loss": 50}
    (folder,) = (tmp_path / "tb").iterdir()
    events = EventAccumulator(str(folder))
    events.Reload()
    loss = events.Scalars("loss")
    assert [e.step for e in loss] == list(range(50))
    np.testing.assert_allclose([e.value for e in loss], 1 / np.arange(1, 51), rtol=1e-6)


def test_tensorboard_export_twice_does_not_duplicate_events(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.conftest import run_cli

    run = striate.init(name="tb2", store=tmp_path / "s", system_metrics=False)
    for step in range(20):
        run.log({"loss": 1 / (step + 1)}, step=step)
    run.finish()
    def export() -> None:
        result = run_cli("export-tensorboard", run.id[:8], str(tmp_path / "tb"), "--store", str(tmp_path / "s"))
        assert result.returncode == 0, result.stderr

    export()
    export()
    (folder,) = (tmp_path / "tb").iterdir()
    (note := folder / "notes.txt").write_text("mine")  # a file of the user's beside the events survives
    export()
    assert note.read_text() == "mine"
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1
    events = EventAccumulator(str(folder))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == list(range(20))  # 20 points, not 40 or 60
