"""UPMC Food-101 (Wang et al., 2015: "Recipe recognition with large multimodal food dataset"): 101 food classes,
an image and the title of the web page it came from (text).

Native layout (as distributed and as the missing-modality papers read it)::

    SRC/images/train/<class>/<name>.jpg      SRC/images/test/<class>/<name>.jpg
    SRC/texts/train_titles.csv               SRC/texts/test_titles.csv

Each row of a titles CSV is ``<name>.jpg,<title text>,<class>`` (a first row whose first cell is not an image
file name is a header and is skipped). Splits: the dataset's own train and
test; ``val`` is 1 in 9 train rows chosen by a seeded hash (the dataset ships no val split; the papers each cut
their own). Modalities: image, text. A row whose image is missing, or a class that differs from its folder,
is refused.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ume_mma.data.convert.native import listed_file, source_dir
from ume_mma.data.format import Sample
from ume_mma.data.imports.staging import ImportRefused, Staging, require_labels

LAYOUT = "images/{train,test}/<class>/<name>.jpg and texts/{train,test}_titles.csv"
SPLITS = ("train", "test")


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        rows = [(n, row) for n, row in enumerate(csv.reader(fh), start=1) if row]
    if rows and not rows[0][1][0].strip().lower().endswith(IMAGE_SUFFIXES):
        rows = rows[1:]  # a header (image_path,text,food)
    return rows


def convert_food101(src: str | os.PathLike[str], out: str | os.PathLike[str], seed: int = 0) -> Path:
    """Convert UPMC Food-101 at ``src`` into ``out`` (new); returns ``out``."""
    needs = tuple(f"images/{s}" for s in SPLITS) + tuple(f"texts/{s}_titles.csv" for s in SPLITS)
    root = source_dir(src, "UPMC Food-101", needs, LAYOUT)
    with Staging(out, seed=seed) as st:
        for split in SPLITS:
            csv_name = f"texts/{split}_titles.csv"
            for n, row in _rows(root / csv_name):
                where = f"{csv_name} line {n}"
                if len(row) < 3:
                    raise ImportRefused(f"{where}: expected <name>.jpg,<title>,<class>, got {len(row)} column(s)")
                name, label = row[0].strip(), row[-1].strip()
                text = ",".join(row[1:-1]).strip()
                if not label:
                    raise ImportRefused(f"{where}: empty class")
                image = listed_file(root, f"images/{split}/{label}/{name}", where)
                rel = st.add_file(image, "image", where, stem=f"{split}-{label}-{Path(name).stem}")
                st.add(Sample(label=label, image=rel, text=text, split=split, id=f"{split}/{label}/{name}"))
        require_labels(st.samples, str(src))
    return st.out
