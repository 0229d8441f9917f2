"""Checks the tests run over the repository's own files (not part of the runtime package)."""
