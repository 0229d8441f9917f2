"""The index job array as the orchestrator submits it (no cluster): its spec, its environment, its config."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ptwiki_llm.config import SlurmJobConfig, load_config
from ptwiki_llm.config_slice import config_for_stage, config_from_stage
from ptwiki_llm.hpc.job_array import index_task_config, submit_tasks
from ptwiki_llm.hpc.jobscript import JobSpec

REPO = Path(__file__).resolve().parents[2]


class RecordingClient:
    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def submit(self, command):
        self.commands.append(list(command))
        return "4242"


def _parameters(tmp_path):
    config = load_config(REPO / "configs" / "local-slurm.yaml", {"workdir": str(tmp_path / "wd"),
                                                                 "data": {"max_articles": 7}}, environ={})
    return config, {stage: {"config": config_for_stage(config, stage)} for stage in ("ingest", "validate", "index")}


def test_the_index_array_gets_the_corpus_config_and_the_step_gets_the_spec(tmp_path):
    config, parameters = _parameters(tmp_path)
    job = SlurmJobConfig(partition="gpu", gpus=1, mem="32G", array_tasks=3)
    base = JobSpec(step="index", name="ptwiki-index-ab", run_id="ab", job=job, command=(sys.executable, "-m", "x"),
                   workdir=str(tmp_path), script_path=tmp_path / "index.sbatch", log_path=tmp_path / "index.log",
                   env_path=tmp_path / "index.env")
    environment = {"PTWIKI_SOURCE_ROOT": "/app", "WEAVIATE_API_KEY": "k"}
    client = RecordingClient()
    job_id, array, command = submit_tasks(client, base, environment, {**parameters["index"], "max_articles": 5},
                                          tmp_path, ("41",), "ptwiki", parameters)
    assert job_id == "4242" and command == client.commands[0] and "--dependency=afterok:41" in " ".join(command)
    assert environment["PTWIKI_INDEX_TASKS"] == str(tmp_path / "index-tasks.json")
    spec = json.loads((tmp_path / "index-tasks.json").read_text())
    assert spec["step"] == "index" and spec["tasks"] == 3 and spec["max_articles"] == 5
    assert spec["log"] == str(tmp_path / "index-tasks-%a.log") == str(array.log_path)
    task_config = config_from_stage(spec["config"])  # what a task reads: where the corpus is, how to embed it
    assert task_config.data.source == config.data.source and task_config.data.max_articles == 7
    assert task_config.data.validate_ == config.data.validate_ and task_config.rag == config.rag
    script = array.script_path.read_text()
    assert "#SBATCH --array=0-2" in script and "#SBATCH --gres=gpu:1" in script
    assert "WEAVIATE_API_KEY" not in array.env_path.read_text()


def test_an_index_array_without_the_data_steps_in_the_pipeline_is_refused(tmp_path):
    _, parameters = _parameters(tmp_path)
    with pytest.raises(ValueError, match=r"needs the steps \['ingest', 'validate'\]"):
        index_task_config({"index": parameters["index"]})


def test_a_failed_array_is_reported_with_the_log_of_its_failed_task(tmp_path):
    from ptwiki_llm.hpc.job_array import failed_task_log

    pattern = str(tmp_path / "index-tasks-%a.log")
    ends = {0: "exit code 0", 1: "exit code 1", 2: "exit code 0"}
    for task, end in ends.items():
        log = tmp_path / f"index-tasks-{task}.log"
        log.write_text(f"index task {task}\n[ptwiki-slurm] step index-tasks: {end}\n")
    assert failed_task_log(pattern) == str(tmp_path / "index-tasks-1.log")
    (tmp_path / "index-tasks-1.log").write_text("killed before its end\n")
    assert failed_task_log(pattern) == str(tmp_path / "index-tasks-1.log")
    (tmp_path / "index-tasks-1.log").write_text("[ptwiki-slurm] step index-tasks: exit code 0\n")
    assert failed_task_log(pattern) == pattern  # none failed: the pattern, as before
    assert failed_task_log(str(tmp_path / "index.log")) == str(tmp_path / "index.log")
