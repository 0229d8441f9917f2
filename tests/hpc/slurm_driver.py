"""Run ``tests.hpc.slurm_pipelines.requeue_pipeline`` through SLURM with the local-slurm preset.

``python tests/hpc/slurm_driver.py <workdir>``: prints ``RESULT {json}`` on success. The count step
gets a 2-minute limit, SIGUSR1 90 s before it and one requeue.
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

    config = load_config(REPO / "configs" / "local-slurm.yaml", {
        "workdir": workdir,
        "hpc": {"poll_seconds": 1, "steps": {"count": {
            "time": "2", "requeue": True, "signal_seconds": 90, "max_requeues": 1, "mem": "1G"}}},
    })
    prepare_zenml(config)  # before zenml is imported
    from zenml.client import Client

    from ptwiki_llm.hpc.stack import run_options
    from tests.hpc.slurm_pipelines import requeue_pipeline

    state_dir = Path(workdir) / "count-state"
    state_dir.mkdir(parents=True, exist_ok=True)
    arguments = {"state_dir": str(state_dir)}
    run = requeue_pipeline.with_options(**run_options(config, requeue_pipeline, arguments))(**arguments)
    run = Client().get_pipeline_run(run.id)
    attempts = Client().list_run_steps(pipeline_run_id=run.id, name="count", sort_by="asc:created")
    result = {
        "run_id": str(run.id),
        "status": str(run.status),
        "checked": run.steps["check"].outputs["checked"][0].load(),
        "count_attempts": [str(attempt.status) for attempt in attempts.items],
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
