"""Shifted test sets (``python -m ume_mma.data build shifted``): one modality replaced, the rest byte-identical."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.builds import require_sources
from ume_mma.data import load_dataset
from ume_mma.data.__main__ import main as cli
from ume_mma.errors import DatasetFormatError, MissingDependencyError


@pytest.fixture(scope="module")
def av_bases(av_builds: dict[str, Path]) -> dict[str, Path]:
    """The session's small av-digits builds, when sox (the telephone line) and OpenCV's digits are there."""
    from ume_mma.data.handwriting import digits_png

    require_sources("sox")
    try:
        digits_png()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    return av_builds


@pytest.fixture(scope="module")
def emoji_base(emoji_build: Path) -> Path:
    from ume_mma.data.emoji_meta import load_cldr
    from ume_mma.data.shifted import openmoji_package

    try:
        openmoji_package(fetch=False)
        load_cldr("fr")
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    return emoji_build


def _rows(folder: Path) -> dict[str, object]:
    return {s.id: s for s in load_dataset(folder)}


def _same_except(base: Path, out: Path, shift: str) -> None:
    """Every base test row is there with its label, meta and other modalities byte for byte; ``shift`` differs."""
    base_rows = {s.id: s for s in load_dataset(base, split="test")}
    rows = _rows(out)
    assert rows and set(rows) <= set(base_rows)
    info = json.loads((out / "build_info.json").read_text())
    assert info["shift"] == shift and info["rows"] == len(rows) == info["base_rows"] - info["left_out"]
    assert load_dataset(out).splits == ["test"]
    changed = 0
    for key, s in rows.items():
        b = base_rows[key]
        assert s.label == b.label and s.group == b.group and s.meta["shifted"] == shift
        assert {k: v for k, v in s.meta.items() if k not in ("shifted", "shift_source")} == b.meta
        for m in ("image", "audio", "text"):
            if m == shift or getattr(b, m) is None:
                continue
            if m == "text":
                assert s.text == b.text
            else:
                assert s.path(m).read_bytes() == b.path(m).read_bytes()
        if shift == "text":
            changed += s.text != b.text
        else:
            changed += s.path(shift).read_bytes() != b.path(shift).read_bytes()
    assert changed >= 0.9 * len(rows)


def test_av_digits_image_shift_keeps_speech_and_label(av_bases: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "img"
    assert cli(["build", "shifted", str(out), "--base", str(av_bases["clean"]), "--shift", "image"]) == 0
    _same_except(av_bases["clean"], out, "image")
    px = np.asarray(Image.open(next((out / "shifted" / "image").glob("*.png"))))
    assert px.shape == (28, 28) and px.max() > 200  # MNIST format: white digit on black


def test_hard_image_shift_lies_in_the_bases_pca_subspace(av_bases: dict[str, Path], tmp_path: Path) -> None:
    """``hard`` images are 4-component reconstructions: the shifted ones must use the base's own components."""
    from ume_mma.data.av_digits import PCA_K, train_images
    from ume_mma.data.mnist import pca_project

    clean, hard = tmp_path / "clean", tmp_path / "hard"
    from ume_mma.data.shifted import build_shifted

    build_shifted(av_bases["clean"], clean, "image")
    build_shifted(av_bases["hard"], hard, "image")
    _same_except(av_bases["hard"], hard, "image")
    train = train_images(0)
    for folder, inside in ((hard, True), (clean, False)):
        x = np.stack([np.asarray(Image.open(s.path("image")), dtype=np.float64) / 255 for s in load_dataset(folder)])
        again, _ = pca_project(train, x, PCA_K)
        err = float(np.abs(again - x).mean())
        assert (err < 0.01) == inside, (folder.name, err)


def test_av_digits_audio_shift_is_telephone_speech(av_bases: dict[str, Path], tmp_path: Path) -> None:
    import soundfile as sf

    from ume_mma.data.shift import HELDOUT_SPEAKERS
    from ume_mma.data.shifted import build_shifted

    out = build_shifted(av_bases["hard"], tmp_path / "aud", "audio")
    _same_except(av_bases["hard"], out, "audio")
    for s in load_dataset(out):
        assert s.audio.split("/")[2] in HELDOUT_SPEAKERS  # shifted/audio/<speaker>/...
        x, sr = sf.read(s.path("audio"))
        assert sr == 8000 and len(x) == 8000 and np.abs(x).max() > 0.05


def test_emoji_image_shift_is_a_third_style(emoji_base: Path, tmp_path: Path) -> None:
    from ume_mma.data.shifted import build_shifted

    out = build_shifted(emoji_base, tmp_path / "img", "image")
    _same_except(emoji_base, out, "image")
    for s in load_dataset(out):
        with Image.open(s.path("image")) as im:
            assert im.size == (64, 64) and im.mode == "RGB"
            assert np.asarray(im).std() > 5  # a drawing, not a blank canvas


def test_emoji_text_shift_is_french_without_the_name(emoji_base: Path, tmp_path: Path) -> None:
    from ume_mma.data.shifted import build_shifted

    out = build_shifted(emoji_base, tmp_path / "txt", "text")
    rows = list(load_dataset(out))
    assert len(rows) == len(load_dataset(emoji_base, split="test"))
    grinning = [s for s in rows if s.meta["unified"] == "1F600"]
    if grinning:  # "visage rieur": its French keywords minus the name's words
        assert "rieur" not in grinning[0].text and "visage" not in grinning[0].text
    en = {s.id: s.text for s in load_dataset(emoji_base, split="test")}
    assert sum(s.text != en[s.id] for s in rows) >= 0.5 * len(rows)


def test_bad_requests_are_refused_in_words(av_bases: dict[str, Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "x"
    assert cli(["build", "shifted", str(out), "--base", str(av_bases["clean"]), "--shift", "text"]) == 1
    assert "not 'text'" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit):
        cli(["build", "shifted", str(out), "--shift", "image"])  # no --base
    with pytest.raises(SystemExit):
        cli(["build", "av-digits", str(out), "--base", str(av_bases["clean"])])
    bare = tmp_path / "bare"
    shutil.copytree(av_bases["clean"], bare)
    (bare / "build_info.json").unlink()
    from ume_mma.data.shifted import build_shifted

    with pytest.raises(DatasetFormatError, match="build_info.json"):
        build_shifted(bare, out, "image")
    assert not out.exists()


# New sources (``--source``): printed digits, Festival voices, German and Spanish keywords.


def _base_pixels(folder: Path) -> dict[str, bytes]:
    return {s.id: s.path("image").read_bytes() for s in load_dataset(folder, split="test")}


@pytest.mark.parametrize("setting", ["clean", "hard"])
def test_av_digits_image_from_fonts(av_bases: dict[str, Path], tmp_path: Path, setting: str) -> None:
    """Printed digits: only the image changes, MNIST format, several fonts, none the same as the opencv source."""
    from ume_mma.data.printed import font_files

    try:
        font_files()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    out = tmp_path / "fonts"
    base = av_bases[setting]
    assert cli(["build", "shifted", str(out), "--base", str(base), "--shift", "image", "--source", "fonts"]) == 0
    _same_except(base, out, "image")
    info = json.loads((out / "build_info.json").read_text())
    assert info["source_name"] == "fonts" and "fonts-urw-base35" in info["source"]
    rows = list(load_dataset(out))
    fonts = {Path(s.image).stem.rsplit("_", 2)[0] for s in rows}
    assert len(fonts) >= 5, fonts
    for s in rows:
        assert Path(s.image).stem.rsplit("_", 2)[1] == s.label  # the file drawn is the row's digit
        px = np.asarray(Image.open(s.path("image")), dtype=np.float64) / 255
        assert px.shape == (28, 28)
        if setting == "clean":  # white on black, centred by mass like MNIST (+-1 px move, +-1 rounding)
            frame = np.concatenate([px[:2].ravel(), px[-2:].ravel(), px[:, :2].ravel(), px[:, -2:].ravel()])
            assert frame.mean() < 0.08 and px.max() == 1.0
            cy, cx = (np.indices(px.shape) * px).sum((1, 2)) / px.sum()
            assert abs(cy - 13.5) <= 2.5 and abs(cx - 13.5) <= 2.5
    opencv = tmp_path / "opencv"
    from ume_mma.data.shifted import build_shifted

    build_shifted(base, opencv, "image")  # the default source is unchanged, and not the fonts
    assert json.loads((opencv / "build_info.json").read_text())["source_name"] == "opencv"
    other = {s.id: s.path("image").read_bytes() for s in load_dataset(opencv)}
    assert sum(other[s.id] != s.path("image").read_bytes() for s in rows) >= 0.9 * len(rows)
    if setting == "hard":  # the base's own 4 principal components, as the opencv path
        from ume_mma.data.av_digits import PCA_K, train_images
        from ume_mma.data.mnist import pca_project

        x = np.stack([np.asarray(Image.open(s.path("image")), dtype=np.float64) / 255 for s in rows])
        again, _ = pca_project(train_images(0), x, PCA_K)
        assert float(np.abs(again - x).mean()) < 0.01


def test_printed_digits_are_readable_by_their_label() -> None:
    """Each take is nearer (on average) to the other fonts' takes of its digit than to those of other digits."""
    from ume_mma.data.printed import font_files, printed_pool

    try:
        font_files()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    pool = printed_pool(0, takes=1)
    x = np.stack([p[0].ravel() for p in pool])
    y = np.array([p[1] for p in pool])
    means = np.stack([x[y == d].mean(0) for d in range(10)])
    nearest = np.argmin(((x[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (nearest == y).mean() > 0.8
    assert len({p[2] for p in pool}) >= 20 and len(pool) == 10 * len({p[2] for p in pool})


def test_av_digits_audio_from_festival(av_bases: dict[str, Path], tmp_path: Path) -> None:
    """Festival voices: only the audio changes; 1 s at 8 kHz of speech; voices no build here uses."""
    import soundfile as sf

    from ume_mma.data.festival import VOICES, require_voices
    from ume_mma.data.shift import HELDOUT_SPEAKERS, POOL_SPEAKERS
    from ume_mma.data.speech import ESPEAK_LANGS, FLITE_VOICES, TEST_SPEAKERS

    try:
        require_voices()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    heard = {*HELDOUT_SPEAKERS, *POOL_SPEAKERS, *TEST_SPEAKERS, *FLITE_VOICES, *ESPEAK_LANGS, "kal_diphone"}
    assert not {v.split("_")[0] for v in VOICES} & {v.split("_")[0] for v in heard}
    base = av_bases["clean"]
    out = tmp_path / "fest"
    assert cli(["build", "shifted", str(out), "--base", str(base), "--shift", "audio", "--source", "festival"]) == 0
    _same_except(base, out, "audio")
    info = json.loads((out / "build_info.json").read_text())
    assert info["source_name"] == "festival" and info["left_out"] == 0
    rows = list(load_dataset(out))
    assert {s.audio.split("/")[2].removeprefix("festival_") for s in rows} <= set(VOICES)
    assert len({s.audio.split("/")[2] for s in rows}) >= 3
    base_voices = {s.meta.get("speaker") or s.group for s in load_dataset(base, split="test")}
    assert not base_voices & {s.audio.split("/")[2] for s in rows}
    for s in rows:
        assert Path(s.audio).stem.split("_")[0] == s.label  # the digit spoken is the row's label
        x, sr = sf.read(s.path("audio"))
        assert sr == 8000 and len(x) == 8000 and np.abs(x).max() > 0.05


def test_festival_takes_differ_and_follow_the_seed() -> None:
    from ume_mma.data.festival import clip_pool

    a, b = clip_pool(0), clip_pool(1)
    assert a == clip_pool(0) and a != b and len(a) == 4 * 10 * 4
    assert len({c.stretch for c in a}) > 100 and all(0.85 <= c.stretch <= 1.25 for c in a)


@pytest.mark.parametrize("lang", ["de", "es"])
def test_emoji_text_in_another_language(emoji_base: Path, tmp_path: Path, lang: str) -> None:
    """German / Spanish CLDR keywords without the emoji's names; only the text changes, and not to French."""
    from ume_mma.data.emoji_meta import load_cldr
    from ume_mma.data.shifted import build_shifted

    out = build_shifted(emoji_base, tmp_path / lang, "text", source=lang)
    info = json.loads((out / "build_info.json").read_text())
    assert info["source_name"] == lang and f"{lang}.xml" in info["source"]
    rows = list(load_dataset(out))
    base = {s.id: s for s in load_dataset(emoji_base, split="test")}
    assert len(rows) == len(base)
    for s in rows:
        b = base[s.id]
        assert s.label == b.label and s.group == b.group
        assert s.path("image").read_bytes() == b.path("image").read_bytes()
        assert {k: v for k, v in s.meta.items() if k not in ("shifted", "shift_source")} == b.meta
    assert sum(s.text != base[s.id].text for s in rows) >= 0.5 * len(rows)
    fr = {s.id: s.text for s in load_dataset(build_shifted(emoji_base, tmp_path / "fr", "text"))}
    assert sum(s.text != fr[s.id] for s in rows) >= 0.5 * len(rows)
    keywords, names = load_cldr(lang)
    grinning = [s for s in rows if s.meta["unified"] == "1F600"]
    if grinning:  # its keywords in that language, minus the words of its name there
        name = names["\U0001f600"].lower().split()
        assert grinning[0].text and not any(w in grinning[0].text.lower().split() for w in name)


def test_unknown_source_is_refused_in_words(av_bases: dict[str, Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "x"
    args = ["build", "shifted", str(out), "--base", str(av_bases["clean"]), "--shift", "image", "--source", "de"]
    assert cli(args) == 1
    assert "opencv, fonts, not 'de'" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit):
        cli(["build", "av-digits", str(out), "--source", "fonts"])
