"""What happens around every command: user errors become one line, bugs keep their traceback.

``--debug`` (anywhere on the command line) or ``PTWIKI_DEBUG=1`` shows the traceback of user errors
too. Errors raised inside a ZenML step arrive wrapped; the runner digs the step's own error back out
(``step_failures``), and ZenML's log of it loses its traceback here unless debugging.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, NoReturn

import typer
from typer.core import TyperOption

from ptwiki_llm.errors import find_user_error, one_line

DEBUG_ENV = "PTWIKI_DEBUG"
# ZenML loggers that log a failed step with its traceback (the step's error is re-raised to us anyway).
STEP_FAILURE_LOGGERS = ("zenml.orchestrators.local.local_orchestrator", "zenml.orchestrators.step_launcher",
                        "zenml.orchestrators.step_runner", "ptwiki_llm.hpc.orchestrator")


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def take_debug_flag(argv: list[str]) -> list[str]:
    """``--debug`` may follow the subcommand too; it is taken out and set as the environment switch."""
    if "--debug" in argv:
        os.environ[DEBUG_ENV] = "1"
        argv = [arg for arg in argv if arg != "--debug"]
    return argv


class _DropUserErrorTraceback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and find_user_error(record.exc_info[1]):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_user_error_tracebacks() -> None:
    for name in STEP_FAILURE_LOGGERS:
        logging.getLogger(name).addFilter(_DropUserErrorTraceback())


def report_user_error(exc: BaseException) -> NoReturn:
    """Print the one line (the cause, then what to do) and exit with the error's code."""
    error = find_user_error(exc)
    assert error is not None
    # stderr, no markup: a value such as [base, base+rag] must be printed as it is
    print(f"error: {one_line(str(error))}", file=sys.stderr, flush=True)
    raise SystemExit(error.exit_code)


def _flag_display_type(self: TyperOption, ctx: Any) -> str | None:
    if self.is_flag:
        return None  # a flag takes no value: typer would show "<bool>" beside it
    return _typer_display_type(self, ctx)


_typer_display_type = TyperOption.display_type_rich


def fix_flag_help() -> None:
    TyperOption.display_type_rich = _flag_display_type  # type: ignore[method-assign]


class CliApp(typer.Typer):
    """A Typer app whose errors a user can fix are printed as one line, without a traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not args and "args" not in kwargs:
            kwargs["args"] = take_debug_flag(sys.argv[1:])
        if not debug_enabled():
            quiet_user_error_tracebacks()
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            if find_user_error(exc) is None or debug_enabled():
                raise
            report_user_error(exc)
