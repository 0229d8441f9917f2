"""Errors a user can fix, and how to find one behind the exceptions other code wraps around it.

A ``UserError`` names what is wrong (the file, key or value) and says what to do; the CLI prints it
as one line and exits with ``exit_code``, without a traceback. Anything else is a bug and keeps its
traceback. Library errors that are the user's to fix (bad input, missing asset, service down, ...)
subclass ``UserError`` next to the code that raises them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

EXIT_FAILED = 1  # a run or command that started and could not finish
EXIT_BAD_SETUP = 2  # refused before anything ran: config, input, assets (also click's usage errors)
EXIT_BUSY = 3  # the workdir is in use by another run


class UserError(Exception):
    """Something the user can fix. ``str()`` is the whole line: the cause, then what to do."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message + (f". {hint}" if hint else ""))


class ConfigError(UserError):
    """A preset that cannot be read, or a key/value the config refuses."""

    exit_code = EXIT_BAD_SETUP


class InputError(UserError):
    """The corpus input is missing, empty, corrupt or of an unknown format."""

    exit_code = EXIT_BAD_SETUP


class AssetMissingError(UserError):
    """A named model or data file is not staged, and may not (or cannot) be downloaded."""

    exit_code = EXIT_BAD_SETUP


class ServiceUnavailableError(UserError):
    """A server the run needs (MLflow, ZenML, Weaviate, SLURM) cannot be reached or refuses us."""


class PrerequisiteMissingError(UserError):
    """A command needs something an earlier command makes (an index, a registered adapter)."""


class WorkdirBusyError(UserError):
    exit_code = EXIT_BUSY


class StepFailedError(UserError):
    """A pipeline step stopped on a user-fixable error; the message is that error's.

    ``report``: what the orchestrator said about the failure (a SLURM job's id, state and log tail),
    shown above the one line; None when it said nothing more than "a step failed".
    """

    def __init__(self, step: str, message: str, exit_code: int = EXIT_FAILED, report: str | None = None) -> None:
        self.step = step
        self.exit_code = exit_code
        self.report = report
        super().__init__(f"step {step}: {message}")


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it was raised from (``__cause__``, else ``__context__``), to the root."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def find_user_error(exc: BaseException) -> UserError | None:
    """The first user-fixable error in ``exc``'s chain, or None when it is a bug."""
    return next((e for e in causes(exc) if isinstance(e, UserError)), None)


def one_line(text: str) -> str:
    """Messages go on one terminal line: newlines and runs of spaces collapse."""
    return " ".join(str(text).split())


def describe_validation_error(exc: Any) -> str:
    """A pydantic ValidationError as ``key = value: problem`` items (the value is pydantic's input)."""
    items = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error.get("loc", ())) or "(config)"
        problem = error.get("msg", "invalid")
        if error.get("type") == "extra_forbidden":
            items.append(f"unknown key {key}")
            continue
        value = error.get("input")
        shown = f" = {value!r}" if value is not None and not isinstance(value, dict) else ""
        items.append(f"{key}{shown}: {problem}")
    return "; ".join(items)
