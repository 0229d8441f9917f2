"""The cause of a failed pipeline run, read back from ZenML's record of the step that failed.

ZenML's orchestrators replace a step's exception by their own ("Pipeline run has failed due to
failure in step(s): ingest"), and a step on another node (SLURM) fails in another process anyway.
The store keeps each failed step's exception class and message; this turns them back into the
error the user must see: a ``StepFailedError`` for an error the user can fix, else a RuntimeError
that names the step and the original exception (a bug: it keeps its traceback).
"""

from __future__ import annotations

import builtins
import importlib
from typing import Any

from ptwiki_llm.errors import StepFailedError, UserError, one_line

# What ZenML's local orchestrator raises for any failed step: it adds nothing to the step's own error.
_GENERIC = "Pipeline run has failed due to failure in step"
# Only our own exception classes are imported back by name.
_OWN_PACKAGES = ("ptwiki_llm.", "steps.", "pipelines.")


def exception_class(source: str | None) -> type[BaseException] | None:
    """The class at ``module.Class`` if it is one of ours (or a builtin), else None."""
    if not source or "." not in source:
        return None
    module_name, _, name = source.rpartition(".")
    if module_name == "builtins":
        found = getattr(builtins, name, None)
        return found if isinstance(found, type) and issubclass(found, BaseException) else None
    if not source.startswith(_OWN_PACKAGES):
        return None
    try:
        found = getattr(importlib.import_module(module_name), name, None)
    except ImportError:
        return None
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def failure_cause(run: Any, failed: BaseException) -> BaseException:
    """The first failed step's cause in ZenML's store (its __cause__ is ``failed``), else ``failed``."""
    from zenml.enums import ExecutionStatus

    try:
        steps = list(run.steps.items())
    except Exception:  # the store cannot tell us more: keep ZenML's error
        return failed
    for name, step in steps:
        if step.status != ExecutionStatus.FAILED:
            continue
        info = step.exception_info
        if info is None:
            continue
        message = one_line(info.message or "")
        cls = exception_class(info.source)
        cause: BaseException
        if cls is not None and issubclass(cls, UserError):
            said = str(failed)
            report = None if said.startswith(_GENERIC) else said
            cause = StepFailedError(name, message, exit_code=cls.exit_code, report=report)
        else:
            cause = RuntimeError(f"step {name} failed: {info.source or 'exception'}: {message}")
        cause.__cause__ = failed
        return cause
    return failed
