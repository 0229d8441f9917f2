"""A pipeline invocation that fails before ZenML creates its run must not touch another run.

``python tests/hpc/run_identity_driver.py <workdir>``: runs a small ``data_pipeline`` first (the "previous
run", maybe another user's on a shared server), then ``ptwiki_llm.runner.run_pipeline`` with the
local-slurm preset while ZenML's placeholder-run creation fails (as when the server goes away). Prints
``RESULT {json}``: the error, the previous run's status and MLflow runs, and what reached SLURM.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def main(workdir: str) -> None:
    from ptwiki_llm.config import load_config
    from ptwiki_llm.zenml_env import prepare_zenml

    config = load_config(REPO / "configs" / "local-slurm.yaml", {"workdir": workdir, "data": {"max_articles": 5}})
    prepare_zenml(config)
    from mlflow.tracking import MlflowClient
    from zenml.client import Client
    from zenml.pipelines import pipeline_definition

    from ptwiki_llm import tracking
    from ptwiki_llm.runner import run_pipeline
    from tests.hpc.slurm_pipelines import other_data_pipeline

    before = other_data_pipeline()

    def refuse(**kwargs):
        raise RuntimeError("simulated: the ZenML server went away before the run existed")

    pipeline_definition.create_placeholder_run = refuse
    error = None
    try:
        run_pipeline(config, "data")
    except RuntimeError as exc:
        error = str(exc)
    after = Client().get_pipeline_run(before.id)
    experiment = MlflowClient(tracking_uri=config.mlflow_tracking_uri).get_experiment_by_name(config.mlflow.experiment)
    marked = [] if experiment is None else [
        r.info.status for r in MlflowClient(tracking_uri=config.mlflow_tracking_uri).search_runs(
            [experiment.experiment_id], filter_string=f"tags.`{tracking.PIPELINE_RUN_TAG}` = '{before.id}'")]
    jobs_dir = config.expand(config.hpc.jobs_dir)
    result = {
        "error": error,
        "previous_status_before": str(before.status),
        "previous_status_after": str(after.status),
        "mlflow_runs_of_previous": marked,
        "job_scripts": sorted(str(p) for p in jobs_dir.rglob("*.sbatch")) if jobs_dir.exists() else [],
        "runs": [r.name for r in Client().list_pipeline_runs(pipeline_name="data_pipeline").items],
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
