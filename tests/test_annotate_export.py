"""Annotate, export, read the export back with load_dataset, train on it; the dataset card; push to the Hub
(mocked HfApi); the command line."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest

from tests.tiny import make_tiny_dataset
from ume_mma.annotate import AnnotationQueue, export, import_dataset, open_store, predict_queue, push_dataset
from ume_mma.annotate.__main__ import main
from ume_mma.annotate.export import annotation_counts, assign_splits, split_of
from ume_mma.data.format import load_dataset
from ume_mma.errors import InputError
from ume_mma.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]
TINY_CKPT = ROOT / "tests" / "fixtures" / "tiny_checkpoint_v1"


def _grouped_dataset(root: Path) -> Path:
    """The tiny dataset (60 samples, labels a/b/c) with 15 groups of 4 and no splits (annotation decides)."""
    make_tiny_dataset(root, {"train": 20})
    rows = [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines()]
    for i, row in enumerate(rows):
        row.pop("split")
        row["group"] = f"g{i // 4}"
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture
def annotated(store_url, tmp_path):
    """Every item annotated with its true label (one flagged, one undone and relabelled) by two annotators."""
    url, media = store_url
    store = open_store(url, media)
    import_dataset(store, _grouped_dataset(tmp_path / "data"))
    predict_queue(store, Predictor.from_pretrained(TINY_CKPT), show_progress=False)
    queue = AnnotationQueue(store)
    k = 0
    while (item := queue.next_item(("alice", "bob")[k % 2])) is not None:
        who = ("alice", "bob")[k % 2]
        flags = {"audio": ["noisy"]} if k == 0 else None
        queue.submit(item.id, "a" if k == 1 else item.given_label, who, flags=flags, note=f"n{k}")
        if k == 1:  # bob's wrong label, taken back and fixed
            assert queue.undo_last("bob").id == item.id
            queue.submit(item.id, item.given_label, "bob")
        k += 1
    return store


def test_export_reads_back_and_trains(annotated, tmp_path):
    from ume_mma.train import run
    from ume_mma.trainconfig import load_config

    preview = annotation_counts(annotated, seed=0, fractions=(0.6, 0.2, 0.2))
    result = export(annotated, tmp_path / "export", seed=0, fractions=(0.6, 0.2, 0.2))
    assert preview == result.counts  # the Train tab's counts are what the export writes
    assert annotation_counts(annotated, queue="no-such-queue") == {}
    data = load_dataset(tmp_path / "export")
    assert len(data) == 60 and data.labels == ["a", "b", "c"] and set(data.splits) == {"train", "val", "test"}
    assert sum(result.counts[label][s] for label in result.counts for s in result.counts[label]) == 60
    assert result.annotators == {"alice": 30, "bob": 30}
    for s in data:  # each group in one split; the label is the annotation's; files were copied
        assert s.split == split_of(s.group, 0, (0.6, 0.2, 0.2))
        assert s.label == s.meta["source_id"].split("-")[1]
        assert s.path("image").is_file() and s.path("image").is_relative_to(tmp_path / "export" / "media")
        assert s.meta["predicted"]["fused"] in ("no", "yes") and s.meta["checkpoint"].endswith("tiny_checkpoint_v1")
    assert len({s.id for s in data}) == 60 and all(len(s.id) == 32 for s in data)
    flagged = [s for s in data if s.meta.get("flags")]
    assert len(flagged) == 1 and flagged[0].meta["flags"] == {"audio": ["noisy"]} and flagged[0].meta["note"] == "n0"
    assert not [s for s in data if s.meta.get("note") == "n1"]  # the undone annotation is not exported
    card = (tmp_path / "export" / "README.md").read_text()
    assert "| **total** |" in card and "| alice | 30 |" in card and "| audio | noisy | 1 |" in card
    for label, per in result.counts.items():
        assert f"| {label} | {per['train']} | {per['val']} | {per['test']} | {sum(per.values())} |" in card
    cfg = load_config(
        None,
        [],
        task="annotated",
        data=str(tmp_path / "export"),
        out=str(tmp_path / "run"),
        epochs=1,
        mma_epochs=1,
        batch_size=8,
        cache_dir=str(tmp_path / "cache"),
        encoders={"image": "scratch.image-cnn", "audio": "scratch.logmel-cnn"},
    )
    metrics = run(cfg, device="cpu")
    assert (tmp_path / "run" / "checkpoint" / "model.safetensors").is_file()
    assert 0.0 <= metrics["test"]["ume-mma"]["accuracy"]["full"] <= 1.0


def test_export_refuses_to_overwrite_and_needs_annotations(tmp_path):
    store = open_store(tmp_path / "a.db")
    with pytest.raises(InputError, match="nothing to export"):
        export(store, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not an empty folder"):
        export(store, tmp_path / "full")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]


def test_split_of_is_seeded_and_follows_the_fractions():
    keys = [f"group-{i}" for i in range(2000)]
    splits = [split_of(k, 0) for k in keys]
    assert splits == [split_of(k, 0) for k in keys] and splits != [split_of(k, 1) for k in keys]
    share = {s: splits.count(s) / len(keys) for s in ("train", "val", "test")}
    assert abs(share["train"] - 0.8) < 0.04 and abs(share["val"] - 0.1) < 0.03
    assert {split_of(k, 0, (0, 0, 1)) for k in keys} == {"test"}
    with pytest.raises(InputError, match="fractions"):
        split_of("g", 0, (0.5, 0.5, 0.5))


def test_assign_splits_gives_every_split_a_group_when_it_can():
    many = [f"group-{i}" for i in range(200)]
    assert assign_splits(many, 0) == {k: split_of(k, 0) for k in many}, "enough groups: the plain hash split"
    few = [k for k in many if split_of(k, 0) == "train"][:5]  # five groups that all hash to train
    splits = assign_splits(few + few[:2], 0)  # repeated keys are one group
    assert sorted(splits) == sorted(few) and set(splits.values()) == {"train", "val", "test"}
    assert assign_splits(list(reversed(few)), 0) == splits, "the order of the rows does not matter"
    assert set(assign_splits(few[:2], 0).values()) == {"train"}, "too few groups for three splits: hash only"
    assert set(assign_splits(few, 0, (1.0, 0.0, 0.0)).values()) == {"train"}


def test_push_dataset_uploads_with_the_token_from_the_environment(tmp_path, monkeypatch):
    out = make_tiny_dataset(tmp_path / "ds", {"train": 1})
    api = mock.MagicMock()
    api.return_value.upload_folder.return_value.commit_url = "https://hf.co/datasets/org/ds/commit/abc"
    monkeypatch.setattr("huggingface_hub.HfApi", api)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(InputError, match="HF_TOKEN"):
        push_dataset(out, "org/ds")
    api.assert_not_called()
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    assert push_dataset(out, "org/ds") == "https://hf.co/datasets/org/ds/commit/abc"
    api.assert_called_once_with(token="hf_secret")
    api.return_value.create_repo.assert_called_once_with("org/ds", repo_type="dataset", private=True, exist_ok=True)
    api.return_value.upload_folder.assert_called_once_with(
        repo_id="org/ds", folder_path=str(out), repo_type="dataset", commit_message="Annotations export"
    )
    (out / "metadata.jsonl").write_text('{"label": "a"}\n')  # not a valid dataset: never pushed
    with pytest.raises(ValueError, match="no modality"):
        push_dataset(out, "org/ds")
    assert api.return_value.upload_folder.call_count == 1


def relabel(data: Path, names: dict[str, str]) -> Path:
    """The folder's labels renamed (e.g. to the labels of the checkpoint that predicts it)."""
    rows = [json.loads(line) for line in (data / "metadata.jsonl").read_text().splitlines()]
    (data / "metadata.jsonl").write_text("".join(json.dumps({**r, "label": names[r["label"]]}) + "\n" for r in rows))
    return data


def test_command_line(tmp_path, capsys, monkeypatch):
    data = relabel(make_tiny_dataset(tmp_path / "data", {"train": 1}), {"a": "yes", "b": "no", "c": "yes"})
    db = str(tmp_path / "cli.db")
    assert main(["import", str(data), "--checkpoint", str(TINY_CKPT), "--db", db, "--order", "confidence"]) == 0
    assert "imported 3 items" in capsys.readouterr().out
    assert main(["stats", "--db", db]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["default"]["total"] == 3 and stats["default"]["labelled"] == 0
    assert main(["predict", "--checkpoint", str(TINY_CKPT), "--db", db, "--redo", "--order", "random"]) == 0
    assert "predicted 3 items" in capsys.readouterr().out
    assert main(["predict", "--checkpoint", str(TINY_CKPT), "--db", db, "--queue", "nope"]) == 1
    assert "no queue named 'nope'" in capsys.readouterr().err
    queue = AnnotationQueue(open_store(db))
    while (item := queue.next_item("cli")) is not None:
        queue.submit(item.id, item.given_label, "cli")
    hub = mock.MagicMock()
    monkeypatch.setattr("huggingface_hub.HfApi", hub)
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    assert main(["export", str(tmp_path / "out"), "--db", db, "--push", "org/name"]) == 0
    assert "exported 3 annotations" in capsys.readouterr().out
    assert len(load_dataset(tmp_path / "out")) == 3 and hub.return_value.upload_folder.call_count == 1
    assert main(["export", str(tmp_path / "out"), "--db", db]) == 1  # not empty any more
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an empty folder" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: command"),
        (["import"], "the following arguments are required: data_dir"),
        (["import", "x", "--order", "alphabetical"], "invalid choice: 'alphabetical'"),
        (["stats", "--bogus"], "unrecognized arguments: --bogus"),
        (["predict"], "the following arguments are required: --checkpoint"),
        (["import", "/no/such/folder"], "/no/such/folder is not a folder"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    argv = argv + (["--db", str(tmp_path / "x.db")] if argv[:1] == ["import"] and len(argv) == 2 else [])
    with pytest.raises(SystemExit) as exit_:
        code = main(argv)
        raise SystemExit(code)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "x.db").exists()  # nothing was created
