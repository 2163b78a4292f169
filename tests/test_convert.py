"""The paper's datasets from their native layouts (``python -m ume_mma.data convert``): each converter on a tiny
synthetic replica of the layout (real JPEGs, real MP4s with a soundtrack) -> ``load_dataset`` validates -> a
training run of a few steps on scratch encoders; bad input is refused in words and writes nothing."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.media import make_video
from tests.tiny import digit_image
from ume_mma.data.__main__ import main
from ume_mma.data.convert import CONVERTERS, MISSING_RATE, convert
from ume_mma.data.format import load_dataset
from ume_mma.data.imports.staging import ImportRefused
from ume_mma.registry import ENCODERS, EncoderSpec, get_spec, register_encoder
from ume_mma.train import run
from ume_mma.trainconfig import load_config

ROOT = Path(__file__).resolve().parents[1]
CLASSES = {"a": "apple_pie", "b": "ramen", "c": "sushi"}  # tests.tiny's labels -> dataset-like names
WORDS = {"a": "apple pie with cinnamon", "b": "ramen noodle soup", "c": "sushi roll with salmon"}


def _jpeg(path: Path, key: str, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    digit_image(key, rng).convert("RGB").save(path, "JPEG")


def food101_replica(root: Path, per_class: dict[str, int] | None = None, header: bool = False) -> Path:
    """images/{train,test}/<class>/<class>_<i>.jpg + texts/{train,test}_titles.csv (no header, or one)."""
    rng = np.random.default_rng(0)
    for split, n in (per_class or {"train": 9, "test": 3}).items():
        (root / "texts").mkdir(parents=True, exist_ok=True)
        with (root / "texts" / f"{split}_titles.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            if header:
                writer.writerow(["image_path", "text", "food"])
            for key, cls in CLASSES.items():
                for i in range(n):
                    name = f"{cls}_{i}.jpg"
                    _jpeg(root / "images" / split / cls / name, key, rng)
                    writer.writerow([name, f"{WORDS[key]}, recipe {i}", cls])
    return root


def ave_replica(root: Path) -> Path:
    """Annotations.txt + {train,val,test}Set.txt (Category&VideoID&Quality&StartTime&EndTime) + AVE/<id>.mp4;
    the category is heard (tone) and seen (frame size)."""
    events = {"Church bell": 500.0, "Dog barking": 1500.0}
    rows: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    (root / "AVE").mkdir(parents=True)
    for c, (category, hz) in enumerate(events.items()):
        for split, n in (("train", 4), ("val", 2), ("test", 2)):
            for i in range(n):
                vid = f"v{c}{split[:2]}{i:02d}"
                make_video(root / "AVE" / f"{vid}.mp4", seconds=1.0, fps=4, tone_hz=hz, size=(32 + 32 * c, 32))
                rows[split].append(f"{category}&{vid}&good&{i % 3}&{i % 3 + 5}")
    header = "Category&VideoID&Quality&StartTime&EndTime"
    (root / "Annotations.txt").write_text("\n".join([header, *(r for v in rows.values() for r in v)]) + "\n")
    for split, name in (("train", "trainSet.txt"), ("val", "valSet.txt"), ("test", "testSet.txt")):
        (root / name).write_text("\n".join(rows[split]) + "\n")
    return root


def mmimdb_replica(root: Path) -> Path:
    """split.json {train, dev, test} + dataset/<id>.json (genres, plot) + dataset/<id>.jpeg."""
    rng = np.random.default_rng(1)
    genres = {"a": ["Drama", "Romance"], "b": ["Comedy"], "c": ["Horror", "Thriller", "Drama"]}
    split: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    n = 0
    for name, count in (("train", 8), ("dev", 2), ("test", 3)):
        for key in genres:
            for _ in range(count):
                mid = f"{n:07d}"
                n += 1
                _jpeg(root / "dataset" / f"{mid}.jpeg", key, rng)
                info = {"genres": genres[key], "plot": [f"a story of {WORDS[key]}", "another summary"], "title": mid}
                (root / "dataset" / f"{mid}.json").write_text(json.dumps(info))
                split[name].append(mid)
    (root / "split.json").write_text(json.dumps(split))
    return root


def kinetics_replica(root: Path) -> Path:
    """train.csv + validate.csv (label,youtube_id,time_start,time_end,split,is_cc) and the downloader's clips
    <split>/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4; a class outside Kinetics-Sounds (yoga) has rows but
    no clips."""
    sounds = {"playing bagpipes": 600.0, "playing drums": 2000.0}
    for name, split, n in (("train.csv", "train", 5), ("validate.csv", "val", 2)):
        lines = ["label,youtube_id,time_start,time_end,split,is_cc"]
        for c, (label, hz) in enumerate(sounds.items()):
            for i in range(n):
                yid, start = f"yt{c}{split[0]}{i:03d}", 10 * i
                lines.append(f"{label},{yid},{start},{start + 10},{split},0")
                folder = root / split / label
                folder.mkdir(parents=True, exist_ok=True)
                make_video(folder / f"{yid}_{start:06d}_{start + 10:06d}.mp4", seconds=1.0, fps=4, tone_hz=hz,
                           size=(32 + 32 * c, 32))  # fmt: skip
        lines.append(f"yoga,ytyoga{split},0,10,{split},0")
        (root / name).write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("# Kinetics-Sounds (a subset, for the test)\nplaying bagpipes\nplaying drums\n")
    return root


TINY_VIDEO = EncoderSpec(
    name="test.video-scratch",
    modality="video",
    source="video",
    embed_dim=get_spec("scratch.image-cnn-rgb").embed_dim,
    options={"image_encoder": "scratch.image-cnn-rgb", "num_frames": 2, "pooling": "mean"},
    description="2 frames through the scratch RGB CNN (tests only)",
)


def _train(tmp: Path, data: Path, encoders: dict[str, str]) -> dict:
    """A few epochs on ``data``; the test-only video encoder is registered for the run and removed after (the
    registry is global: other tests list every registered encoder)."""
    added = TINY_VIDEO.name not in ENCODERS
    if added:
        register_encoder(TINY_VIDEO)
    try:
        over = {"epochs": 3, "mma_epochs": 2, "batch_size": 8}
        cfg = load_config(None, [f"{k}={v}" for k, v in over.items()], task="convert", data=str(data),
                          out=str(tmp / "run"), cache_dir=str(tmp / "cache"), encoders=encoders)  # fmt: skip
        return run(cfg)
    finally:
        if added:
            ENCODERS.pop(TINY_VIDEO.name, None)


def _trained(metrics: dict, modalities: list[str]) -> None:
    test = metrics["test"]
    assert {"ume", "mma", "naive"} <= set(test)
    for m in modalities:
        assert f"without_{m}" in test["mma"]["accuracy"]
    assert 0.0 <= test["mma"]["accuracy"]["missing_rate_0.5"] <= 1.0


def test_food101_from_its_native_layout_validates_and_trains(tmp_path):
    out = convert("food101", food101_replica(tmp_path / "upmc"), tmp_path / "out")
    ds = load_dataset(out)
    assert ds.modalities == ["image", "text"] and ds.labels == sorted(CLASSES.values())
    assert ds.splits == ["test", "train", "val"]  # val cut from train: the dataset ships train and test
    assert len(ds.split("test")) == 9 and len(ds.split("train")) + len(ds.split("val")) == 27
    sample = next(s for s in ds if s.id == "test/ramen/ramen_1.jpg")
    assert sample.text == "ramen noodle soup, recipe 1" and sample.path("image").is_file()
    _trained(_train(tmp_path, out, {"image": "scratch.image-cnn-rgb", "text": "scratch.hashed-text"}),
             ["image", "text"])  # fmt: skip


def test_ave_from_its_native_layout_validates_and_trains(tmp_path):
    out = convert("ave", ave_replica(tmp_path / "AVE_Dataset"), tmp_path / "out")
    ds = load_dataset(out)
    assert ds.modalities == ["audio", "video"] and ds.labels == ["Church bell", "Dog barking"]
    assert {s: len(ds.split(s)) for s in ds.splits} == {"train": 8, "val": 4, "test": 4}
    s = next(s for s in ds if s.id == "v1te01")
    assert s.video == s.audio and s.meta == {"quality": "good", "event_s": [1.0, 6.0]}
    _trained(_train(tmp_path, out, {"video": TINY_VIDEO.name, "audio": "scratch.logmel-cnn"}), ["audio", "video"])


def test_mmimdb_from_its_native_layout_keeps_the_first_genre(tmp_path):
    out = convert("mm-imdb", mmimdb_replica(tmp_path / "mmimdb"), tmp_path / "out")
    ds = load_dataset(out)
    assert ds.modalities == ["image", "text"] and ds.labels == ["Comedy", "Drama", "Horror"]
    assert {s: len(ds.split(s)) for s in ds.splits} == {"train": 24, "val": 6, "test": 9}
    horror = [s for s in ds if s.label == "Horror"]
    assert all(s.meta["genres"] == ["Horror", "Thriller", "Drama"] for s in horror)
    assert horror[0].text.startswith("a story of sushi")
    _trained(_train(tmp_path, out, {"image": "scratch.image-cnn-rgb", "text": "scratch.hashed-text"}),
             ["image", "text"])  # fmt: skip


def test_kinetics_sounds_keeps_the_listed_classes_and_trains(tmp_path):
    src = kinetics_replica(tmp_path / "kinetics400")
    out = convert("kinetics-sounds", src, tmp_path / "out", classes=src / "classes.txt")
    ds = load_dataset(out)
    assert ds.labels == ["playing bagpipes", "playing drums"] and ds.modalities == ["audio", "video"]
    assert len(ds.split("val")) == 4 and len(ds) == 14  # yoga left out; test cut from train (no test.csv)
    assert ds.splits == ["test", "train", "val"]
    s = next(s for s in ds if s.id == "yt1v001_000010_000020")
    assert s.video == s.audio and s.group == "yt1v001" and s.split == "val"
    _trained(_train(tmp_path, out, {"video": TINY_VIDEO.name, "audio": "scratch.logmel-cnn"}), ["audio", "video"])


def test_kinetics_sounds_refuses_a_missing_clip_unless_told_to_skip_it(tmp_path, capsys):
    src = kinetics_replica(tmp_path / "src")
    (src / "train" / "playing drums" / "yt1t002_000020_000030.mp4").unlink()
    classes = src / "classes.txt"
    with pytest.raises(ImportRefused, match=r"train.csv line 9: clip yt1t002_000020_000030.mp4 is listed but not"):
        convert("kinetics-sounds", src, tmp_path / "out", classes=classes)
    assert not (tmp_path / "out").exists()
    assert main(["convert", "kinetics-sounds", str(src), str(tmp_path / "out"), "--classes", str(classes),
                 "--skip-missing"]) == 0  # fmt: skip
    assert "13 samples, 2 labels" in capsys.readouterr().out
    (tmp_path / "typo.txt").write_text("playing bagpipes\nplaying drum\n")
    with pytest.raises(ImportRefused, match=r"classes \['playing drum'\] are in the class list but in no row"):
        convert("kinetics-sounds", src, tmp_path / "typo", classes=tmp_path / "typo.txt")
    with pytest.raises(ImportRefused, match="kinetics-sounds needs --classes FILE"):
        convert("kinetics-sounds", src, tmp_path / "typo")
    with pytest.raises(SystemExit) as usage:
        main(["convert", "ave", str(src), str(tmp_path / "x"), "--classes", str(classes)])
    assert (
        usage.value.code == 2
        and "--classes and --skip-missing apply to kinetics-sounds only" in capsys.readouterr().err
    )


def _break_food101(root: Path) -> None:
    (root / "images" / "test" / "ramen" / "ramen_2.jpg").unlink()


def _break_ave(root: Path) -> None:
    (root / "AVE" / "v0va01.mp4").unlink()


def _break_mmimdb(root: Path) -> None:
    (root / "dataset" / "0000003.jpeg").unlink()


@pytest.mark.parametrize(
    "name, replica, damage, message",
    [
        ("food101", food101_replica, _break_food101, "images/test/ramen/ramen_2.jpg is listed but the file is missing"),
        ("ave", ave_replica, _break_ave, "valSet.txt line 2: AVE/v0va01.mp4 is listed but the file is missing"),
        ("mm-imdb", mmimdb_replica, _break_mmimdb, "dataset/0000003.jpeg is listed but the file is missing"),
    ],
)
def test_a_missing_file_is_refused_and_writes_nothing(tmp_path, name, replica, damage, message):
    src = replica(tmp_path / "src")
    damage(src)
    with pytest.raises(ImportRefused, match=re.escape(message)):
        convert(name, src, tmp_path / "out")
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["src"]


def test_a_layout_that_is_not_the_datasets_is_refused_in_words(tmp_path, capsys):
    src = mmimdb_replica(tmp_path / "mmimdb")
    with pytest.raises(ImportRefused, match=r"not the UPMC Food-101 layout: no images/train, images/test"):
        convert("food101", src, tmp_path / "out")
    with pytest.raises(ImportRefused, match=r"not the AVE layout: no Annotations.txt"):
        convert("ave", src, tmp_path / "out")
    (src / "split.json").write_text(json.dumps({"train": [], "val": [], "test": []}))
    with pytest.raises(ImportRefused, match=r"split.json: expected the keys train, dev, test, got \['test', 'train'"):
        convert("mm-imdb", src, tmp_path / "out")
    assert main(["convert", "ave", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 1
    assert "not a folder (expected the AVE layout" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_bad_ave_row_is_refused(tmp_path):
    src = ave_replica(tmp_path / "src")
    (src / "testSet.txt").write_text("Church bell,v0te00,good,0,5\n")
    with pytest.raises(ImportRefused, match=r"testSet.txt line 1: expected Category&VideoID&Quality"):
        convert("ave", src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_cli_converts_and_prints_the_counts(tmp_path, capsys):
    src = food101_replica(tmp_path / "upmc", {"train": 3, "test": 1}, header=True)  # a header row is skipped
    assert main(["convert", "food101", str(src), str(tmp_path / "out")]) == 0
    said = capsys.readouterr().out
    assert "converted food101 into" in said and "12 samples, 3 labels, modalities: image, text" in said


def test_the_recipes_readme_covers_every_converter_and_states_the_protocol():
    readme = (ROOT / "configs" / "recipes" / "README.md").read_text()
    training = " ".join((ROOT / "docs" / "training.md").read_text().split())
    assert MISSING_RATE in training  # the protocol in the words of our evaluation
    assert MISSING_RATE in " ".join(readme.split())
    for name in CONVERTERS:
        assert f"python -m ume_mma.data convert {name} " in readme
    recipes = sorted((ROOT / "configs" / "recipes").glob("*.toml"))
    assert {r.stem for r in recipes} == set(CONVERTERS)  # every recipe has its converter
    for recipe in recipes:
        data = load_config(recipe).data  # the folder the recipe reads is the one the convert command writes
        assert re.search(rf"python -m ume_mma\.data convert {recipe.stem} \S+ {re.escape(data)}[ `]", readme)
        assert f"python -m ume_mma.train configs/recipes/{recipe.name}" in readme
    docs = (ROOT / "docs" / "import.md").read_text()
    assert f"python -m ume_mma.data convert {'|'.join(CONVERTERS)} SRC OUT" in docs
    # AV-MNIST: our AV-MNIST-style benchmark, the folder its config reads
    hard = load_config(ROOT / "configs" / "av-digits-hard.toml")
    assert f"build av-digits {hard.data} --setting hard" in readme and "configs/av-digits-hard.toml" in readme
