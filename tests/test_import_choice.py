"""The importer registry and uploads (:mod:`ume_mma.data.imports.choice`, :mod:`~ume_mma.data.imports.uploads`)
on real files: a dataset folder of ours copied and checked (``python -m ume_mma.data import dataset``), options
refused by name, zips unpacked within their limits, and the source found among the uploads."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from tests.test_imports import make_class_folders
from tests.tiny import make_tiny_dataset
from ume_mma.data.__main__ import main
from ume_mma.data.format import load_dataset
from ume_mma.data.imports import uploads
from ume_mma.data.imports.choice import IMPORTERS, importer, run_import, summarize
from ume_mma.data.imports.staging import ImportRefused


def test_a_dataset_folder_of_ours_is_copied_with_its_splits_and_checked(tmp_path, capsys):
    src = make_tiny_dataset(tmp_path / "theirs", {"train": 2, "val": 1, "test": 1}, with_text=True)
    assert main(["import", "dataset", str(src), str(tmp_path / "copy")]) == 0
    assert "12 samples, 3 labels, modalities: audio, image, text" in capsys.readouterr().out
    ours, copy = load_dataset(src), load_dataset(tmp_path / "copy")
    key = lambda s: (s.id, s.label, s.split, s.text)  # noqa: E731
    assert sorted(map(key, ours)) == sorted(map(key, copy))
    for a, b in zip(sorted(ours, key=key), sorted(copy, key=key), strict=True):
        assert b.path("image").read_bytes() == a.path("image").read_bytes() and b.path("image").is_relative_to(
            copy.root
        )
    # a file that no longer decodes as its modality: refused, nothing written
    (src / "images" / "val-b-0.png").write_bytes(b"not a png")
    assert main(["import", "dataset", str(src), str(tmp_path / "again")]) == 1
    assert "val-b-0.png is not a readable image" in capsys.readouterr().err
    assert not (tmp_path / "again").exists()


def test_the_registry_names_each_importer_and_refuses_options_it_does_not_take(tmp_path):
    assert list(IMPORTERS) == ["dataset", "folder", "csv", "hf", "label-studio"]
    assert importer("CSV of paths and labels").name == "csv"  # the app's choice: by title too
    make_class_folders(tmp_path / "clips", splits=False)
    with pytest.raises(ImportRefused, match=r"option 'label' is not one of the folder importer's \(seed\)"):
        run_import("folder", tmp_path / "clips", tmp_path / "out", {"label": "x"})
    with pytest.raises(ImportRefused, match="option 'seed' is not one of the dataset importer's"):
        run_import("dataset", tmp_path / "clips", tmp_path / "out", {"seed": 1})
    folder, skipped = run_import("folder", tmp_path / "clips", tmp_path / "out", {"seed": "3"})
    s = summarize(load_dataset(folder), skipped)
    assert (s["rows"], s["labels"], s["modalities"], s["unlabelled"]) == (
        6, {"a": 2, "b": 2, "c": 2}, {"audio": 6, "image": 6, "text": 2}, 0)  # fmt: skip
    assert sum(s["splits"].values()) == 6


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def test_zips_are_unpacked_within_their_limits(tmp_path, monkeypatch):
    ok = _zip(tmp_path / "ok.zip", {"clips/a/1.txt": b"x", "clips/b/1.txt": b"y", "__MACOSX/clips/._a": b"\0"})
    assert uploads.gather([ok], tmp_path / "u1", 2**20) == [
        "1 macOS resource file (__MACOSX/, ._*, .DS_Store): left out"
    ]
    assert uploads.source_in("folder", tmp_path / "u1") == tmp_path / "u1" / "clips"  # its one top folder
    big = _zip(tmp_path / "big.zip", {"a/1.txt": b"x" * 5000})
    with pytest.raises(ImportRefused, match="big.zip: member 'a/1.txt' is over the"):
        uploads.gather([big], tmp_path / "u2", 4000)
    monkeypatch.setattr(uploads, "MAX_BYTES", 3000)
    with pytest.raises(ImportRefused, match="big.zip: unpacks to more than"):
        uploads.gather([big], tmp_path / "u3", 2**20)
    assert not list((tmp_path / "u3").iterdir())  # refused before anything was written
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"PK, but no archive")
    with pytest.raises(ImportRefused, match="fake.zip: not a zip archive"):
        uploads.gather([fake], tmp_path / "u4", 2**20)


def test_the_source_among_the_uploads(tmp_path):
    root = tmp_path / "u"
    (root / "media").mkdir(parents=True)
    (root / "a.csv").write_text("label,image\n")
    (root / "media" / "b.csv").write_text("label,image\n")
    with pytest.raises(ImportRefused, match=r"the uploads need exactly one CSV file \(.csv\); found 2: a.csv, b.csv"):
        uploads.source_in("csv", root)
    (root / "media" / "b.csv").unlink()
    assert uploads.source_in("csv", root) == root / "a.csv"
    with pytest.raises(ImportRefused, match="exactly one metadata.jsonl"):
        uploads.source_in("dataset", root)
    (root / "ds").mkdir()
    (root / "ds" / "metadata.jsonl").write_text(json.dumps({"label": "a", "text": "x"}) + "\n")
    assert uploads.source_in("dataset", root) == root / "ds"
    with pytest.raises(ImportRefused, match="option root names a folder inside the uploads"):
        uploads.import_uploads("csv", [root / "a.csv"], tmp_path / "out", tmp_path / "w", 2**20, {"root": "../x"})


def test_a_queue_that_refuses_the_rows_leaves_no_dataset_folder_either(tmp_path):
    """Into a dataset and a queue: the queue step refuses (no modality its checkpoint reads), so the dataset
    folder, built first, is not kept; nothing is in the store."""
    from types import SimpleNamespace

    from ume_mma.annotate import open_store
    from ume_mma.annotate.importing import import_into
    from ume_mma.compat import IncompatibleDataError
    from ume_mma.home import datasets_root

    store = open_store(tmp_path / "annotations.db")
    (tmp_path / "list.csv").write_text("label,text\na,apple\nb,banana\n")
    reads_audio = SimpleNamespace(name="stub", labels=["a", "b"], modalities=("audio",))  # only its Fit is used
    with pytest.raises(IncompatibleDataError, match="has text, but checkpoint stub reads audio"):
        import_into(store, "csv", str(tmp_path / "list.csv"), dataset="words", queue="words", predictor=reads_audio)
    assert list(datasets_root(store.media.root).iterdir()) == [] and store.counts()["queues"] == 0
    s = import_into(store, "csv", str(tmp_path / "list.csv"), dataset="words")
    assert (s["rows"], s["labels"], s["modalities"], s["queue"]) == (2, {"a": 1, "b": 1}, {"text": 2}, None)
    assert load_dataset(datasets_root(store.media.root) / "words").labels == ["a", "b"]


def test_the_docs_state_the_zip_limits_the_code_applies():
    docs = " ".join((Path(__file__).resolve().parents[1] / "docs" / "import.md").read_text().split())
    assert f"a zip unpacks to at most {uploads.MAX_FILES:,} files and {uploads.MAX_BYTES / 2**30:g} GiB" in docs
