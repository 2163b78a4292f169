"""Importers into the dataset format (``python -m ume_mma.data import folder|csv|hf``) on real files: what they
write decodes to the very pixels and samples given; bad input is refused in words and writes nothing."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from tests.tiny import digit_image, make_tiny_dataset, tone_clip
from ume_mma.data.__main__ import main
from ume_mma.data.format import load_dataset
from ume_mma.data.imports.folders import import_csv, import_folder
from ume_mma.data.imports.hf import import_hf
from ume_mma.data.imports.staging import ImportRefused

datasets = pytest.importorskip("datasets")


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


def _nothing_left(parent: Path, name: str) -> None:
    assert not (parent / name).exists(), "no output folder"
    assert not [p for p in parent.iterdir() if p.name.startswith(f".{name}.")], "no staging folder left"


def make_class_folders(root: Path, splits: bool = True) -> dict[str, Path]:
    """root/[split/]<label>/<n>.png + .wav (+ .txt for label a): real PNGs and WAVs. Returns id -> png path."""
    rng, pngs = np.random.default_rng(0), {}
    for split in ("train", "validation", "test") if splits else (None,):
        for label in ("a", "b", "c"):
            folder = root / split / label if split else root / label
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(2 if split != "train" else 3):
                stem = f"{split or 'x'}{n}"
                digit_image(label, rng).save(folder / f"{stem}.png")
                sf.write(folder / f"{stem}.wav", tone_clip(label, rng), 8000)
                if label == "a":
                    (folder / f"{stem}.txt").write_text("apple apricot\n")
                pngs[f"{label}/{stem}"] = folder / f"{stem}.png"
    return pngs


def test_a_folder_of_class_subfolders_with_splits(tmp_path):
    pngs = make_class_folders(tmp_path / "src")
    out = import_folder(tmp_path / "src", tmp_path / "out")
    ds = load_dataset(out)
    assert len(ds) == 21 and ds.labels == ["a", "b", "c"] and ds.modalities == ["audio", "image", "text"]
    assert {s.split for s in ds} == {"train", "val", "test"} and len(ds.split("train")) == 9
    for s in ds:
        assert np.array_equal(_pixels(s.path("image")), _pixels(pngs[s.id])), s.id  # the very pixels
        original = pngs[s.id].with_suffix(".wav")
        assert np.array_equal(sf.read(s.path("audio"))[0], sf.read(original)[0])
        assert (s.text == "apple apricot") == (s.label == "a") and (s.text is None) == (s.label != "a")


def test_a_folder_without_split_folders_is_split_by_a_seeded_hash(tmp_path):
    make_class_folders(tmp_path / "src", splits=False)
    a = load_dataset(import_folder(tmp_path / "src", tmp_path / "a", seed=1))
    b = load_dataset(import_folder(tmp_path / "src", tmp_path / "b", seed=1))
    assert [(s.id, s.split) for s in a] == [(s.id, s.split) for s in b] and len(a) == 6


def test_bad_folders_are_refused_and_write_nothing(tmp_path):
    make_class_folders(tmp_path / "src", splits=False)
    (tmp_path / "src" / "b" / "notes.md").write_text("# not media")
    with pytest.raises(ImportRefused, match=r"notes.md: not an image, audio, video or .txt file"):
        import_folder(tmp_path / "src", tmp_path / "out")
    _nothing_left(tmp_path, "out")
    with pytest.raises(ImportRefused, match="no class subfolders"):
        import_folder(tmp_path / "src" / "a", tmp_path / "out")
    _nothing_left(tmp_path, "out")


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_a_csv_of_paths_and_labels(tmp_path):
    data = make_tiny_dataset(tmp_path / "tiny", {"train": 3, "val": 1, "test": 1})
    rows = [json.loads(x) for x in (data / "metadata.jsonl").read_text().splitlines()]
    table = [{"file": r["image"], "sound": r["audio"], "class": r["label"], "split": r["split"], "speaker": "s1"}
             for r in rows]  # fmt: skip
    text = "\n".join(",".join(x) for x in [["image", "audio", "kind", "split", "speaker"],
                                            *([t["file"], t["sound"], t["class"], t["split"], t["speaker"]]
                                              for t in table)]) + "\n"  # fmt: skip
    (data / "list.csv").write_text(text)
    out = import_csv(data / "list.csv", tmp_path / "out", label="kind")
    ds = load_dataset(out)
    assert len(ds) == 15 and ds.labels == ["a", "b", "c"] and [s.split for s in ds] == [r["split"] for r in rows]
    assert all(s.meta == {"speaker": "s1"} for s in ds)  # other columns go under meta
    for s, r in zip(ds, rows, strict=True):
        assert np.array_equal(_pixels(s.path("image")), _pixels(data / r["image"]))


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing file", r"list.csv line 3: .*images/nope.png: file does not exist"),
        ("no label column", r"no label column 'label'; the columns are \['image', 'audio', 'kind'\]"),
        ("audio in the image column", r"list.csv line 2: .*\.wav is not a readable image"),
    ],
)
def test_bad_csvs_are_refused_in_words_and_write_nothing(tmp_path, case, message):
    data = make_tiny_dataset(tmp_path / "tiny", {"train": 2})
    rows = [json.loads(x) for x in (data / "metadata.jsonl").read_text().splitlines()]
    table = [{"image": r["image"], "audio": r["audio"], "label": r["label"]} for r in rows]
    if case == "missing file":
        table[1]["image"] = "images/nope.png"
    elif case == "no label column":
        table = [{"image": t["image"], "audio": t["audio"], "kind": t["label"]} for t in table]
    else:
        table[0]["image"] = table[0]["audio"]
    _write_csv(data / "list.csv", table)
    with pytest.raises(ImportRefused, match=message):
        import_csv(data / "list.csv", tmp_path / "out")
    _nothing_left(tmp_path, "out")


def _wav_bytes(label: str, rng) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, tone_clip(label, rng), 8000, format="WAV")
    return buf.getvalue()


def hf_dataset(n: int = 4, names: tuple[str, ...] = ("a", "b", "c")):
    """A DatasetDict with ``img`` (Image), ``sound`` (Audio, as stored bytes), ``caption`` and ``fine`` (ClassLabel),
    built with the datasets library from real PNGs and WAVs."""
    import pyarrow as pa

    rng = np.random.default_rng(1)
    files = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    features = datasets.Features({"img": datasets.Image(), "sound": datasets.Audio(), "caption": datasets.Value(
        "string"), "fine": datasets.ClassLabel(names=list(names))})  # fmt: skip
    parts = {}
    for split in ("train", "validation", "test"):
        labels = [names[i % len(names)] for i in range(n * len(names))]
        pngs = []
        for label in labels:
            buf = io.BytesIO()
            digit_image(label, rng).save(buf, format="PNG")
            pngs.append({"bytes": buf.getvalue(), "path": f"{label}.png"})
        table = pa.table({
            "img": pa.array(pngs, files),
            "sound": pa.array([{"bytes": _wav_bytes(x, rng), "path": f"{x}.wav"} for x in labels], files),
            "caption": pa.array([f"a {x}" for x in labels]),
            "fine": pa.array([names.index(x) for x in labels], pa.int64()),
        })  # fmt: skip
        parts[split] = datasets.Dataset(table.cast(features.arrow_schema), info=datasets.DatasetInfo(features=features))
    return datasets.DatasetDict(parts)


def test_a_hf_dataset_from_save_to_disk_and_from_parquet(tmp_path):
    dd = hf_dataset()
    dd.save_to_disk(str(tmp_path / "disk"))
    out = import_hf(str(tmp_path / "disk"), tmp_path / "out", {"text": "caption"})
    ds = load_dataset(out)
    assert ds.labels == ["a", "b", "c"] and ds.modalities == ["audio", "image", "text"]  # mapped by feature type
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [12, 12, 12]  # validation -> val
    train = ds.split("train").samples
    raw = dd["train"].cast_column("sound", datasets.Audio(decode=False))  # (decoding audio needs torchcodec)
    for s, row in zip(train, raw, strict=True):  # Image decodes in datasets (PIL): the very pixels
        assert np.array_equal(_pixels(s.path("image")), np.asarray(row["img"].convert("L")))
        assert s.label == dd["train"].features["fine"].int2str(row["fine"]) and s.text == row["caption"]
    assert all(s.path("audio").read_bytes() == r["sound"]["bytes"] for s, r in zip(train, raw, strict=True))
    dd["train"].to_parquet(str(tmp_path / "one.parquet"))
    flat = load_dataset(import_hf(str(tmp_path / "one.parquet"), tmp_path / "flat", seed=3))
    assert len(flat) == 12 and set(flat.splits) <= {"train", "val", "test"} and "text" not in flat.modalities


def test_bad_hf_datasets_are_refused_in_words_and_write_nothing(tmp_path):
    dd = hf_dataset(n=1)
    dd.save_to_disk(str(tmp_path / "disk"))
    cases = [
        ({"label": "kind"}, r"no column 'kind' for label; the columns are \['img', 'sound', 'caption', 'fine'\]"),
        ({"image": "sound"}, "column 'sound' holds Audio data, not image"),
    ]
    for columns, message in cases:
        with pytest.raises(ImportRefused, match=message):
            import_hf(str(tmp_path / "disk"), tmp_path / "out", columns)
        _nothing_left(tmp_path, "out")
    plain = dd.remove_columns("fine")
    plain.save_to_disk(str(tmp_path / "nolabel"))
    with pytest.raises(ImportRefused, match=r"no label column \(named 'label', or one ClassLabel column\)"):
        import_hf(str(tmp_path / "nolabel"), tmp_path / "out")
    bytes_col = dd.cast_column("sound", datasets.Audio(decode=False))
    bytes_col = bytes_col.map(lambda r: {"image": r["sound"]["bytes"]}).remove_columns(["img", "sound"])
    bytes_col.save_to_disk(str(tmp_path / "hidden"))  # a plain bytes column named image, holding WAVs
    with pytest.raises(ImportRefused, match=r"row 0: the image bytes is not a readable image"):
        import_hf(str(tmp_path / "hidden"), tmp_path / "out")
    _nothing_left(tmp_path, "out")
    with pytest.raises(ImportRefused, match="no such folder or file, and the Hub is off"):
        import_hf(str(tmp_path / "nowhere"), tmp_path / "out")
    _nothing_left(tmp_path, "out")


def test_the_cli_imports_and_refuses_in_one_line(tmp_path, capsys):
    make_class_folders(tmp_path / "src", splits=False)
    assert main(["import", "folder", str(tmp_path / "src"), str(tmp_path / "out")]) == 0
    said = capsys.readouterr().out
    assert f"imported {tmp_path / 'out'}" in said and "6 samples, 3 labels, modalities: audio, image, text" in said
    assert main(["import", "csv", str(tmp_path / "none.csv"), str(tmp_path / "o2")]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / 'none.csv'}: no such CSV file\n"
    _nothing_left(tmp_path, "o2")


def test_split_names_and_the_seeded_split():
    from ume_mma.data.imports.staging import hashed_split, split_name

    assert [split_name(n, "x") for n in ("train", "Validation", "valid", "dev", "val", "test", None, "")] == [
        "train", "val", "val", "val", "val", "test", None, None]  # fmt: skip
    with pytest.raises(ImportRefused, match="x: split 'holdout' is not one of"):
        split_name("holdout", "x")
    splits = [hashed_split(f"id-{i}", seed=0) for i in range(2000)]
    shares = [splits.count(s) / len(splits) for s in ("train", "val", "test")]
    assert shares == pytest.approx([0.8, 0.1, 0.1], abs=0.03) and hashed_split("id-1", 0) == splits[1]


def test_a_source_without_a_validation_split_gets_one_from_its_train_rows(tmp_path):
    dd = hf_dataset(n=12)
    del dd["validation"]  # train and test only, as many datasets come
    dd.save_to_disk(str(tmp_path / "disk"))
    ds = load_dataset(import_hf(str(tmp_path / "disk"), tmp_path / "out"))
    assert len(ds.split("test")) == 36, "the source's test split is kept as it is"
    train, val = len(ds.split("train")), len(ds.split("val"))
    assert train + val == 36 and 1 <= val <= 10  # about 1 in 9 of the train rows
