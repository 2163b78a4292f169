"""The registry of job runners: a name -> a :class:`Runner` class. Implementations register themselves
(``ume_mma.jobs.local``: ``local``; ``ume_mma.jobs.hf``: ``hf``) and are imported by the package; this module
imports none of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from ume_mma.jobs.store import JobError, JobStore


class Runner:
    """Where and how a job's training command runs.

    ``exclusive``: one running job per device, the others wait in the queue (the local runner); a remote
    runner submits at once. Subclasses implement :meth:`device`, :meth:`launch`, :meth:`refresh`,
    :meth:`signal_cancel` and :meth:`progress_lines`.
    """

    name: ClassVar[str] = ""
    exclusive: ClassVar[bool] = True
    resumable: ClassVar[bool] = True  # a stopped job can continue from its saved state

    def __init__(self, jobs: JobStore) -> None:
        self.jobs = jobs

    def device(self, options: dict[str, Any]) -> str:
        """The device key a job with ``options`` runs on (jobs of one device run one at a time)."""
        raise NotImplementedError

    def check(self, options: dict[str, Any]) -> None:
        """Refuse options that cannot work before a job row is written (e.g. a missing token)."""

    def prepare(self, job: dict[str, Any]) -> dict[str, Any]:
        """Work before the first launch (e.g. uploads); returns options to store with the job."""
        return {}

    def launch(self, job: dict[str, Any]) -> None:
        """Start a job that was just moved to ``running`` (record its process or remote id)."""
        raise NotImplementedError

    def refresh(self, job: dict[str, Any]) -> None:
        """Bring a ``running`` job's row up to date (process gone -> interrupted, remote finished...)."""

    def signal_cancel(self, job: dict[str, Any]) -> bool:
        """Ask a running job to stop; True when the job will record its own end (else the caller marks it)."""
        raise NotImplementedError

    def progress_lines(self, job: dict[str, Any]) -> list[str]:
        """The job's progress JSON lines (and any other log lines, which are skipped)."""
        return []


RUNNERS: dict[str, type[Runner]] = {}


def register_runner(name: str) -> Callable[[type[Runner]], type[Runner]]:
    """Class decorator: ``@register_runner("local")``."""

    def add(cls: type[Runner]) -> type[Runner]:
        cls.name = name
        RUNNERS[name] = cls
        return cls

    return add


def get_runner(name: str, jobs: JobStore) -> Runner:
    """The runner registered as ``name`` bound to ``jobs``; an unknown name lists the known ones."""
    if name not in RUNNERS:
        raise JobError(f"unknown runner {name!r}; known: {sorted(RUNNERS)}")
    return RUNNERS[name](jobs)
