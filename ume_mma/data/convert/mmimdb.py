"""MM-IMDb (Arevalo et al., 2017, "Gated Multimodal Units for Information Fusion"): 25,959 movies, a poster
(image) and a plot (text), 23 genres, multi-label.

Native layout (the ``mmimdb`` archive)::

    SRC/split.json                   {"train": [ids], "dev": [ids], "test": [ids]}
    SRC/dataset/<id>.json            {"genres": ["Drama", "Romance"], "plot": ["..."], ...}
    SRC/dataset/<id>.jpeg            the poster

Single-label rule (our format holds one label per sample): the label is the FIRST genre of ``genres``, in the
order the file lists them; every genre is kept in ``meta.genres``. Accuracy on this single label is not the
multi-label F1 the MM-IMDb papers report, so the figures do not compare. Splits: train / dev (our ``val``) /
test of ``split.json``. The text is the first plot (``plot`` is a list of summaries). A movie without a genre is
refused, as is a listed id whose .json or .jpeg is missing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ume_mma.data.convert.native import listed_file, source_dir
from ume_mma.data.format import Sample
from ume_mma.data.imports.staging import ImportRefused, Staging, require_labels

LAYOUT = "split.json ({train, dev, test}: ids) and dataset/<id>.json + dataset/<id>.jpeg"
SPLITS = {"train": "train", "dev": "val", "test": "test"}


def _read_json(path: Path, where: str) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ImportRefused(f"{where}: not valid JSON ({exc})") from None


def convert_mmimdb(src: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Convert MM-IMDb at ``src`` into ``out`` (new); returns ``out``."""
    root = source_dir(src, "MM-IMDb", ("split.json", "dataset"), LAYOUT)
    split = _read_json(root / "split.json", "split.json")
    if not isinstance(split, dict) or set(split) != set(SPLITS):
        keys = sorted(split) if isinstance(split, dict) else type(split).__name__
        raise ImportRefused(f"split.json: expected the keys train, dev, test, got {keys}")
    with Staging(out) as st:
        for name, ours in SPLITS.items():
            for mid in split[name]:
                where = f"split.json {name} id {mid}"
                info = _read_json(listed_file(root, f"dataset/{mid}.json", where), f"dataset/{mid}.json")
                genres = info.get("genres") if isinstance(info, dict) else None
                if not isinstance(genres, list) or not genres or not all(isinstance(g, str) for g in genres):
                    raise ImportRefused(f"dataset/{mid}.json: no 'genres' list (the label comes from its first genre)")
                plot = info.get("plot")
                text = plot[0] if isinstance(plot, list) and plot else plot if isinstance(plot, str) else None
                rel = st.add_file(listed_file(root, f"dataset/{mid}.jpeg", where), "image", where, stem=str(mid))
                st.add(Sample(label=genres[0], image=rel, text=text, split=ours, id=str(mid),
                              meta={"genres": genres}))  # fmt: skip
        require_labels(st.samples, str(src))
    return st.out
