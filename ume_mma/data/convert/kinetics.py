"""Kinetics-Sounds (Arandjelović & Zisserman, ICCV 2017, "Look, Listen and Learn"): the Kinetics clips of the
classes whose action is heard as well as seen; a video and its soundtrack.

Kinetics-Sounds is a class list over Kinetics, not an archive of its own, and papers use different lists
(34 classes in Look, Listen and Learn; 31 or 32 in later work), so the list is given: ``classes``, one Kinetics
label a line, exactly as the CSV spells it. A listed class that no CSV row has is refused (a typo, or a class
of another Kinetics version).

Native layout (the Kinetics CSVs and the clips the ActivityNet downloader writes)::

    SRC/train.csv  SRC/validate.csv  [SRC/test.csv]     label,youtube_id,time_start,time_end,split[,is_cc]
    SRC/**/<youtube_id>_<time_start:06d>_<time_end:06d>.mp4   (any folder below SRC)

Splits: the CSV's ``split`` column (train, val/validate, test). Modalities: video (frames) and audio (the same
clip's soundtrack; one copy serves both). A clip the CSV lists but that is not on disk is refused, unless
``skip_missing`` (YouTube removes videos: few copies of Kinetics are complete); skipped clips are counted.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ume_mma.data.convert.native import source_dir
from ume_mma.data.format import Sample
from ume_mma.data.imports.staging import ImportRefused, Staging, check_decodes, require_labels, split_name

LAYOUT = "train.csv and validate.csv (label,youtube_id,time_start,time_end,split) and the clips <id>_<start>_<end>.mp4"
CSVS = ("train.csv", "validate.csv", "test.csv")
COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")


def read_classes(path: str | os.PathLike[str]) -> list[str]:
    """The class list file: one label a line (blank lines and ``#`` comments skipped)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ImportRefused(f"{path}: no such class list (one Kinetics label a line)")
    names = [ln.strip() for ln in file.read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n and not n.startswith("#")]
    if len(names) < 2:
        raise ImportRefused(f"{path}: a class list needs at least two labels, found {names}")
    return names


def clip_name(youtube_id: str, start: str, end: str, where: str) -> str:
    """``<youtube_id>_<start:06d>_<end:06d>.mp4``, the downloader's name of a clip."""
    try:
        return f"{youtube_id}_{int(float(start)):06d}_{int(float(end)):06d}.mp4"
    except ValueError:
        raise ImportRefused(f"{where}: time_start/time_end must be seconds, got {start!r}, {end!r}") from None


def convert_kinetics_sounds(
    src: str | os.PathLike[str], out: str | os.PathLike[str], classes: list[str], skip_missing: bool = False
) -> tuple[Path, int]:
    """Convert the Kinetics-Sounds clips at ``src`` into ``out`` (new). Returns ``(out, clips skipped)``."""
    root = source_dir(src, "Kinetics", ("train.csv", "validate.csv"), LAYOUT)
    wanted = set(classes)
    clips = {p.name: p for p in root.rglob("*.mp4")}
    seen: set[str] = set()
    skipped = 0
    with Staging(out) as st:
        for name in CSVS:
            if not (root / name).is_file():
                continue
            with (root / name).open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                lacking = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
                if lacking:
                    raise ImportRefused(f"{name}: not a Kinetics CSV: no column {', '.join(lacking)} "
                                        f"(the columns are {reader.fieldnames})")  # fmt: skip
                for n, row in enumerate(reader, start=2):
                    if row["label"] not in wanted:
                        continue
                    where = f"{name} line {n}"
                    seen.add(row["label"])
                    clip = clip_name(row["youtube_id"], row["time_start"], row["time_end"], where)
                    if clip not in clips:
                        if skip_missing:
                            skipped += 1
                            continue
                        raise ImportRefused(f"{where}: clip {clip} is listed but not under {src} "
                                            "(--skip-missing leaves such rows out)")  # fmt: skip
                    check_decodes(clips[clip], "audio", where, st.limits)  # the soundtrack is the audio
                    rel = st.add_file(clips[clip], "video", where, stem=clip[:-4])
                    split = split_name(row["split"], where)
                    st.add(Sample(label=row["label"], video=rel, audio=rel, split=split, id=clip[:-4],
                                  group=row["youtube_id"]))  # fmt: skip
        unknown = sorted(wanted - seen)
        if unknown:
            raise ImportRefused(f"classes {unknown} are in the class list but in no row of the Kinetics CSVs")
        require_labels(st.samples, str(src))
    return st.out, skipped
