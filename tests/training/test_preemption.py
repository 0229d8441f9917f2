"""SIGUSR1 mid-run -> checkpoint + exit 75; the rerun resumes and ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ptwiki_llm.training.metrics import METRICS_FILE, read_log
from ptwiki_llm.training.preemption import PREEMPTED_EXIT_CODE, checkpoints
from ptwiki_llm.training.trainer import run_dir_for
from tests.training.conftest import REPO, examples, tiny_config, write_formatted

STEPS = 12


def _start(config, formatted, tmp: Path) -> subprocess.Popen:
    (tmp / "config.json").write_text(json.dumps(config.to_dict()))
    (tmp / "formatted.json").write_text(formatted.model_dump_json())
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-m", "ptwiki_llm.training", "--config-json", str(tmp / "config.json"),
         "--formatted-json", str(tmp / "formatted.json"), "--no-progress"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _wait_for_step(log: Path, step: int, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(e["step"] >= step for e in read_log(log) if "train.loss" in e):
            return
        if process.poll() is not None:
            raise AssertionError("training ended before it could be signalled:\n" + process.stdout.read()[-3000:])
        time.sleep(0.05)
    raise AssertionError(f"step {step} not reached in {timeout} s")


def _losses(log: Path) -> list[tuple[int, float]]:
    return [(e["step"], e["train.loss"]) for e in read_log(log) if "train.loss" in e]


@pytest.fixture(scope="module")
def preempted_and_resumed(model_store, tmp_path_factory):
    """A run signalled after step 3 (exit 75), then rerun to the end."""
    tmp = tmp_path_factory.mktemp("preempt")
    texts = examples()
    formatted = write_formatted(tmp / "formatted", texts[:-4], texts[-4:])
    # save_steps beyond the run: the only checkpoint before the end is the one the signal asks for
    config = tiny_config(tmp / "wd", model_store, max_steps=STEPS, save_steps=1000, logging_steps=1)
    run_dir = run_dir_for(config, formatted)
    log = run_dir / METRICS_FILE

    first = _start(config, formatted, tmp)
    _wait_for_step(log, 3, first)
    first.send_signal(signal.SIGUSR1)
    first_output = first.communicate(timeout=240)[0]
    after_first = {
        "returncode": first.returncode,
        "output": first_output,
        "checkpoints": [step for step, _ in checkpoints(run_dir / "checkpoints")],
        "last_logged": max(step for step, _ in _losses(log)),
        "result": json.loads((run_dir / "result.json").read_text()),
    }
    second = _start(config, formatted, tmp)
    second_output = second.communicate(timeout=300)[0]
    return {"tmp": tmp, "formatted": formatted, "run_dir": run_dir, "first": after_first,
            "second": {"returncode": second.returncode, "output": second_output}}


def test_signal_saves_a_checkpoint_and_exits_75(preempted_and_resumed):
    first = preempted_and_resumed["first"]
    assert first["returncode"] == PREEMPTED_EXIT_CODE, first["output"][-3000:]
    assert len(first["checkpoints"]) == 1 and 3 <= first["checkpoints"][0] < STEPS
    assert first["last_logged"] == first["checkpoints"][0]  # stopped at the step boundary it saved
    assert first["result"]["status"] == "preempted"
    assert first["result"]["checkpoint"].endswith(f"checkpoint-{first['checkpoints'][0]}")


def test_rerun_resumes_and_the_loss_log_continues(preempted_and_resumed):
    second, run_dir = preempted_and_resumed["second"], preempted_and_resumed["run_dir"]
    stopped_at = preempted_and_resumed["first"]["checkpoints"][0]
    assert second["returncode"] == 0, second["output"][-3000:]
    steps = [step for step, _ in _losses(run_dir / METRICS_FILE)]
    assert steps == list(range(1, STEPS + 1))  # strictly increasing and complete: no restart from step 1
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "completed" and result["metrics"]["global_step"] == STEPS
    assert result["metrics"]["resumed_from_step"] == stopped_at
    state = json.loads((run_dir / "checkpoints" / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    assert state["global_step"] == STEPS
    assert [e["step"] for e in state["log_history"] if "loss" in e] == list(range(1, STEPS + 1))


# a third training process: ~25 s on 2 cores
def test_resumed_losses_equal_an_uninterrupted_run(preempted_and_resumed, model_store):
    """Optimizer, scheduler, data position and RNG all come back: the curves are the same run."""
    tmp, formatted = preempted_and_resumed["tmp"], preempted_and_resumed["formatted"]
    resumed = _losses(preempted_and_resumed["run_dir"] / METRICS_FILE)
    straight = tiny_config(tmp / "wd2", model_store, max_steps=STEPS, save_steps=1000, logging_steps=1)
    third = _start(straight, formatted, tmp)
    output = third.communicate(timeout=300)[0]
    assert third.returncode == 0, output[-3000:]
    reference = _losses(run_dir_for(straight, formatted) / METRICS_FILE)
    assert [s for s, _ in reference] == [s for s, _ in resumed]
    for (step, loss), (_, expected) in zip(resumed, reference, strict=True):
        assert abs(loss - expected) < 1e-4 * max(1.0, abs(expected)), (step, loss, expected)
