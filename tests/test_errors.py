"""User-fixable errors: found behind wrappers, rebuilt from ZenML's record of a failed step."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from ptwiki_llm.config import load_config
from ptwiki_llm.data.errors import CorruptInputError
from ptwiki_llm.errors import (
    EXIT_BAD_SETUP,
    InputError,
    StepFailedError,
    UserError,
    describe_validation_error,
    find_user_error,
)
from ptwiki_llm.step_failures import exception_class, failure_cause


def test_a_user_error_is_found_behind_the_exceptions_wrapped_around_it():
    try:
        try:
            raise CorruptInputError("/d.xml.bz2", "truncated", "after page 3")
        except CorruptInputError as exc:
            raise RuntimeError("step failed") from exc
    except RuntimeError as wrapped:
        found = find_user_error(wrapped)
    assert isinstance(found, InputError) and str(found) == "/d.xml.bz2 at after page 3: truncated"
    assert find_user_error(KeyError("x")) is None


def test_the_line_is_the_cause_then_what_to_do():
    error = UserError("input /x is empty", "Give another file")
    assert str(error) == "input /x is empty. Give another file" and error.exit_code == 1


def test_validation_errors_keep_key_and_value():
    with pytest.raises(ValidationError) as caught:
        load_config(overrides={"data": {"max_articles": "abc", "nope": 1}}, environ={})
    text = describe_validation_error(caught.value)
    assert "data.max_articles = 'abc': Input should be a valid integer" in text and "unknown key data.nope" in text


def _run(step_status: str, source: str | None, message: str) -> SimpleNamespace:
    info = SimpleNamespace(source=source, message=message) if source else None
    return SimpleNamespace(steps={"ingest": SimpleNamespace(status=step_status, exception_info=info)})


def test_a_failed_step_with_a_user_error_becomes_that_error():
    wrapper = RuntimeError("Pipeline run has failed due to failure in step(s): ingest")
    cause = failure_cause(_run("failed", "ptwiki_llm.data.errors.CorruptInputError", "/d at line 3:\n cut"), wrapper)
    assert isinstance(cause, StepFailedError) and str(cause) == "step ingest: /d at line 3: cut"
    assert cause.exit_code == EXIT_BAD_SETUP and cause.__cause__ is wrapper and cause.report is None


def test_what_the_orchestrator_said_is_kept_beside_the_cause():
    slurm = RuntimeError("step `ingest` failed: SLURM job 12 FAILED, exit code 2; log /j/12.log ends with: ...")
    cause = failure_cause(_run("failed", "ptwiki_llm.data.errors.CorruptInputError", "/d at line 3: cut"), slurm)
    assert cause.report == str(slurm) and str(cause) == "step ingest: /d at line 3: cut"


def test_a_failed_step_with_a_bug_names_the_step_and_the_exception():
    wrapper = RuntimeError("Pipeline run has failed due to failure in step(s): ingest")
    cause = failure_cause(_run("failed", "builtins.KeyError", "'text'"), wrapper)
    assert type(cause) is RuntimeError and find_user_error(cause) is None
    assert str(cause) == "step ingest failed: builtins.KeyError: 'text'"
    assert failure_cause(_run("completed", None, ""), wrapper) is wrapper


def test_only_our_own_exception_classes_are_imported_by_name():
    assert exception_class("ptwiki_llm.data.errors.CorruptInputError") is CorruptInputError
    assert exception_class("builtins.ValueError") is ValueError
    assert exception_class("os.system") is None and exception_class("somepackage.Evil") is None
