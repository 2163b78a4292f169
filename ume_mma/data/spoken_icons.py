"""spoken-icons: a small three-modality dataset whose labels no shipped checkpoint has (a new task).

Eight words for devices and places of a desktop (:data:`WORDS`), each

- **audio**: spoken by three Festival voices (Debian ``festival`` + ``festvox-kdlpc16k``, ``festvox-italp16k``,
  ``festvox-itapc16k``: ``ked_diphone`` American English male, ``lp_diphone``/``pc_diphone`` Italian female and
  male reading the English word), each take at a seeded speaking rate (0.85-1.25), then processed like every
  other clip (:func:`~ume_mma.data.audio.fit_clip`: 1 s, 8 kHz);
- **image**: the word's icon from the Adwaita icon theme (Debian ``adwaita-icon-theme``; CC-BY-SA-3.0 or LGPL-3,
  see ``/usr/share/doc/adwaita-icon-theme/copyright``): a seeded pick among its full-colour and symbolic
  drawings at several sizes, scaled, shifted and put on a random light background (64x64 RGB);
- **text**: a short sentence naming the word (one of :data:`TEMPLATES`).

Rows: voices x words x ``takes`` (default 13: 312 rows). The test split is the held-out voice :data:`TEST_VOICE`
(every take of ``pc_diphone``: a speaker no model trained on) with two sentence templates no training row uses;
the two other voices' takes are split 10/3 into train/val (seeded), so train and val have both voices and every
word. ``python -m ume_mma.data build spoken-icons OUT``.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from ume_mma.data.audio import SR
from ume_mma.data.festival import VOICE_DIR, FestivalClip, render
from ume_mma.data.format import Sample, write_dataset
from ume_mma.data.sources import staged_output
from ume_mma.errors import MissingDependencyError

#: label -> Adwaita icon name (a device or place every desktop shows)
WORDS: dict[str, str] = {
    "battery": "battery-full",
    "camera": "camera-photo",
    "computer": "computer",
    "folder": "folder",
    "keyboard": "input-keyboard",
    "mouse": "input-mouse",
    "phone": "phone",
    "printer": "printer",
}
VOICES = ("ked_diphone", "lp_diphone", "pc_diphone")
TEST_VOICE = "pc_diphone"  # held out: the test split's speaker
ICONS = Path("/usr/share/icons/Adwaita")
ICON_APT = "adwaita-icon-theme"
TEMPLATES = ("a {w}", "the {w}", "my {w}", "this is a {w}", "open the {w}", "where is the {w}")
TEST_TEMPLATES = ("look at the {w}", "I need a {w}")  # the test split's sentences only
IMAGE_SIZE = 64
VAL_SHARE = 3 / 13  # of a training voice's takes per word


def icon_files(name: str) -> list[Path]:
    """Every PNG drawing of icon ``name`` (full colour and symbolic, every size), sorted; a readable error when
    the theme lacks it."""
    files = sorted(ICONS.glob(f"*/*/{name}.png")) + sorted(ICONS.glob(f"*/*/{name}-symbolic.symbolic.png"))
    if not files:
        raise MissingDependencyError(f"no {name!r} icon under {ICONS}: run `sudo apt-get install -y {ICON_APT}`")
    return files


def require_sources() -> None:
    """A readable error when a voice of :data:`VOICES` or an icon of :data:`WORDS` is not installed."""
    missing = [v for v in VOICES if not any(VOICE_DIR.glob(f"*/{v}"))]
    if missing:
        raise MissingDependencyError(f"Festival voices {missing} not found under {VOICE_DIR}: run scripts/setup.sh")
    for name in WORDS.values():
        icon_files(name)


def icon_image(path: Path, rng: np.random.Generator) -> Image.Image:
    """``path`` scaled to 60-100% of the 64x64 frame, shifted, on a random light background (RGB)."""
    with Image.open(path) as im:
        rgba = im.convert("RGBA")
    side = int(rng.integers(int(0.6 * IMAGE_SIZE), IMAGE_SIZE + 1))
    rgba = rgba.resize((side, side), Image.Resampling.LANCZOS)
    colour = tuple(int(c) for c in rng.integers(170, 256, 3)) + (255,)
    canvas = Image.new("RGBA", (IMAGE_SIZE, IMAGE_SIZE), colour)
    x, y = (int(rng.integers(0, IMAGE_SIZE - side + 1)) for _ in range(2))
    canvas.alpha_composite(rgba, (x, y))
    return canvas.convert("RGB")


def _splits(voice: str, takes: int, rng: np.random.Generator) -> list[str]:
    """The split of each take: ``test`` for :data:`TEST_VOICE`, else a seeded train/val split (10/3 of 13, in
    proportion otherwise; one val take at least)."""
    if voice == TEST_VOICE:
        return ["test"] * takes
    n_val = max(1, round(takes * VAL_SHARE))
    names = ["train"] * (takes - n_val) + ["val"] * n_val
    return [names[i] for i in rng.permutation(takes)]


def build_spoken_icons(out_dir: str | os.PathLike[str], seed: int = 0, takes: int = 13) -> Path:
    """Build spoken-icons into ``out_dir`` (see the module docstring); ``takes`` per voice and word (>= 3)."""
    if takes < 3:
        raise ValueError(f"spoken-icons needs at least 3 takes per voice and word (train and val), got {takes}")
    require_sources()
    t0 = time.time()
    rng = np.random.default_rng([seed, 41])
    rows: list[Sample] = []
    words = sorted(WORDS)
    with staged_output(out_dir) as tmp:
        (tmp / "audio").mkdir()
        (tmp / "images").mkdir()
        for voice in VOICES:
            for word in words:
                icons = icon_files(WORDS[word])
                for take, split in enumerate(_splits(voice, takes, rng)):
                    stretch = round(float(rng.uniform(0.85, 1.25)), 3)
                    sid = f"{voice}-{word}-{take}"
                    clip = render(FestivalClip(voice, 0, stretch, take), word=word)
                    sf.write(tmp / "audio" / f"{sid}.wav", clip, SR)
                    icon = icons[int(rng.integers(len(icons)))]
                    icon_image(icon, rng).save(tmp / "images" / f"{sid}.png")
                    templates = TEST_TEMPLATES if split == "test" else TEMPLATES
                    text = templates[int(rng.integers(len(templates)))].format(w=word)
                    meta = {"voice": voice, "stretch": stretch, "icon": str(icon.relative_to(ICONS))}
                    rows.append(Sample(label=word, audio=f"audio/{sid}.wav", image=f"images/{sid}.png", text=text,
                                       split=split, id=sid, meta=meta))  # fmt: skip
        write_dataset(tmp, rows)
        info = {
            "benchmark": "spoken-icons",
            "seed": seed,
            "takes": takes,
            "rows": dict(sorted(Counter(r.split for r in rows).items())),
            "labels": words,
            "voices": list(VOICES),
            "test_voice": TEST_VOICE,
            "sources": {
                "audio": "Festival text2wave (festvox-kdlpc16k, festvox-italp16k, festvox-itapc16k)",
                "image": "adwaita-icon-theme (CC-BY-SA-3.0 or LGPL-3)",
                "text": "templates naming the word",
            },
            "build_seconds": round(time.time() - t0, 1),
        }
        (tmp / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return Path(out_dir).expanduser().resolve()
