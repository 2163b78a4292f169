"""Tables of the annotation store (SQLAlchemy Core) and the migrations between schema versions.

Versions:
  1. samples, queues, queue_items (with leases), annotations, schema_version. ``undo`` deleted the
     annotation row.
  2. ``annotations.undone_at``: an undone annotation is kept (audit trail: who labelled what, and what
     was taken back) and marked instead of deleted; indexes for handing out the next item
     (queue, state, rank, position) and for an annotator's last annotation.
  3. ``jobs``: fine-tuning jobs (``ume_mma.jobs``): state, runner, device, config, process or remote id,
     times, final metrics, output folder, error; an index for the next queued job of a device.
  4. ``jobs.owner``: who started a job (the app's signed-in user; NULL for a job of the CLI or of an
     older version, which only an admin or the local user sees).
  5. Annotation by a team: ``queues.overlap`` (each item to N annotators; 1 for existing queues),
     ``leases`` (one row per item and annotator: an item of an overlap-N queue is held by up to N people at
     once; the unexpired leases of ``queue_items.leased_by``/``lease_expires`` move there, and those two
     columns are no longer written), ``queue_items.gold`` (the known label of a gold item, never shown to
     annotators), ``resolutions`` (a reviewer's label for an item: every change is a row, with the label
     before and after, who and when; the newest row is the item's resolution) and an index of the
     annotations of an item.

``create_schema`` builds the current version in an empty database; ``ensure_schema`` migrates an older
one in place, in one transaction, and refuses a database written by a newer version of this code.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa

from ume_mma.errors import StoreError

SCHEMA_VERSION = 5
FLAGS = ("noisy", "irrelevant", "corrupt")  # per-modality flags an annotator may set
STATES = ("pending", "done")  # a queue item is handed out while pending; done once annotated
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")


def build_tables(metadata: sa.MetaData, version: int = SCHEMA_VERSION) -> dict[str, sa.Table]:
    """The tables of schema ``version`` in ``metadata`` (older versions are kept to test migrations)."""
    tables = _sample_tables(metadata, version)
    tables.update(_work_tables(metadata, version))
    if version >= 3:
        tables["jobs"] = _jobs_table(metadata, version)
    if version >= 5:
        tables.update(_team_tables(metadata))
    return tables


def _team_tables(metadata: sa.MetaData) -> dict[str, sa.Table]:
    """``leases`` and ``resolutions`` (version 5)."""
    leases = sa.Table(
        "leases",
        metadata,
        sa.Column("item_id", sa.Integer, sa.ForeignKey("queue_items.id"), primary_key=True),
        sa.Column("annotator", sa.String(200), primary_key=True),
        sa.Column("expires", sa.Float, nullable=False),
    )
    sa.Index("ix_leases_annotator", leases.c.annotator, leases.c.expires)
    resolutions = sa.Table(
        "resolutions",
        metadata,
        sa.Column("seq", sa.Integer, primary_key=True),  # the order of changes
        sa.Column("id", sa.String(32), nullable=False, unique=True),  # uuid4 hex: unique across stores and exports
        sa.Column("item_id", sa.Integer, sa.ForeignKey("queue_items.id"), nullable=False),
        sa.Column("before", sa.String(200)),  # the item's resolution before this change (NULL: none)
        sa.Column("label", sa.String(200)),  # after: the resolved label (NULL: the resolution was withdrawn)
        sa.Column("reviewer", sa.String(200), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    sa.Index("ix_resolutions_item", resolutions.c.item_id, resolutions.c.created_at)
    return {"leases": leases, "resolutions": resolutions}


def _jobs_table(metadata: sa.MetaData, version: int = SCHEMA_VERSION) -> sa.Table:
    """Fine-tuning jobs (version 3). ``state`` is one of JOB_STATES; ``process`` identifies a local job's
    process group (``"<pid>:<start time>"``, so a reused pid is not mistaken for it)."""
    jobs = sa.Table(
        "jobs",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("runner", sa.String(20), nullable=False),  # a registered runner: local, hf
        sa.Column("device", sa.String(40), nullable=False),  # one running job per device; the rest queue
        sa.Column("config", sa.JSON, nullable=False),  # the complete TrainConfig
        sa.Column("options", sa.JSON, nullable=False),  # runner options (e.g. the Hugging Face flavor, repos)
        sa.Column("resume", sa.Boolean, nullable=False),  # the next run continues from the saved state
        sa.Column("pid", sa.Integer),
        sa.Column("process", sa.String(60)),
        sa.Column("remote_id", sa.String(200)),  # a Hugging Face job id
        sa.Column("out_dir", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("cancel_requested_at", sa.Float),
        sa.Column("exit_code", sa.Integer),
        sa.Column("metrics", sa.JSON),  # the final metrics (chosen model, test accuracy, before/after)
        sa.Column("error", sa.Text),
        *([sa.Column("owner", sa.String(200))] if version >= 4 else []),  # who started it (version 4)
    )
    sa.Index("ix_jobs_device_state", jobs.c.device, jobs.c.state, jobs.c.id)
    return jobs


def _sample_tables(metadata: sa.MetaData, version: int = SCHEMA_VERSION) -> dict[str, sa.Table]:
    """schema_version, samples and queues (version 5: ``queues.overlap``)."""
    return {
        "schema_version": sa.Table(
            "schema_version",
            metadata,
            sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("applied_at", sa.Float, nullable=False),
        ),
        "samples": sa.Table(
            "samples",
            metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("content_key", sa.String(64), nullable=False, index=True),  # sha256 of the inputs
            sa.Column("source_id", sa.String(200)),  # the id of the line it was imported from
            sa.Column("group", sa.String(200)),
            sa.Column("given_label", sa.String(200)),  # the dataset's label, if it had one
            sa.Column("image", sa.String(80)),  # media refs: "<sha256><ext>" under the media folder
            sa.Column("audio", sa.String(80)),
            sa.Column("video", sa.String(80)),
            sa.Column("text", sa.Text),  # "" is a present, empty text; NULL = missing
            sa.Column("names", sa.JSON, nullable=False),  # modality -> original file name
            sa.Column("meta", sa.JSON, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
        ),
        "queues": sa.Table(
            "queues",
            metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(200), nullable=False, unique=True),
            sa.Column("labels", sa.JSON, nullable=False),
            sa.Column("source", sa.Text),
            sa.Column("checkpoint", sa.Text),
            sa.Column("order", sa.String(20), nullable=False),
            sa.Column("seed", sa.Integer, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
            *([sa.Column("overlap", sa.Integer, nullable=False, server_default="1")] if version >= 5 else []),
        ),
    }


def _work_tables(metadata: sa.MetaData, version: int) -> dict[str, sa.Table]:
    """queue_items and annotations (version 2: ``annotations.undone_at`` and two indexes)."""
    tables = {}
    tables["queue_items"] = sa.Table(
        "queue_items",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("queue_id", sa.Integer, sa.ForeignKey("queues.id"), nullable=False),
        sa.Column("sample_id", sa.Integer, sa.ForeignKey("samples.id"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),  # file order
        sa.Column("rank", sa.Integer, nullable=False),  # handing-out order (lowest first)
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("leased_by", sa.String(200)),
        sa.Column("lease_expires", sa.Float),
        sa.Column("skips", sa.Integer, nullable=False),
        sa.Column("prediction", sa.JSON),  # Prediction.to_dict() at prediction time, or {"error": ...}
        sa.Column("disagree", sa.Boolean),
        sa.Column("margin", sa.Float),  # fused top-1 minus top-2 probability
        sa.Column("confidence", sa.Float),  # fused top-1 probability
        sa.Column("updated_at", sa.Float, nullable=False),
        *([sa.Column("gold", sa.String(200))] if version >= 5 else []),  # a gold item's known label
    )
    annotation_columns = [
        sa.Column("id", sa.String(32), primary_key=True),  # uuid4 hex: unique across stores and exports
        sa.Column("item_id", sa.Integer, sa.ForeignKey("queue_items.id"), nullable=False),
        sa.Column("sample_id", sa.Integer, sa.ForeignKey("samples.id"), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("flags", sa.JSON, nullable=False),  # modality -> sorted list of FLAGS
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("annotator", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("checkpoint", sa.Text),
        sa.Column("prediction", sa.JSON),  # branch and fused predictions the annotator saw
    ]
    if version >= 2:
        annotation_columns.append(sa.Column("undone_at", sa.Float))
    tables["annotations"] = sa.Table("annotations", metadata, *annotation_columns)
    if version >= 2:
        items, annotations = tables["queue_items"], tables["annotations"]
        sa.Index("ix_items_next", items.c.queue_id, items.c.state, items.c.rank, items.c.position)
        sa.Index("ix_annotations_annotator", annotations.c.annotator, annotations.c.created_at)
    if version >= 5:
        sa.Index("ix_annotations_item", tables["annotations"].c.item_id, tables["annotations"].c.undone_at)
    return tables


METADATA = sa.MetaData()
TABLES = build_tables(METADATA)
samples = TABLES["samples"]
queues = TABLES["queues"]
queue_items = TABLES["queue_items"]
annotations = TABLES["annotations"]
schema_version = TABLES["schema_version"]
jobs = TABLES["jobs"]
leases = TABLES["leases"]
resolutions = TABLES["resolutions"]


def _migrate_1_to_2(conn: sa.Connection) -> None:
    conn.execute(sa.text("ALTER TABLE annotations ADD COLUMN undone_at FLOAT"))
    v2 = build_tables(sa.MetaData(), 2)
    for index in sorted(v2["queue_items"].indexes | v2["annotations"].indexes, key=lambda i: str(i.name)):
        index.create(conn)


def _migrate_2_to_3(conn: sa.Connection) -> None:
    build_tables(sa.MetaData(), 3)["jobs"].create(conn)  # with its index


def _migrate_3_to_4(conn: sa.Connection) -> None:
    conn.execute(sa.text("ALTER TABLE jobs ADD COLUMN owner VARCHAR(200)"))  # existing jobs: no owner (NULL)


def _migrate_4_to_5(conn: sa.Connection) -> None:
    conn.execute(sa.text("ALTER TABLE queues ADD COLUMN overlap INTEGER NOT NULL DEFAULT 1"))
    conn.execute(sa.text("ALTER TABLE queue_items ADD COLUMN gold VARCHAR(200)"))
    v5 = build_tables(sa.MetaData(), 5)
    v5["leases"].create(conn)
    v5["resolutions"].create(conn)
    next(i for i in v5["annotations"].indexes if i.name == "ix_annotations_item").create(conn)
    conn.execute(
        sa.text(
            "INSERT INTO leases (item_id, annotator, expires) SELECT id, leased_by, lease_expires FROM queue_items"
            " WHERE leased_by IS NOT NULL AND lease_expires IS NOT NULL AND state = 'pending'"
        )
    )  # the held items stay held, by the same annotator, until the same time
    conn.execute(sa.text("UPDATE queue_items SET leased_by = NULL, lease_expires = NULL"))


MIGRATIONS: dict[int, Callable[[sa.Connection], None]] = {
    2: _migrate_1_to_2,
    3: _migrate_2_to_3,
    4: _migrate_3_to_4,
    5: _migrate_4_to_5,
}


def current_version(conn: sa.Connection) -> int | None:
    """The schema version of the database (None: an empty database)."""
    names = set(sa.inspect(conn).get_table_names())
    if "schema_version" not in names:
        if names & set(TABLES):
            raise StoreError(f"the database has tables {sorted(names & set(TABLES))} but no schema_version table")
        return None
    return conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()


def create_schema(conn: sa.Connection, version: int = SCHEMA_VERSION) -> None:
    """Create every table of ``version`` in an empty database and record the version."""
    metadata = sa.MetaData()
    tables = build_tables(metadata, version)
    metadata.create_all(conn)
    conn.execute(tables["schema_version"].insert().values(version=version, applied_at=time.time()))


def ensure_schema(conn: sa.Connection) -> int:
    """Create or migrate the schema to SCHEMA_VERSION inside the caller's transaction; returns the version
    the database had before (0 for a new one)."""
    if conn.dialect.name == "postgresql":  # two processes opening a new database at once: one creates it
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(74650001)"))
    found = current_version(conn)
    if found is None:
        create_schema(conn)
        return 0
    if found > SCHEMA_VERSION:
        raise StoreError(f"the database has schema version {found}, newer than this code ({SCHEMA_VERSION})")
    for target in range(found + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[target](conn)
        conn.execute(schema_version.insert().values(version=target, applied_at=time.time()))
    return found
