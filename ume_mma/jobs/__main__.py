"""Command line of fine-tuning jobs.

    python -m ume_mma.jobs start [CONFIG] [key=value ...] [--runner local|hf] [--device auto|cpu|cuda]
                                 [--nice N] [--threads N] [--annotations [QUEUE]]
                                 [--flavor F] [--image I] [--data-repo R] [--model-repo R]
    python -m ume_mma.jobs status JOB_ID [--json]
    python -m ume_mma.jobs cancel JOB_ID
    python -m ume_mma.jobs resume JOB_ID
    python -m ume_mma.jobs list [--json]
    python -m ume_mma.jobs push-model CHECKPOINT REPO_ID      (the last step of a Hugging Face job)

Every command takes ``--db PATH_OR_URL`` (default: the annotation database) and ``--media-dir``. Bad input
(a config that does not validate, data without train/val/test samples, an empty annotation set, a base
checkpoint that does not load or lacks a label, a cancel of a finished job, an unknown job) prints one line
and exits 2; a runtime error (locked database, Hub error) prints one line and exits 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from ume_mma.annotate.__main__ import _Parser, default_db, default_media
from ume_mma.errors import UmeMmaError

PROG = "python -m ume_mma.jobs"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Fine-tuning jobs: start, status, cancel, resume, list.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", default=None, help="SQLite path or postgresql:// URL (default: the annotation database)")
    db.add_argument("--media-dir", default=None, help="media folder (PostgreSQL)")
    start = sub.add_parser("start", parents=[db], help="queue a job; it starts when its device is free")
    start.add_argument("items", nargs="*", help="[CONFIG] then key=value overrides (init_from=..., data=...)")
    start.add_argument("--runner", default="local", help="local (this machine) or hf (Hugging Face Jobs)")
    start.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="local runner device")
    start.add_argument("--nice", type=int, default=None, help="local runner: priority increment (default 10)")
    start.add_argument("--threads", type=int, default=None, help="local runner on a CPU: threads (default CPUs-1)")
    start.add_argument("--annotations", nargs="?", const=True, metavar="QUEUE", help="train on the store's labels")
    for name in ("flavor", "image", "namespace", "data-repo", "model-repo"):
        start.add_argument(f"--{name}", default=None, help=f"hf runner: {name}")
    for name in ("status", "cancel", "resume"):
        cmd = sub.add_parser(name, parents=[db], help=f"{name} a job")
        cmd.add_argument("job_id", type=int)
        if name == "status":
            cmd.add_argument("--json", action="store_true", help="print the whole status as JSON")
    lst = sub.add_parser("list", parents=[db], help="every job, newest first")
    lst.add_argument("--json", action="store_true")
    push = sub.add_parser("push-model", help="upload a checkpoint folder as a Hub model repo (token: HF_TOKEN)")
    push.add_argument("checkpoint")
    push.add_argument("repo_id")
    return parser


def _when(t: float | None) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _pct(acc: dict[str, float] | None) -> str:
    return f"{100 * acc['full']:.1f}%" if acc and acc.get("full") is not None else "-"


def print_status(status: dict[str, Any]) -> None:
    p = status["progress"]
    print(f"job {status['id']}: {status['state']} ({status['runner']} on {status['device']})")
    if status["queue_position"]:
        print(f"  queued: position {status['queue_position']} on {status['device']}")
    if p["phase"]:
        line = f"  phase {p['phase']} epoch {p.get('epoch')}/{p.get('epochs')} step {p.get('step')}/{p.get('steps')}"
        loss, val = p.get("loss"), p.get("val_accuracy")
        line += f" loss {loss:.4f}" if loss is not None else ""
        line += f" val {100 * val:.1f}%" if val is not None else ""
        print(line)
    print(f"  created {_when(status['created_at'])}, started {_when(status['started_at'])}, "
          f"finished {_when(status['finished_at'])}")  # fmt: skip
    if status["before"] or status["after"]:
        print(f"  test accuracy (full): before {_pct(status['before'])}, after {_pct(status['after'])}")
    if status["checkpoint"]:
        print(f"  checkpoint: {status['checkpoint']}")
    if status["error"]:
        print(f"  error: {status['error']}")


def _run(args: argparse.Namespace) -> int:
    from ume_mma import hub, jobs
    from ume_mma.annotate.store import open_store

    if args.command == "push-model":
        print(hub.push_model(args.checkpoint, args.repo_id))
        return 0
    db = args.db or str(default_db())
    with open_store(db, args.media_dir or default_media(db)) as store:
        if args.command == "start":
            return _start(store, args)
        if args.command == "status":
            status = jobs.job_status(store, args.job_id)
            print(json.dumps(status, indent=2, default=str)) if args.json else print_status(status)
        elif args.command == "cancel":
            job = jobs.cancel_job(store, args.job_id)
            stopping = "stopping (its state is saved at the next step)"
            print(f"job {job['id']}: " + (stopping if job["state"] == "running" else job["state"]))
        elif args.command == "resume":
            job = jobs.resume_job(store, args.job_id)
            print(f"job {job['id']}: {job['state']} (continues from its saved state)")
        else:
            rows = jobs.list_jobs(store)
            if args.json:
                print(json.dumps(rows, indent=2))
            for r in [] if args.json else rows:
                acc = f"{100 * r['test_full']:.1f}%" if r["test_full"] is not None else "-"
                print(f"{r['id']:>4}  {r['state']:<11} {r['runner']:<5} {r['device']:<16} {_when(r['created_at'])}  "
                      f"{r['chosen'] or '-':<5} {acc:>6}  {r['data']}")  # fmt: skip
    return 0


def _start(store: Any, args: argparse.Namespace) -> int:
    from ume_mma import jobs

    items = list(args.items)
    config = items.pop(0) if items and "=" not in items[0] else None
    options = {"device": args.device} if args.runner == "local" else {}
    if args.runner == "local":
        options |= {k: getattr(args, k) for k in ("nice", "threads") if getattr(args, k) is not None}
    for key in ("flavor", "image", "namespace", "data_repo", "model_repo"):
        if getattr(args, key):
            options[key] = getattr(args, key)
    job_id = jobs.start_job(store, items, args.runner, config=config, options=options, annotations=args.annotations)
    job = jobs.job_status(store, job_id)
    print(f"job {job_id}: {job['state']} on {job['device']} ({PROG} status {job_id})")
    if not job["config"].get("init_from"):
        print(f"note: job {job_id} has no init_from: it trains a new model from scratch "
              "(set init_from=CHECKPOINT to fine-tune one)")  # fmt: skip
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with options anywhere: ``start CONFIG --device cuda seed=1`` keeps ``seed=1`` an
    override (plain argparse stops filling ``items`` at the first option)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "start" and not any(x.startswith("-") for x in extra):
        args.items += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return _run(args)
    except UmeMmaError as exc:  # the library's usage errors are ValueErrors; the others are runtime errors
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1


if __name__ == "__main__":
    from ume_mma.cli import main_quietly

    main_quietly(main)
