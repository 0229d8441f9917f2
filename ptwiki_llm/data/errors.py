"""Errors for bad input: each names the file and, where known, the position."""

from __future__ import annotations

from ptwiki_llm.errors import InputError


class IngestError(InputError):
    """Input that cannot be read at all (the run stops; nothing partial is published)."""

    def __init__(self, path: object, message: str, position: str | None = None) -> None:
        self.path = str(path)
        self.position = position
        where = f"{self.path}" + (f" at {position}" if position else "")
        super().__init__(f"{where}: {message}")


class UnknownFormatError(IngestError):
    pass


class EmptyInputError(IngestError):
    pass


class CorruptInputError(IngestError):
    pass
