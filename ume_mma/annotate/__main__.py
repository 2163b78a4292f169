"""Command line of the annotation store.

    python -m ume_mma.annotate import DATA_DIR [--checkpoint CKPT] [--db PATH_OR_URL] [--order disagreement]
    python -m ume_mma.annotate predict --checkpoint CKPT [--db ...] [--queue default] [--redo] [--order ...]
    python -m ume_mma.annotate export OUT [--db PATH_OR_URL] [--seed 0] [--hf] [--push REPO_ID]
    python -m ume_mma.annotate stats [--db PATH_OR_URL]

The default database is ``annotations.db`` in the data folder (:mod:`ume_mma.home`: ``$UME_MMA_HOME``,
``/data`` on a Space with persistent storage, else the user's data folder, e.g. ``~/.local/share/ume-mma``).
Bad usage prints one line and exits 2; a library error (bad data, locked database...) prints one line and
exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn

from ume_mma.annotate.rank import DEFAULT_ORDER, ORDERS
from ume_mma.errors import UmeMmaError
from ume_mma.home import default_db, default_media  # noqa: F401 - the jobs CLI and the app import them from here

PROG = "python -m ume_mma.annotate"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one clear line instead of usage + message
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Annotation queue: import, predict, export, stats.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument(
        "--db",
        default=None,
        help=f"SQLite path or postgresql:// URL (default: {str(default_db()).replace('%', '%%')})",
    )
    db.add_argument("--media-dir", default=None, help="media folder (needed for PostgreSQL; default beside the db)")
    imp = sub.add_parser("import", parents=[db], help="import a dataset folder as a queue and predict it")
    imp.add_argument("data_dir", type=Path)
    imp.add_argument("--checkpoint", help="checkpoint folder or Hub repo id for the prediction pass")
    imp.add_argument("--order", choices=sorted(ORDERS), default=DEFAULT_ORDER)
    imp.add_argument("--queue", default="default")
    imp.add_argument("--labels", help="comma-separated label set (default: the dataset's and the checkpoint's)")
    imp.add_argument("--seed", type=int, default=0, help="seed of the random order")
    imp.add_argument("--skip-bad", action="store_true", help="leave out bad lines instead of importing nothing")
    imp.add_argument("--overlap", type=int, default=None, help="give each item to N annotators (default: 1)")
    imp.add_argument(
        "--gold", type=float, default=0.0, help="share (0-1) of the labelled lines that become gold items (hidden)"
    )
    pred = sub.add_parser("predict", parents=[db], help="(re)run the prediction pass of a queue and rank it")
    pred.add_argument("--checkpoint", required=True, help="checkpoint folder or Hub repo id")
    pred.add_argument("--queue", default="default")
    pred.add_argument("--redo", action="store_true", help="predict every item again (e.g. a new checkpoint)")
    pred.add_argument("--order", choices=sorted(ORDERS), default=None, help="default: the queue's order")
    exp = sub.add_parser("export", parents=[db], help="export annotations as a dataset folder")
    exp.add_argument("out", type=Path)
    exp.add_argument("--queue", default=None, help="only this queue (default: all)")
    exp.add_argument("--seed", type=int, default=0, help="seed of the split hash")
    exp.add_argument("--hf", action="store_true", help="also write it as a Hugging Face dataset (typed parquet)")
    exp.add_argument(
        "--push", metavar="REPO_ID", help="also upload as a Hub dataset repo (token: HF_TOKEN; includes --hf)"
    )
    st = sub.add_parser("stats", parents=[db], help="print counts and agreement per queue as JSON")
    st.add_argument("--queue", default=None, help="only this queue (default: all)")
    return parser


def _open(args: argparse.Namespace):  # -> Store
    from ume_mma.annotate.store import open_store

    db = args.db or str(default_db())
    return open_store(db, args.media_dir or default_media(db))


def _import(args: argparse.Namespace) -> int:
    from ume_mma.annotate.ingest import import_dataset
    from ume_mma.annotate.rank import order_queue, predict_queue

    if not args.data_dir.is_dir():
        raise SystemExit(f"{PROG} import: error: {args.data_dir} is not a folder")  # usage, exit 2 below
    labels = [x.strip() for x in args.labels.split(",") if x.strip()] if args.labels else None
    predictor = fit = None
    if args.checkpoint:
        from ume_mma.annotate.ingest import check_fits, read_unlabelled
        from ume_mma.checkpoint import load_config
        from ume_mma.compat import Fit
        from ume_mma.predictor import Predictor

        config, _ = load_config(args.checkpoint)  # its modalities: a misfit is refused in a second
        fit = Fit.of(config, f"checkpoint {args.checkpoint}")
        check_fits(read_unlabelled(args.data_dir), fit, str(args.data_dir))  # new labels are fine (a note)
        predictor = Predictor.from_pretrained(args.checkpoint)  # load before writing anything
    store = _open(args)
    result = import_dataset(
        store,
        args.data_dir,
        args.queue,
        labels,
        args.order,
        args.seed,
        args.skip_bad,
        overlap=args.overlap,
        gold=args.gold,
        fit=fit if predictor is not None else None,
    )
    if result.note():
        print(result.note())
    for problem in result.skipped:
        print(f"skipped {problem}", file=sys.stderr)
    if predictor is not None:
        predict_queue(store, predictor, args.queue)
    else:
        order_queue(store, args.queue)
    print(f"imported {result.added} items into queue {args.queue!r} of {store.display} (order: {args.order})")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from ume_mma.annotate.rank import order_queue, predict_queue
    from ume_mma.predictor import Predictor

    predictor = Predictor.from_pretrained(args.checkpoint)
    store = _open(args)
    if args.order:
        order_queue(store, args.queue, args.order)  # checks the queue and records the order first
    n = predict_queue(store, predictor, args.queue, redo=args.redo)
    print(f"predicted {n} items of queue {args.queue!r} with {args.checkpoint}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from ume_mma.annotate.export import export, push_dataset

    store = _open(args)
    result = export(store, args.out, seed=args.seed, queue=args.queue)
    print(f"exported {sum(sum(v.values()) for v in result.counts.values())} annotations to {result.path}")
    if args.hf or args.push:  # beside metadata.jsonl: datasets.load_dataset reads the folder (and the Hub repo)
        from ume_mma.data.imports.hf import export_hf

        export_hf(result.path)
        print(f"wrote a Hugging Face dataset (Image, Audio, Video, ClassLabel features) in {result.path / 'data'}")
    if result.unresolved:
        print(f"left out {len(result.unresolved)} items whose labels disagree and that no reviewer resolved")
    if args.push:
        print(f"pushed: {push_dataset(result.path, args.push)}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from ume_mma.annotate.agreement import queue_agreement
    from ume_mma.annotate.queue import AnnotationQueue, queue_names

    store = _open(args)
    names = [args.queue] if args.queue else queue_names(store)
    out = {name: {**AnnotationQueue(store, name).stats().to_dict(), "agreement": queue_agreement(store, name)}
           for name in names}  # fmt: skip
    print(json.dumps(out, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        commands = {"import": _import, "predict": _predict, "export": _export, "stats": _stats}
        return commands[args.command](args)
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return 2
        raise
    except UmeMmaError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    from ume_mma.cli import main_quietly

    main_quietly(main)
