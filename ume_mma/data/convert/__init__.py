"""Converters from the paper's datasets, in the layouts their authors publish, into the one dataset format
(``python -m ume_mma.data convert NAME SRC OUT``): :mod:`.food101` (UPMC Food-101, image + text), :mod:`.ave`
(AVE, video + audio), :mod:`.mmimdb` (MM-IMDb, image + text, first genre),
:mod:`.kinetics` (Kinetics-Sounds, video + audio, a given class list). Each refuses a layout that is not the
dataset's, or a file it lists but that is missing, in words, and writes nothing then (:class:`Staging`).

Every converted folder is evaluated under the one protocol of ``python -m ume_mma.evaluate``
(:data:`MISSING_RATE`), whatever missing-rate scheme the dataset's own papers used."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

MISSING_RATE = (
    "each test sample independently, with probability r, loses one of its present modalities, chosen uniformly "
    "among them; a sample never loses all of them"
)


def _food101(src: str | os.PathLike[str], out: str | os.PathLike[str], seed: int = 0) -> Path:
    from ume_mma.data.convert.food101 import convert_food101

    return convert_food101(src, out, seed=seed)


def _ave(src: str | os.PathLike[str], out: str | os.PathLike[str], seed: int = 0) -> Path:
    from ume_mma.data.convert.ave import convert_ave

    return convert_ave(src, out)


def _mmimdb(src: str | os.PathLike[str], out: str | os.PathLike[str], seed: int = 0) -> Path:
    from ume_mma.data.convert.mmimdb import convert_mmimdb

    return convert_mmimdb(src, out)


def _kinetics(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    seed: int = 0,
    classes: str | os.PathLike[str] | None = None,
    skip_missing: bool = False,
) -> Path:
    from ume_mma.data.convert.kinetics import convert_kinetics_sounds, read_classes
    from ume_mma.data.imports.staging import ImportRefused

    if classes is None:
        raise ImportRefused("kinetics-sounds needs --classes FILE: the class list your paper uses, one label a line")
    return convert_kinetics_sounds(src, out, read_classes(classes), skip_missing=skip_missing)[0]


CONVERTERS: dict[str, Callable[..., Path]] = {
    "food101": _food101,
    "ave": _ave,
    "mm-imdb": _mmimdb,
    "kinetics-sounds": _kinetics,
}


def convert(
    name: str, src: str | os.PathLike[str], out: str | os.PathLike[str], seed: int = 0, **options: object
) -> Path:
    """Convert the dataset ``name`` (a key of :data:`CONVERTERS`) from its native layout at ``src`` into ``out``;
    ``options``: kinetics-sounds takes ``classes`` (a class list file) and ``skip_missing``."""
    if name not in CONVERTERS:
        raise ValueError(f"no converter for {name!r} (known: {', '.join(CONVERTERS)})")
    if options and name != "kinetics-sounds":
        raise ValueError(f"{name} takes no {', '.join(sorted(options))} (kinetics-sounds only)")
    return CONVERTERS[name](src, out, seed=seed, **options)
