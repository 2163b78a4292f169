"""AVE, the Audio-Visual Event dataset (Tian et al., ECCV 2018, "Audio-Visual Event Localization in Unconstrained
Videos"): 4,143 ten-second YouTube videos, 28 event categories, a video and its soundtrack.

Native layout (the ``AVE_Dataset`` archive)::

    SRC/Annotations.txt                      Category&VideoID&Quality&StartTime&EndTime (header, then one row
                                             per video: "Church bell&RUhOCu3LNXM&good&0&10")
    SRC/trainSet.txt  SRC/valSet.txt  SRC/testSet.txt   the same rows, one file per split
    SRC/AVE/<VideoID>.mp4

Splits: the dataset's train / val / test files. Modalities: video (the frames) and audio (the same file's
soundtrack): one copy of the .mp4 serves both. The label is the video's category (classification, as the
missing-modality papers use AVE); the event's start and end seconds and the quality go under ``meta``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ume_mma.data.convert.native import listed_file, source_dir
from ume_mma.data.format import Sample
from ume_mma.data.imports.staging import ImportRefused, Staging, check_decodes, require_labels

LAYOUT = (
    "Annotations.txt, trainSet.txt, valSet.txt, testSet.txt (Category&VideoID&Quality&StartTime&EndTime) "
    "and AVE/<VideoID>.mp4"
)
SPLIT_FILES = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}
HEADER = "Category&VideoID&Quality&StartTime&EndTime"


def _rows(path: Path) -> list[tuple[str, list[str]]]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        line = line.strip()
        if not line or line == HEADER:
            continue
        where = f"{path.name} line {n}"
        cells = line.split("&")
        if len(cells) != 5:
            raise ImportRefused(f"{where}: expected {HEADER} (5 fields joined by '&'), got {line[:80]!r}")
        out.append((where, cells))
    return out


def convert_ave(src: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Convert AVE at ``src`` into ``out`` (new); returns ``out``."""
    root = source_dir(src, "AVE", ("Annotations.txt", *SPLIT_FILES.values(), "AVE"), LAYOUT)
    _rows(root / "Annotations.txt")  # the annotation file itself must parse
    seen: dict[str, str] = {}
    with Staging(out) as st:
        for split, name in SPLIT_FILES.items():
            for where, (category, vid, quality, start, end) in _rows(root / name):
                if vid in seen:
                    raise ImportRefused(f"{where}: video {vid} is already in {seen[vid]}")
                seen[vid] = name
                try:
                    span = [float(start), float(end)]
                except ValueError:
                    raise ImportRefused(f"{where}: StartTime/EndTime must be seconds, got {start!r}, {end!r}") from None
                clip = listed_file(root, f"AVE/{vid}.mp4", where)
                check_decodes(clip, "audio", where, st.limits)  # the soundtrack is the audio modality
                rel = st.add_file(clip, "video", where, stem=vid)
                st.add(Sample(label=category.strip(), video=rel, audio=rel, split=split, id=vid,
                              meta={"quality": quality, "event_s": span}))  # fmt: skip
        require_labels(st.samples, str(src))
    return st.out
