"""Typed library exceptions. The CLI turns them into one-line messages.

Every error that concerns a file carries its path (and row when known), so a user
can find the problem without a traceback.
"""

from __future__ import annotations

import os


class FaceidxError(Exception):
    """Base class of every error faceidx raises on purpose."""


class DataError(FaceidxError):
    """Bad input data: a corrupt file, a wrong schema, NaN vectors, a model mismatch.

    `path` names the file, `row` the 0-based row inside it when the problem is one row.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None, row: int | None = None):
        self.path = None if path is None else os.fspath(path)
        self.row = row
        self.reason = message
        where = ""
        if self.path is not None:
            where = f"{self.path}"
            if row is not None:
                where += f" (row {row})"
            where += ": "
        super().__init__(where + message)


class ModelMismatchError(DataError):
    """Vectors from one model (or dimension) meet vectors or an index of another."""


class IncompleteError(DataError):
    """A stage's output exists but was not finished (a crash or kill); rerun to resume."""


class TrainingError(FaceidxError):
    """Training cannot go on (a NaN loss); the message names the step and what was kept."""


class IndexBusyError(FaceidxError):
    """Another writer holds the index directory's lock; the message names the holder."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class MissingDependencyError(FaceidxError):
    """An optional dependency (ray, ...) is not installed; the message says how to install it."""


class NotFoundError(DataError):
    """An identity or face id that the gallery does not hold."""


class MemoryBudgetError(FaceidxError):
    """An index cannot be built within --max-memory; the message says what would fit."""
