"""Checkpoint discovery, the signal watcher and the metrics log, without a model."""

from __future__ import annotations

import json
import os
import signal

import pytest

from ptwiki_llm.training.metrics import _metric_key, read_log, truncate_log
from ptwiki_llm.training.preemption import (
    CANCELLED_EXIT_CODE,
    PREEMPTED_EXIT_CODE,
    STOP_FILE,
    PreemptionWatcher,
    TrainingCancelled,
    TrainingPreempted,
    checkpoints,
    latest_checkpoint,
)


def test_latest_checkpoint_skips_incomplete_saves(tmp_path):
    for step, complete in ((5, True), (10, True), (15, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-x").mkdir()
    assert [step for step, _ in checkpoints(tmp_path)] == [5, 10]
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-10"
    assert latest_checkpoint(tmp_path / "missing") is None


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGTERM])
def test_watcher_turns_a_signal_into_a_request_and_restores_handlers(tmp_path, sig):
    before = signal.getsignal(sig)
    with PreemptionWatcher(tmp_path) as watcher:
        assert not watcher.requested
        os.kill(os.getpid(), sig)
        assert watcher.requested and watcher.signal_name == signal.Signals(sig).name
    assert signal.getsignal(sig) == before


def test_stop_file_requests_a_stop_and_a_stale_one_is_cleared(tmp_path):
    (tmp_path / STOP_FILE).touch()
    with PreemptionWatcher(tmp_path) as watcher:
        assert not watcher.requested  # left over from the run being resumed
        (tmp_path / STOP_FILE).touch()
        assert watcher.requested


def test_preempted_exits_with_the_documented_code():
    exc = TrainingPreempted("/run/checkpoint-3", 3, "SIGUSR1")
    assert isinstance(exc, SystemExit) and exc.code == PREEMPTED_EXIT_CODE == 75
    assert "step 3" in str(exc) and "resume" in str(exc)


def test_only_the_warning_asks_for_a_requeue_and_sigterm_means_cancelled(tmp_path):
    with PreemptionWatcher(tmp_path) as watcher:
        os.kill(os.getpid(), signal.SIGUSR1)
        warned = watcher.stop("/run/checkpoint-3", 3)
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGUSR1)  # a warning after the cancel does not undo it
        cancelled = watcher.stop("/run/checkpoint-4", 4)
    assert type(warned) is TrainingPreempted and warned.code == PREEMPTED_EXIT_CODE == 75
    assert isinstance(cancelled, TrainingCancelled) and cancelled.code == CANCELLED_EXIT_CODE == 143
    assert cancelled.signal_name == "SIGTERM" and "not requeued" in str(cancelled)


@pytest.mark.parametrize(("text", "cancelled"), [("", False), ("SIGUSR1", False), ("SIGTERM", True)])
def test_a_forwarded_stop_names_its_signal(tmp_path, text, cancelled):
    with PreemptionWatcher(tmp_path) as watcher:
        (tmp_path / STOP_FILE).write_text(text)
        assert watcher.requested and watcher.cancelled is cancelled
        assert isinstance(watcher.stop(None, 0), TrainingCancelled) is cancelled


def test_truncate_log_keeps_entries_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "train.loss": 1.0 / s}) + "\n" for s in (1, 2, 3, 4)))
    kept = truncate_log(path, 2)
    assert [e["step"] for e in kept] == [1, 2] == [e["step"] for e in read_log(path)]


def test_metric_names():
    assert _metric_key("loss") == "train.loss"
    assert _metric_key("eval_loss") == "eval.loss"
    assert _metric_key("train_loss") == "train.summary.loss"
    assert _metric_key("train_runtime") == "train.runtime_s"
    assert _metric_key("mean_token_accuracy") == "train.mean_token_accuracy"
