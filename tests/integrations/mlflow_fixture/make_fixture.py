"""Produced tests/integrations/mlflow_fixture with MLflow 3.17.2 (not a striate dependency):
    python make_fixture.py sqlite:///$PWD/mlflow.db
    MLFLOW_ALLOW_FILE_STORE=true python make_fixture.py file://$PWD/mlruns
"""
import sys

import mlflow

uri = sys.argv[1]
mlflow.set_tracking_uri(uri)
mlflow.set_experiment("fashion")
for i, lr in enumerate([0.1, 0.01]):
    with mlflow.start_run(run_name=f"mlrun-{i}") as run:
        mlflow.log_params({"lr": lr, "optimizer": "sgd", "batch_size": 128})
        mlflow.set_tags({"team": "vision", "stage": "baseline"})
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1 + i), step=step)
            mlflow.log_metric("acc", 0.5 + 0.1 * step - 0.01 * i, step=step)
with mlflow.start_run(run_name="failed-one") as run:
    mlflow.log_param("lr", 1.0)
    mlflow.log_metric("loss", float("nan"), step=0)
    mlflow.end_run(status="FAILED")
print(mlflow.get_tracking_uri())
