"""Another handwriting collection: OpenCV's ``digits.png`` (Debian ``opencv-doc``), brought to MNIST's format.

The sheet is 2000x1000 pixels: 50 rows x 100 columns of 20x20 digits, 5 rows per class (0 to 9), 500
digits per class, white on black. :func:`to_mnist` does what MNIST's authors did to their scans: the digit's
bounding box is scaled (keeping its aspect ratio, anti-aliased) to fit 20x20, then placed in a 28x28 frame
so that its centre of mass is the frame's centre; grey levels are stretched so that the brightest stroke is white
(a blurred, low-resolution capture otherwise comes out dim: a capture difference, not a new writer).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ume_mma.errors import MissingDependencyError

DIGITS_PNG = "/usr/share/doc/opencv-doc/examples/data/digits.png"
CELL, ROWS, COLS, ROWS_PER_CLASS = 20, 50, 100, 5


def digits_png() -> Path:
    """``$UME_MMA_OPENCV_DIGITS`` or Debian opencv-doc's ``digits.png``; a readable error when absent."""
    path = Path(os.environ.get("UME_MMA_OPENCV_DIGITS", DIGITS_PNG))
    if not path.is_file():
        raise MissingDependencyError(
            f"{path} not found: run `sudo apt-get install -y opencv-doc` (or set UME_MMA_OPENCV_DIGITS)"
        )
    return path


def load_opencv_digits(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(cells uint8 [5000, 20, 20], labels int64 [5000], columns int64 [5000])`` in sheet order (row-major)."""
    sheet = np.asarray(Image.open(path or digits_png()).convert("L"))
    if sheet.shape != (ROWS * CELL, COLS * CELL):
        raise ValueError(f"{path or digits_png()}: expected a {COLS * CELL}x{ROWS * CELL} sheet, got {sheet.shape}")
    cells = sheet.reshape(ROWS, CELL, COLS, CELL).transpose(0, 2, 1, 3).reshape(-1, CELL, CELL)
    rows, cols = np.divmod(np.arange(ROWS * COLS), COLS)
    return cells.copy(), (rows // ROWS_PER_CLASS).astype(np.int64), cols.astype(np.int64)


def to_mnist(cell: np.ndarray, box: int = 20, size: int = 28) -> np.ndarray:
    """A white-on-black digit image -> float32 ``[size, size]`` in 0..1 (max 1), MNIST-style (see the module doc)."""
    x = cell.astype(np.float32)
    ys, xs = np.nonzero(x > 0.1 * x.max()) if x.max() > 0 else (np.array([0]), np.array([0]))
    crop = x[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = crop.shape
    scale = box / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    img = Image.fromarray(crop).resize((nw, nh), Image.Resampling.LANCZOS)
    small = np.clip(np.asarray(img, dtype=np.float32), 0, 255)
    out = np.zeros((size, size), np.float32)
    mass = small.sum()
    cy, cx = (np.array(np.nonzero(small >= 0)).reshape(2, nh, nw) * small).sum((1, 2)) / max(mass, 1e-6)
    top = int(np.clip(round(size / 2 - cy - 0.5), 0, size - nh))
    left = int(np.clip(round(size / 2 - cx - 0.5), 0, size - nw))
    out[top : top + nh, left : left + nw] = small
    return np.clip(out / max(float(out.max()), 1.0), 0.0, 1.0)
