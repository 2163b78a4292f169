"""Job rows in the annotation database (table ``jobs``, schema version 3 of :mod:`ume_mma.annotate.schema`).

Every state change is one transaction with a condition on the current state (``UPDATE ... WHERE state IN``),
so two processes (the app, the CLI, a job's supervisor) can never both move a job: the loser sees that
nothing changed. Claiming the next queued job of a device takes the database's write lock (SQLite
``BEGIN IMMEDIATE``; a row lock on PostgreSQL) so that only one job runs per device.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ume_mma.annotate.schema import JOB_STATES, jobs
from ume_mma.annotate.store import Store
from ume_mma.errors import UmeMmaError

FINISHED = ("succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")


class JobError(UmeMmaError, ValueError):
    """A job request that cannot be done: unknown job, a cancel of a finished job, bad job input."""


class JobStore:
    """The jobs of one annotation store; ``root`` holds one folder per job (``job-<id>/``)."""

    def __init__(self, store: Store, root: str | os.PathLike[str] | None = None) -> None:
        self.store = store
        media = store.media.root
        self.root = Path(root) if root is not None else media.with_name(media.name.removesuffix(".media") + ".jobs")

    @property
    def clock(self) -> Any:
        return self.store.clock

    def folder(self, job_id: int) -> Path:
        return self.root / f"job-{job_id}"

    def add(
        self, config: dict[str, Any], runner: str, device: str, options: dict[str, Any], owner: str | None = None
    ) -> int:
        """Insert a queued job started by ``owner``; its config's ``out`` becomes ``<folder>/out``. Returns
        the job id."""
        with self.store.transaction() as conn:
            row = dict(state="queued", runner=runner, device=device, config=config, options=options, resume=False)
            row["owner"] = owner
            job_id = conn.execute(
                jobs.insert().values(**row, out_dir="", created_at=self.clock())
            ).inserted_primary_key[0]
            out = self.folder(job_id) / "out"
            conn.execute(
                jobs.update().where(jobs.c.id == job_id).values(config={**config, "out": str(out)}, out_dir=str(out))
            )
        return int(job_id)

    def get(self, job_id: int, conn: sa.Connection | None = None) -> dict[str, Any]:
        """The job row as a dict; an unknown id raises :class:`JobError`."""
        if conn is None:
            with self.store.transaction() as own:
                return self.get(job_id, own)
        row = conn.execute(sa.select(jobs).where(jobs.c.id == int(job_id)).with_for_update()).mappings().first()
        if row is None:
            raise JobError(f"no job {job_id}")  # no database path: this message reaches API clients
        return dict(row)

    def list(self, states: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Every job (newest first), or those in ``states``."""
        query = sa.select(jobs).order_by(jobs.c.id.desc())
        if states is not None:
            query = query.where(jobs.c.state.in_(list(states)))
        with self.store.transaction() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def move(self, job_id: int, from_states: Iterable[str], to_state: str, **values: Any) -> bool:
        """Set ``state = to_state`` (and ``values``) if the job is in one of ``from_states``; returns whether it was."""
        assert to_state in JOB_STATES
        with self.store.transaction() as conn:
            return self._move(conn, job_id, from_states, to_state, **values)

    def _move(self, conn: sa.Connection, job_id: int, from_states: Iterable[str], to_state: str, **values: Any) -> bool:
        if to_state in FINISHED or to_state == "interrupted":
            values.setdefault("finished_at", self.clock())
        cond = sa.and_(jobs.c.id == int(job_id), jobs.c.state.in_(list(from_states)))
        return conn.execute(jobs.update().where(cond).values(state=to_state, **values)).rowcount == 1

    def set(self, job_id: int, **values: Any) -> None:
        """Update fields of a job whatever its state (pid, remote id, metrics...)."""
        with self.store.transaction() as conn:
            conn.execute(jobs.update().where(jobs.c.id == int(job_id)).values(**values))

    def claim_next(self, device: str, conn: sa.Connection) -> dict[str, Any] | None:
        """Inside the caller's transaction: when no job runs on ``device``, move its oldest queued job to
        ``running`` and return it; else None."""
        if conn.dialect.name == "postgresql":  # serialise claims: row locks alone let two claims pass
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(74650002)"))
        busy = sa.select(jobs.c.id).where(jobs.c.device == device, jobs.c.state == "running").with_for_update()
        if conn.execute(busy).first() is not None:
            return None
        query = sa.select(jobs).where(jobs.c.device == device, jobs.c.state == "queued").order_by(jobs.c.id).limit(1)
        row = conn.execute(query.with_for_update()).mappings().first()
        if row is None:
            return None
        started = self.clock()
        self._move(conn, row["id"], ["queued"], "running", started_at=started, pid=None, process=None)
        return {**dict(row), "state": "running", "started_at": started}

    def queue_position(self, job: dict[str, Any]) -> int | None:
        """1 + the number of queued jobs ahead of ``job`` on its device (None unless queued)."""
        if job["state"] != "queued":
            return None
        cond = sa.and_(jobs.c.device == job["device"], jobs.c.state == "queued", jobs.c.id < job["id"])
        with self.store.transaction() as conn:
            return 1 + conn.execute(sa.select(sa.func.count()).select_from(jobs).where(cond)).scalar_one()
