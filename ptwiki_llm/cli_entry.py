"""What happens around every command: user errors become one line, bugs keep their traceback.

``--debug`` (anywhere on the command line) or ``PTWIKI_DEBUG=1`` shows the traceback of user errors
too. Errors raised inside a ZenML step arrive wrapped; the runner digs the step's own error back out
(``step_failures``), and ZenML's log of it loses its traceback here unless debugging.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click
from typer.core import TyperGroup, TyperOption

from ptwiki_llm.errors import find_user_error, one_line

DEBUG_ENV = "PTWIKI_DEBUG"
# ZenML loggers that log a failed step with its traceback (the step's error is re-raised to us anyway).
STEP_FAILURE_LOGGERS = ("zenml.orchestrators.local.local_orchestrator", "zenml.orchestrators.step_launcher",
                        "zenml.orchestrators.step_runner", "ptwiki_llm.hpc.orchestrator")


_debug_flag = False


def debug_enabled() -> bool:
    return _debug_flag or os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def take_debug_flag(argv: list[str]) -> list[str]:
    """``--debug`` may follow the subcommand too: it is taken out of the arguments before they are parsed."""
    global _debug_flag
    _debug_flag = "--debug" in argv
    return [arg for arg in argv if arg != "--debug"]


class _DropUserErrorTraceback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and find_user_error(record.exc_info[1]):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_user_error_tracebacks() -> None:
    for name in STEP_FAILURE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropUserErrorTraceback) for f in logger.filters):
            logger.addFilter(_DropUserErrorTraceback())


def _flag_display_type(self: TyperOption, ctx: Any) -> str | None:
    if self.is_flag:
        return None  # a flag takes no value: typer would show "<bool>" beside it
    return _typer_display_type(self, ctx)


_typer_display_type = TyperOption.display_type_rich


def fix_flag_help() -> None:
    TyperOption.display_type_rich = _flag_display_type  # type: ignore[method-assign]


class CliGroup(TyperGroup):
    """The command group: errors a user can fix end the command with one line and their exit code.

    Handled here, where the command runs, so the installed script, ``python -m`` and typer's CliRunner
    all behave the same.
    """

    def main(self, args: Any = None, *rest: Any, **kwargs: Any) -> Any:
        args = take_debug_flag(list(args) if args is not None else sys.argv[1:])
        return super().main(args, *rest, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        if not debug_enabled():
            quiet_user_error_tracebacks()
        try:
            return super().invoke(ctx)
        except Exception as exc:
            error = find_user_error(exc)
            if error is None or debug_enabled():
                raise
            report = getattr(error, "report", None)
            if report:  # the orchestrator's account (job, state, log tail) above the cause
                click.echo(report)
            # stderr, no markup: a value such as [base, base+rag] must be printed as it is
            click.echo(f"error: {one_line(str(error))}", err=True)
            ctx.exit(error.exit_code)
