"""The jobs table: the version 2 -> 3 -> 4 migrations (SQLite and PostgreSQL), conditional state moves, one
running job per device, the owner of a job."""

from __future__ import annotations

import sqlalchemy as sa

from ume_mma.annotate import open_store, schema
from ume_mma.jobs import JobStore


def _raw_engine(store_url) -> sa.Engine:
    url = store_url[0]
    return sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://") if "://" in url else f"sqlite:///{url}"
    )


def test_migrates_a_version_2_database(store_url):
    v2 = schema.build_tables(sa.MetaData(), 2)
    assert "jobs" not in v2
    engine = _raw_engine(store_url)
    with engine.begin() as conn:
        schema.create_schema(conn, version=2)
        conn.execute(
            v2["queues"].insert().values(id=1, name="old", labels=["a", "b"], order="file", seed=0, created_at=1)
        )
    engine.dispose()
    store = open_store(*store_url)  # migrates
    with store.transaction() as conn:
        versions = conn.execute(sa.select(schema.schema_version.c.version).order_by("version")).scalars().all()
        assert versions == list(range(2, schema.SCHEMA_VERSION + 1))  # every later migration ran
        assert conn.execute(sa.select(schema.queues.c.name)).scalar_one() == "old"  # the data is kept
        assert "ix_jobs_device_state" in {i["name"] for i in sa.inspect(conn).get_indexes("jobs")}
    jobs = JobStore(store)
    job_id = jobs.add({"task": "t", "data": "d"}, "local", "cpu", {})
    assert jobs.get(job_id)["state"] == "queued" and jobs.get(job_id)["out_dir"].endswith(f"job-{job_id}/out")
    store.close()
    open_store(*store_url).close()  # opening a current database again changes nothing
    with _raw_engine(store_url).connect() as conn:
        rows = conn.execute(sa.select(sa.func.count()).select_from(schema.schema_version)).scalar_one()
        assert rows == schema.SCHEMA_VERSION - 1


def test_migrates_a_version_3_database_keeping_its_jobs_without_an_owner(store_url):
    v3 = schema.build_tables(sa.MetaData(), 3)
    assert "owner" not in v3["jobs"].c
    engine = _raw_engine(store_url)
    with engine.begin() as conn:
        schema.create_schema(conn, version=3)
        conn.execute(v3["jobs"].insert().values(id=7, state="succeeded", runner="local", device="cpu", config={},
                                                options={}, resume=False, out_dir="/x", created_at=1))  # fmt: skip
    engine.dispose()
    store = open_store(*store_url)  # migrates
    jobs = JobStore(store)
    old = jobs.get(7)
    assert (old["state"], old["out_dir"], old["owner"]) == ("succeeded", "/x", None)  # kept, no owner
    assert jobs.get(jobs.add({"n": 1}, "local", "cpu", {}, owner="alice"))["owner"] == "alice"
    with store.transaction() as conn:
        assert schema.current_version(conn) == schema.SCHEMA_VERSION
    store.close()


def test_a_new_database_has_the_jobs_table(tmp_path):
    store = open_store(tmp_path / "a.db")
    with store.transaction() as conn:
        assert schema.current_version(conn) == schema.SCHEMA_VERSION
        assert "jobs" in sa.inspect(conn).get_table_names()
    assert JobStore(store).root == tmp_path / "a.db.jobs"


def test_state_moves_are_conditional_and_one_job_runs_per_device(store_url):
    jobs = JobStore(open_store(*store_url))
    first, second, other = (jobs.add({"n": i}, "local", dev, {}) for i, dev in enumerate(["cpu", "cpu", "cuda"]))
    with jobs.store.transaction() as conn:
        assert jobs.claim_next("cpu", conn)["id"] == first
    with jobs.store.transaction() as conn:
        assert jobs.claim_next("cpu", conn) is None  # the device is busy: the second job stays queued
        assert jobs.claim_next("cuda", conn)["id"] == other  # another device is free
    assert jobs.get(second)["state"] == "queued" and jobs.queue_position(jobs.get(second)) == 1
    assert not jobs.move(second, ["running"], "succeeded")  # not running: nothing changes
    assert jobs.move(first, ["running"], "succeeded", exit_code=0)
    assert jobs.get(first)["finished_at"] is not None
    with jobs.store.transaction() as conn:
        assert jobs.claim_next("cpu", conn)["id"] == second
