"""Annotating a sample directly (the app's "Annotate this" and /annotate), on SQLite and PostgreSQL: the
annotation is committed when the call returns, exported like queue annotations, and bad input stores nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny import make_tiny_dataset
from ume_mma.annotate import export, open_store
from ume_mma.annotate.direct import annotate_sample
from ume_mma.data.format import load_dataset
from ume_mma.errors import DecodeError, InputError

LABELS = ["a", "b", "c"]


@pytest.fixture
def files(tmp_path):
    make_tiny_dataset(tmp_path / "src", {"train": 1})
    return {"image": str(tmp_path / "src/images/train-a-0.png"), "audio": str(tmp_path / "src/audio/train-a-0.wav")}


def counts(store) -> tuple[dict[str, int], list[str]]:
    return store.counts(), sorted(store.media.refs())


def test_annotate_then_export(store_url, files, tmp_path):
    store = open_store(*store_url)
    prediction = {"checkpoint": "ckpt", "fused": {"label": "b", "confidences": {"b": 0.6, "a": 0.4}}}
    done = annotate_sample(store, {**files, "text": ""}, "a", "alice", LABELS, {"audio": ["noisy"]}, "hm", prediction)
    again = annotate_sample(store, {"image": files["image"]}, "c", "bob", LABELS)
    assert done.label == "a" and done.annotator == "alice" and again.sample_id != done.sample_id
    export(store, tmp_path / "export")
    samples = load_dataset(tmp_path / "export").samples
    assert sorted(s.label for s in samples) == ["a", "c"]
    labelled = next(s for s in samples if s.label == "a")
    assert labelled.text is None and labelled.audio is not None  # an empty text box is no text (as in /predict)
    assert Path(labelled.path("image")).read_bytes() == Path(files["image"]).read_bytes()
    assert {s.id for s in samples} == {done.id, again.id}  # each line carries its annotation id


@pytest.mark.parametrize(
    "inputs, label, flags, error",
    [
        ("image", "zebra", None, InputError),  # unknown label
        (None, "a", None, InputError),  # no input
        ("image", "a", {"audio": ["noisy"]}, InputError),  # flag for a modality it does not have
        ("image", "a", {"image": ["smudged"]}, InputError),  # unknown flag
        ("image", "a", {"smell": ["noisy"]}, InputError),  # unknown modality
        ("broken", "a", None, DecodeError),  # does not decode
    ],
)
def test_bad_input_stores_nothing(store_url, files, tmp_path, inputs, label, flags, error):
    store = open_store(*store_url)
    annotate_sample(store, {"image": files["image"]}, "a", "alice", LABELS)
    before = counts(store)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    given = {"image": files["image"]} if inputs == "image" else {"image": str(broken)} if inputs else {}
    with pytest.raises(error):
        annotate_sample(store, given, label, "alice", LABELS, flags)
    assert counts(store) == before
