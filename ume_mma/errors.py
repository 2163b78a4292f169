"""Precise exceptions raised by the library. The app turns them into readable messages."""

from __future__ import annotations


def shorten(text: str, limit: int = 80) -> str:
    """``text`` quoted for a message, cut when long: ``'aaaa…'…'…zzzz' (10240 characters)``."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[: limit // 2]!r}…{text[-limit // 4 :]!r} ({len(text)} characters)"


class UmeMmaError(Exception):
    """Base class of every error the library raises on purpose."""


class DecodeError(UmeMmaError):
    """A file could not be decoded. The message names the file and the problem."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class UnknownEncoderError(UmeMmaError, ValueError):
    """An encoder name is not in the registry."""


class DatasetFormatError(UmeMmaError, ValueError):
    """A dataset folder or metadata.jsonl line is invalid (the message names line and field)."""


class CheckpointError(UmeMmaError):
    """A checkpoint folder is missing, incomplete or does not match the model it describes."""


class MissingDependencyError(UmeMmaError, ImportError):
    """An optional dependency or data package is not installed; the message says how to install it."""


class InputError(UmeMmaError, ValueError):
    """Inputs given to a model or predictor are inconsistent (e.g. every modality missing)."""


class StoreError(UmeMmaError):
    """The annotation database is locked, full, unreachable or of an unknown schema (the message says which)."""


class LeaseError(UmeMmaError):
    """An annotation queue item is not available to this annotator (leased by another, or already done)."""
