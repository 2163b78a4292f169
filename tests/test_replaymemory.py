"""The replay memory a checkpoint carries: built from its training rows, mixed into a fine-tune without base data,
refused when it was prepared for other encoders, stated on the card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tests.tiny import make_tiny_dataset
from ume_mma import replaymemory
from ume_mma.checkpoint import from_pretrained
from ume_mma.data.format import load_dataset
from ume_mma.features import prepare
from ume_mma.train import run
from ume_mma.trainconfig import load_config

ENCODERS = {"image": "scratch.image-cnn", "audio": "scratch.logmel-cnn"}


def _config(tmp: Path, out: Path, **keys):
    base = dict(batch_size=8, cache_dir=str(tmp / "cache"), eval_repeats=1, out=str(out)) | keys
    return load_config(None, [], **base)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("memory")
    data = make_tiny_dataset(tmp / "data", {"train": 8, "val": 3, "test": 3})
    run(_config(tmp, tmp / "base", task="tiny", data=str(data), encoders=ENCODERS, epochs=2, mma_epochs=1))
    folder = tmp / "with-memory"
    shutil.copytree(tmp / "base" / "models" / "mma", folder)
    model = from_pretrained(folder)
    replaymemory.save(folder, *replaymemory.build(model, data, rows=9, licence="made up for this test"))
    yield tmp, data, folder
    torch.set_num_threads(threads)


def test_the_memory_holds_what_training_reads_for_its_rows(base):
    tmp, data, folder = base
    model = from_pretrained(folder)
    memory = replaymemory.load(folder, model)
    inputs, targets = memory.part(heldout=False)
    assert len(targets) == 9 and sorted(targets.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # 3 per label
    assert memory.meta["licence"] == "made up for this test" and memory.meta["rows"] == "9"
    rows = replaymemory._pick(load_dataset(data).split("train").samples, model.labels, 9, 0)
    for m in model.modalities:
        assert torch.equal(inputs[m].data, prepare(rows, m, model.encoders[m], None).data)


def test_the_memory_also_holds_rows_the_checkpoint_never_trained_on(base):
    """Its held-out rows are the dataset's validation rows (the base never trained on them), marked as such."""
    tmp, data, folder = base
    model = from_pretrained(folder)
    memory = replaymemory.load(folder, model)
    inputs, targets = memory.part(heldout=True)
    assert memory.meta["heldout_rows"] == "9" and memory.meta["heldout_split"] == "val"
    assert int(memory.heldout.sum()) == 9 and not bool(memory.heldout[:9].any())  # after the 9 training rows
    val = load_dataset(data).split("val").samples  # 3 per label: all of them
    for m in model.modalities:
        assert torch.equal(inputs[m].data, prepare(val, m, model.encoders[m], None).data)
    tensors, meta = replaymemory.build(model, data, rows=9, heldout_rows=0)
    assert meta["heldout_rows"] == "0" and not bool(tensors["heldout"].any()) and len(tensors["targets"]) == 9


def test_a_finetune_without_base_data_replays_the_memory(base, tmp_path):
    tmp, _, folder = base
    new = make_tiny_dataset(tmp_path / "new", {"train": 4, "val": 3, "test": 3}, seed=1)
    keys = dict(init_from=str(folder), data=str(new), epochs=1, mma_epochs=1, branch_guard=False)
    metrics = run(_config(tmp, tmp_path / "ft", **keys))
    # the 9 held-out rows of the memory are never trained on
    assert metrics["train_rows"] == 12 + 9 and metrics["finetune"]["replay_memory"]["rows"] == 9
    assert metrics["finetune"]["replay_memory"]["heldout_rows"] == 9
    card = (tmp_path / "ft" / "checkpoint" / "README.md").read_text()
    assert (
        "- **Replay memory:** 9 training rows and 9 held-out rows (never trained on: scored by the branch guard) "
        "carried by the parent (`data`; made up for this test)"
    ) in card
    off = run(_config(tmp, tmp_path / "off", replay_memory=False, **keys))
    assert off["train_rows"] == 12 and off["finetune"]["replay_memory"] is None


def test_a_memory_for_other_encoders_is_not_used(base, tmp_path):
    tmp, _, folder = base
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    with safe_open(str(other / replaymemory.FILE), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    specs = json.loads(meta["specs"])
    specs["audio"]["embed_dim"] += 1  # prepared for another encoder
    save_file(tensors, str(other / replaymemory.FILE), metadata=meta | {"specs": json.dumps(specs)})
    assert replaymemory.load(other, from_pretrained(other)) is None
    new = make_tiny_dataset(tmp_path / "new", {"train": 4, "val": 3, "test": 3}, seed=1)
    keys = dict(init_from=str(other), data=str(new), epochs=1, mma_epochs=1, branch_guard=False)
    assert run(_config(tmp, tmp_path / "ft", **keys))["train_rows"] == 12


def test_the_shipped_av_digits_checkpoint_carries_a_memory_for_its_encoders():
    folder = Path(__file__).resolve().parent.parent / "checkpoints" / "av-digits"
    model = from_pretrained(folder, load_encoder_weights=False)
    memory = replaymemory.load(folder, model)
    inputs, targets = memory.part(heldout=False)
    assert len(targets) == 300 and sorted(set(targets.tolist())) == list(range(10))
    assert inputs["audio"].is_features and inputs["audio"].data.shape == (300, 1920)  # Whisper features, no audio
    assert not inputs["image"].is_features and "CC BY-SA 3.0" in memory.meta["licence"]
    held, held_targets = memory.part(heldout=True)  # 20 validation rows per label, never trained on
    assert held_targets.bincount().tolist() == [20] * 10 and memory.meta["heldout_split"] == "val"
    assert held["image"].data.shape == (200, 1, 28, 28)


def test_a_push_and_a_deploy_carry_the_memory(base):
    from ume_mma.publish import checkpoint_uploads

    _, _, folder = base
    names = [u.path_in_repo for u in checkpoint_uploads(folder)[0]]
    assert replaymemory.FILE in names and "model.safetensors" in names
    (folder / replaymemory.FILE).rename(folder / "kept-aside")
    try:
        assert replaymemory.FILE not in [u.path_in_repo for u in checkpoint_uploads(folder)[0]]  # optional
    finally:
        (folder / "kept-aside").rename(folder / replaymemory.FILE)
