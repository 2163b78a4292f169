"""Session fixtures: small builds of the real benchmarks, shared by the data and shifted-set tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ume_mma.errors import MissingDependencyError

LIMITS = {"train": 30, "val": 20, "test": 20}


def require_sources(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"system package for '{tool}' is not installed (apt-get install {tool})")


@pytest.fixture(scope="session")
def av_builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """av-digits ``clean`` and ``hard``, :data:`LIMITS` rows per split."""
    require_sources("espeak-ng", "flite")
    from ume_mma.data.av_digits import build_av_digits
    from ume_mma.data.mnist import mnist_dir
    from ume_mma.data.speech import split_speakers

    try:
        mnist_dir(fetch=False)
        split_speakers()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("av")
    return {
        s: build_av_digits(root / s, setting=s, seed=0, limit_per_split=LIMITS, progress=False)
        for s in ("clean", "hard")
    }


@pytest.fixture(scope="session")
def emoji_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """emoji-vl with 150 emoji."""
    from ume_mma.data.emoji_meta import load_cldr
    from ume_mma.data.emoji_vl import build_emoji_vl, emoji_package

    try:
        emoji_package("twitter", fetch=False)
        emoji_package("google", fetch=False)
        load_cldr()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    return build_emoji_vl(tmp_path_factory.mktemp("emoji") / "vl", seed=0, limit=150, progress=False)


@pytest.fixture(scope="session")
def spoken_icons_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """spoken-icons with 3 takes per voice and word (72 rows: 24 per split)."""
    from ume_mma.data.spoken_icons import build_spoken_icons, require_sources

    try:
        require_sources()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    return build_spoken_icons(tmp_path_factory.mktemp("spoken-icons") / "spoken-icons", seed=0, takes=3)
