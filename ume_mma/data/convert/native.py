"""Small helpers shared by the converters: the source folder and its listed files, checked before anything is
written."""

from __future__ import annotations

import os
from pathlib import Path

from ume_mma.data.imports.staging import ImportRefused


def source_dir(src: str | os.PathLike[str], dataset: str, needs: tuple[str, ...], layout: str) -> Path:
    """``src`` resolved; refused unless it is a folder holding every path of ``needs`` (the dataset's layout,
    described by ``layout`` in the message)."""
    root = Path(src).expanduser().resolve()
    if not root.is_dir():
        raise ImportRefused(f"{src}: not a folder (expected the {dataset} layout: {layout})")
    missing = [n for n in needs if not (root / n).exists()]
    if missing:
        raise ImportRefused(f"{src}: not the {dataset} layout: no {', '.join(missing)} (expected {layout})")
    return root


def listed_file(root: Path, rel: str, where: str) -> Path:
    """``root/rel``, refused when a file the dataset lists is not there."""
    path = root / rel
    if not path.is_file():
        raise ImportRefused(f"{where}: {rel} is listed but the file is missing")
    return path
