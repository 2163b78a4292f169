"""The ``import`` and ``export`` commands of ``python -m ume_mma.data``::

python -m ume_mma.data import dataset SRC OUT
python -m ume_mma.data import folder SRC OUT [--seed N]
python -m ume_mma.data import csv FILE.csv OUT [--label COL] [--root DIR] [--seed N]
python -m ume_mma.data import hf SOURCE OUT [--label COL] [--image COL] [--audio COL] [--video COL] [--text COL]
python -m ume_mma.data import label-studio TASKS.json OUT [--media-root DIR] [--from-name NAME] [--image KEY] ...
python -m ume_mma.data export hf FOLDER [OUT]
python -m ume_mma.data export label-studio OUT --queue NAME [--db DB]
"""

from __future__ import annotations

import argparse
from pathlib import Path

FIELDS = ("label", "image", "audio", "video", "text")


def _mapping(args: argparse.Namespace, fields: tuple[str, ...]) -> dict[str, str]:
    return {f: getattr(args, f) for f in fields if getattr(args, f, None)}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``import`` and ``export`` to the subcommands of ``python -m ume_mma.data``."""
    imp = sub.add_parser("import", help="import a folder, a CSV, a Hugging Face dataset or a Label Studio export")
    kinds = imp.add_subparsers(dest="source", required=True)
    ours = kinds.add_parser("dataset", help="a dataset folder in our format (metadata.jsonl), copied and checked")
    ours.add_argument("src")
    ours.add_argument("out", help="the new dataset folder (must not exist, or be empty)")
    folder = kinds.add_parser("folder", help="SRC/<label>/<file> or SRC/<split>/<label>/<file>")
    folder.add_argument("src")
    csv = kinds.add_parser("csv", help="a CSV with a label column and image/audio/video/text columns")
    csv.add_argument("src")
    csv.add_argument("--label", default="label", help="the label column (default: label)")
    csv.add_argument("--root", default=None, help="folder the paths are relative to (default: the CSV's)")
    hf = kinds.add_parser("hf", help="a save_to_disk folder, parquet files, a dataset folder or a Hub id")
    hf.add_argument("src")
    for f in FIELDS:
        hf.add_argument(f"--{f}", default=None, metavar="COLUMN", help=f"the column of {f} (default: by name/type)")
    ls = kinds.add_parser("label-studio", help="a Label Studio JSON export (choices annotations)")
    ls.add_argument("src")
    ls.add_argument("--media-root", default=None, help="where the tasks' files are (default: the JSON's folder)")
    ls.add_argument("--from-name", default=None, help="the Choices control, when a project has several")
    for f in FIELDS[1:]:
        ls.add_argument(f"--{f}", default=None, metavar="KEY", help=f"the data key of {f} (default: {f})")
    for p in (folder, csv, hf, ls):
        p.add_argument("out", help="the new dataset folder (must not exist, or be empty)")
        p.add_argument("--seed", type=int, default=0, help="seed of the 80/10/10 split where the source has none")
    exp = sub.add_parser("export", help="a dataset folder as a Hugging Face dataset; a queue as Label Studio tasks")
    targets = exp.add_subparsers(dest="target", required=True)
    to_hf = targets.add_parser("hf", help="parquet with Image/Audio/Video/ClassLabel features + README configs")
    to_hf.add_argument("folder")
    to_hf.add_argument("out", nargs="?", default=None, help="a new folder (default: beside metadata.jsonl)")
    to_ls = targets.add_parser("label-studio", help="tasks.json with annotations and predictions, + media")
    to_ls.add_argument("out")
    to_ls.add_argument("--queue", required=True)
    to_ls.add_argument("--db", default=None, help="SQLite path or postgresql:// URL (default: the user's store)")


def run(args: argparse.Namespace) -> tuple[str, Path | None]:
    """Run an ``import``/``export`` command: ``(what to print, the dataset folder written or None)``."""
    if args.command == "export":
        if args.target == "hf":
            from ume_mma.data.imports.hf import export_hf

            out = export_hf(args.folder, args.out)
            return f"wrote a Hugging Face dataset in {out} (datasets.load_dataset({str(out)!r}) reads it)", None
        from ume_mma.annotate import open_store
        from ume_mma.data.imports.labelstudio import export_label_studio
        from ume_mma.home import default_db

        with open_store(args.db or default_db()) as store:
            out = export_label_studio(store, args.queue, args.out)
        return f"wrote {out / 'tasks.json'} and {out / 'label_config.xml'}", None
    if args.source == "dataset":
        from ume_mma.data.imports.choice import import_dataset_folder

        return "imported", import_dataset_folder(args.src, args.out)
    if args.source == "folder":
        from ume_mma.data.imports.folders import import_folder

        return "imported", import_folder(args.src, args.out, seed=args.seed)
    if args.source == "csv":
        from ume_mma.data.imports.folders import import_csv

        return "imported", import_csv(args.src, args.out, label=args.label, root=args.root, seed=args.seed)
    if args.source == "hf":
        from ume_mma.data.imports.hf import import_hf

        return "imported", import_hf(args.src, args.out, _mapping(args, FIELDS), seed=args.seed)
    from ume_mma.data.imports.labelstudio import import_label_studio

    out, unlabelled = import_label_studio(args.src, args.out, args.media_root, _mapping(args, FIELDS[1:]),
                                          args.from_name, seed=args.seed)  # fmt: skip
    return f"imported ({unlabelled} tasks without an annotation left out)", out
