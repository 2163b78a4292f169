"""Printed digits: 0-9 rendered from font files that install offline, brought to MNIST's format.

The fonts are the TrueType/OpenType files of four Debian packages (:data:`FONT_DIRS`): ``fonts-dejavu-core``
(DejaVu Sans/Serif/Mono and their bold, oblique and condensed faces), ``fonts-liberation2`` (Liberation
Sans/Serif/Mono), ``fonts-freefont-ttf`` (GNU FreeSans/FreeSerif/FreeMono) and ``fonts-urw-base35`` (the URW
clones of the 35 PostScript fonts: Nimbus, Bookman, Gothic, C059, P052, Z003 chancery); symbol, dingbat and
math faces are left out. Each take draws a digit white on black at 64 px, turns it by a small random angle
(+-10 degrees), brings it to MNIST's format with :func:`ume_mma.data.handwriting.to_mnist` (bounding box scaled
into 20x20, centred by mass in 28x28) and moves it by at most 1 px. No model here was trained on type: MNIST and
OpenCV's ``digits.png`` are handwriting.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ume_mma.data.handwriting import to_mnist
from ume_mma.errors import MissingDependencyError

FONT_APT = "fonts-dejavu-core fonts-liberation2 fonts-freefont-ttf fonts-urw-base35"
FONT_DIRS = ("truetype/dejavu", "truetype/liberation2", "truetype/freefont", "opentype/urw-base35")
SKIP = re.compile(r"Math|Symbol|D050000L|ExtraLight", re.IGNORECASE)  # no digits, or strokes too thin at 28 px
MIN_FONTS = 20
CANVAS, POINT, MAX_DEGREES = 96, 64, 10.0


def font_root() -> Path:
    return Path(os.environ.get("UME_MMA_FONT_DIR", "/usr/share/fonts"))


def font_files(root: Path | None = None) -> list[Path]:
    """The usable font files under :data:`FONT_DIRS`, sorted; a readable error when fewer than :data:`MIN_FONTS`."""
    root = root or font_root()
    files = sorted(
        p
        for d in FONT_DIRS
        if (root / d).is_dir()
        for p in (root / d).iterdir()
        if p.suffix.lower() in (".ttf", ".otf") and not SKIP.search(p.name)
    )
    if len(files) < MIN_FONTS:
        raise MissingDependencyError(
            f"only {len(files)} digit fonts under {root} ({', '.join(FONT_DIRS)}): run "
            f"`sudo apt-get install -y {FONT_APT}` (or set UME_MMA_FONT_DIR)"
        )
    return files


def render_digit(font: Path, digit: int, degrees: float = 0.0, shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    """float32 ``[28, 28]`` in 0..1: ``digit`` in ``font``, turned by ``degrees``, MNIST format, moved by ``shift``."""
    face = ImageFont.truetype(str(font), POINT)
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    ImageDraw.Draw(canvas).text((CANVAS / 2, CANVAS / 2), str(digit), fill=255, font=face, anchor="mm")
    turned = canvas.rotate(degrees, resample=Image.Resampling.BICUBIC, fillcolor=0)
    x = np.asarray(turned)
    if x.max() == 0:
        raise ValueError(f"{font.name} draws nothing for {digit}")
    return np.roll(to_mnist(x), shift, axis=(0, 1))


def printed_pool(seed: int, takes: int = 2, root: Path | None = None) -> list[tuple[np.ndarray, int, str]]:
    """``[(image [28, 28] float32, digit, font file stem)]``: every font x digit x ``takes`` seeded random takes."""
    rng = np.random.default_rng([seed, 28])
    pool = []
    for font in font_files(root):
        for digit in range(10):
            for _ in range(takes):
                degrees = float(rng.uniform(-MAX_DEGREES, MAX_DEGREES))
                shift = (int(rng.integers(-1, 2)), int(rng.integers(-1, 2)))
                pool.append((render_digit(font, digit, degrees, shift), digit, font.stem))
    return pool
