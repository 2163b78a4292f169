"""A dataset folder as a Hugging Face dataset (``python -m ume_mma.data export hf``, ``annotate export --hf``):
typed features that ``datasets.load_dataset`` reads back, the very files inside, and a training run on what comes
back through the importer."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

from tests.tiny import make_tiny_dataset
from ume_mma.data.format import load_dataset
from ume_mma.data.imports.hf import export_hf, import_hf
from ume_mma.data.imports.staging import ImportRefused

datasets = pytest.importorskip("datasets")
ENCODERS = {"image": "scratch.image-cnn", "audio": "scratch.logmel-cnn", "text": "scratch.hashed-text"}


def test_export_reads_back_with_typed_features_and_trains(tmp_path):
    from ume_mma.train import run
    from ume_mma.trainconfig import load_config

    folder = make_tiny_dataset(tmp_path / "tiny", {"train": 6, "val": 2, "test": 2}, with_text=True)
    ours = load_dataset(folder)
    assert export_hf(folder) == folder.resolve()  # beside metadata.jsonl
    back = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "hf-cache"))  # (a fresh cache: see docs)
    assert sorted(back) == ["test", "train", "validation"] and back["validation"].num_rows == 6
    f = back["train"].features
    assert isinstance(f["label"], datasets.ClassLabel) and f["label"].names == ["a", "b", "c"]
    assert isinstance(f["image"], datasets.Image) and isinstance(f["audio"], datasets.Audio)
    assert f["text"] == datasets.Value("string")
    raw = back["train"].cast_column("audio", datasets.Audio(decode=False))  # decoding audio needs torchcodec
    for s, row in zip(ours.split("train"), raw, strict=True):
        assert f["label"].int2str(row["label"]) == s.label and row["id"] == s.id and row["text"] == s.text
        with Image.open(s.path("image")) as im:
            assert np.array_equal(np.asarray(row["image"]), np.asarray(im))  # Image decodes: the very pixels
        assert row["audio"]["bytes"] == s.path("audio").read_bytes()
    assert len(load_dataset(folder)) == len(ours), "the folder format still reads"
    # what load_dataset returns comes back into our format and trains
    again = import_hf(str(folder), tmp_path / "again")
    assert [(s.id, s.label, s.split) for s in load_dataset(again)] == [(s.id, s.label, s.split) for s in ours]
    keys = dict(epochs=1, mma_epochs=1, batch_size=8, eval_repeats=1, cache_dir=str(tmp_path / "cache"))
    cfg = load_config(None, [], task="tiny", data=str(again), encoders=ENCODERS, out=str(tmp_path / "run"), **keys)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches on a busy machine
    try:
        metrics = run(cfg)
    finally:
        torch.set_num_threads(threads)
    assert metrics["test"][metrics["saved"]]["n"] == 6 and (tmp_path / "run" / "checkpoint" / "config.json").is_file()


def test_export_into_a_new_folder_holds_only_the_hf_dataset(tmp_path):
    folder = make_tiny_dataset(tmp_path / "tiny", {"train": 2, "test": 1})
    out = export_hf(folder, tmp_path / "hf")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "data"]
    assert sorted(p.name for p in (out / "data").iterdir()) == ["test-00000-of-00001.parquet",
                                                               "train-00000-of-00001.parquet"]  # fmt: skip
    back = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert back["train"].num_rows == 6 and back["test"].num_rows == 3 and "validation" not in back


def test_two_folders_of_the_same_name_import_their_own_rows(tmp_path):
    """The datasets cache keys a local folder by its name: the importer reads each through a fresh cache."""
    small = make_tiny_dataset(tmp_path / "one" / "tiny", {"train": 1, "test": 1})
    large = make_tiny_dataset(tmp_path / "two" / "tiny", {"train": 3, "test": 1})
    export_hf(small), export_hf(large)
    assert len(load_dataset(import_hf(str(small), tmp_path / "a"))) == 6
    assert len(load_dataset(import_hf(str(large), tmp_path / "b"))) == 12


def test_bad_exports_are_refused_and_change_nothing(tmp_path):
    folder = make_tiny_dataset(tmp_path / "tiny", {"train": 1})
    rows = [json.loads(x) for x in (folder / "metadata.jsonl").read_text().splitlines()]
    rows[0].pop("split")
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ImportRefused, match="samples without a split"):
        export_hf(folder)
    assert not (folder / "data").exists() and not (folder / "README.md").exists()
    other = make_tiny_dataset(tmp_path / "other", {"train": 1})
    (other / "data").mkdir()
    (other / "data" / "keep.txt").write_text("mine")
    with pytest.raises(ImportRefused, match="holds files other than an earlier export's parquet"):
        export_hf(other)
    assert [p.name for p in (other / "data").iterdir()] == ["keep.txt"]


def test_annotate_export_hf_and_push_upload_the_typed_dataset(tmp_path, capsys, monkeypatch):
    from ume_mma.annotate import AnnotationQueue, import_dataset, open_store
    from ume_mma.annotate.__main__ import main

    db = str(tmp_path / "a.db")
    store = open_store(db)
    import_dataset(store, make_tiny_dataset(tmp_path / "pool", {"train": 4}), "q")
    queue = AnnotationQueue(store, "q")
    while (item := queue.next_item("ann")) is not None:
        queue.submit(item.id, item.given_label, "ann")
    hub = mock.MagicMock()
    monkeypatch.setattr("huggingface_hub.HfApi", hub)
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    assert main(["export", str(tmp_path / "out"), "--db", db, "--push", "org/name"]) == 0
    assert "wrote a Hugging Face dataset" in capsys.readouterr().out
    pushed = Path(hub.return_value.upload_folder.call_args.kwargs["folder_path"])
    assert pushed == tmp_path / "out" and list((pushed / "data").glob("train-*.parquet"))
    back = datasets.load_dataset(str(pushed), cache_dir=str(tmp_path / "hf-cache"))
    assert sum(d.num_rows for d in back.values()) == 12 == len(load_dataset(pushed))
    assert back["train"].features["label"].names == ["a", "b", "c"]
    assert "Annotators" in (pushed / "README.md").read_text(), "the export's card is kept below the configs"


def test_video_goes_through_a_folder_import_and_the_hf_round_trip(tmp_path):
    """Clips of class subfolders (real h264 mp4s, content-detected as video) -> our folder -> a Video feature ->
    back, byte for byte."""
    from tests.media import make_moving_video
    from ume_mma.data.imports.folders import import_folder

    for i, label in enumerate(["left", "right", "left", "right"]):
        (tmp_path / "clips" / label).mkdir(parents=True, exist_ok=True)
        make_moving_video(tmp_path / "clips" / label / f"clip{i}.mp4", seconds=1.0, size=(64, 48), seed=i)
    ours = load_dataset(import_folder(tmp_path / "clips", tmp_path / "ours"))
    assert ours.modalities == ["video"] and ours.labels == ["left", "right"] and len(ours) == 4
    export_hf(ours.root, tmp_path / "hf")
    back = datasets.load_dataset(str(tmp_path / "hf"), cache_dir=str(tmp_path / "hf-cache"))
    assert all(isinstance(d.features["video"], datasets.Video) for d in back.values())
    again = load_dataset(import_hf(str(tmp_path / "hf"), tmp_path / "again"))
    by_id = {s.id: s for s in ours}
    assert sorted(by_id) == sorted(s.id for s in again)
    assert all(s.path("video").read_bytes() == by_id[s.id].path("video").read_bytes() for s in again)
