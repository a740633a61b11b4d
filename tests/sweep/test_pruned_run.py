"""A real (tiny) training run fed to an Optuna pruner through the engine's per-epoch events."""

from __future__ import annotations

import optuna
import pytest

from striate import safe_yaml
from striate.config import TrainConfig
from striate.sweep.search import PruneOnObjective, create_study, report, suggest
from striate.sweep.spec import parse_spec
from striate.tracking.store import open_store
from striate.train.session import new_session

optuna.logging.set_verbosity(optuna.logging.WARNING)


def study_with_finished_trials(spec, epoch_value: float) -> optuna.Study:
    """A study in which four trials already finished, each reporting ``epoch_value`` at every epoch."""
    study = create_study(spec)
    for _ in range(4):
        trial = study.ask()
        for epoch in range(1, 4):  # as PruneOnObjective does: ASHA records a trial's rungs as it asks
            report(trial, epoch, epoch_value)
        study.tell(trial, epoch_value)
    return study


@pytest.mark.parametrize(("others", "pruned"), [(0.99, True), (0.0, False)])
def test_a_trailing_trial_is_stopped_after_its_first_epoch(synthetic_data, tmp_path, others, pruned):
    spec = parse_spec(safe_yaml.loads(f"""
base: {{data: {synthetic_data}, epochs: 3, batch_size: 64, eval_batch_size: 80, log_every: 5, checkpoint: false}}
parameters: {{lr: {{choice: [0.02]}}}}
objective: {{metric: test/acc1, goal: max}}
early_stopping: {{asha: {{min_epochs: 1, reduction_factor: 2}}}}
budget: {{trials: 5}}
"""), source="spec")
    study = study_with_finished_trials(spec, others)  # the others reached 0.99 (or 0.0) by epoch 1
    trial = study.ask()
    config = TrainConfig.from_mapping(suggest(spec, trial))
    pruner = PruneOnObjective(spec, trial)
    store = tmp_path / "store"
    session = new_session(config, str(store))
    result = session.run(callbacks=[pruner])

    record = open_store(str(store)).get_run(session.run_id)
    if pruned:
        assert result.status == "stopped" and result.epochs_completed == 1
        assert pruner.pruned_at == 1
        assert result.stop_reason.startswith("pruned by asha after epoch 1: test/acc1=")
        assert record.status == "stopped"
        assert record.summary["stop_reason"] == result.stop_reason
    else:
        assert result.status == "finished" and result.epochs_completed == 3
        assert pruner.pruned_at is None
        assert record.status == "finished"
    assert list(pruner.values) == list(range(1, result.epochs_completed + 1))
    assert pruner.values[result.epochs_completed] == pytest.approx(result.test_acc1)
    # the values reached the trial: Optuna holds them as the trial's intermediate values
    assert study.trials[-1].intermediate_values == pruner.values
