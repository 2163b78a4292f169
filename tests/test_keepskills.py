"""Keeping the base's skills without its data: distillation toward the base's softened answers, an L2-SP pull
toward its weights and WiSE-FT interpolation, each measured on a real fine-tune of a tiny checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tests.tiny import LABELS, make_tiny_dataset
from ume_mma import keepskills
from ume_mma.checkpoint import from_pretrained
from ume_mma.train import run
from ume_mma.trainconfig import ConfigError, load_config

ENCODERS = {"image": "scratch.image-cnn", "audio": "scratch.logmel-cnn"}
SHIFT = {label: LABELS[(i + 1) % len(LABELS)] for i, label in enumerate(LABELS)}


def _config(tmp: Path, out: Path, **keys):
    base = dict(batch_size=8, cache_dir=str(tmp / "cache"), eval_repeats=1, out=str(out)) | keys
    return load_config(None, [], **base)


def test_distill_loss_is_the_scaled_kl_to_the_teacher():
    teacher = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    assert keepskills.distill_loss(teacher.clone(), teacher, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    student = torch.tensor([[0.0, 2.0, -1.0], [1.0, 0.0, 0.0]], requires_grad=True)
    loss = keepskills.distill_loss(student, teacher, 2.0)
    p, q = (teacher / 2).softmax(-1), (student / 2).softmax(-1)
    expected = 4 * (p * (p.log() - q.log())).sum(-1).mean()  # T² * KL(p_teacher || p_student), batch mean
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert student.grad.abs().sum() > 0


def test_l2sp_pulls_toward_the_anchor_not_toward_zero():
    base, model = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    anchor = keepskills.anchor_of(model, base)
    assert set(anchor) == {"weight", "bias"}
    assert keepskills.l2sp_penalty(base, anchor).item() == 0.0
    expected = sum((p - q).pow(2).sum() for p, q in zip(model.parameters(), base.parameters(), strict=True))
    assert keepskills.l2sp_penalty(model, anchor).item() == pytest.approx(expected.item(), rel=1e-6)
    other = torch.nn.Linear(4, 2)  # its weight has another shape: no anchor for it (its bias has one)
    assert set(keepskills.anchor_of(other, base)) == {"bias"}


def test_interpolate_mixes_floats_and_keeps_the_endpoints():
    base, tuned, into = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        base.weight.fill_(1.0)
        tuned.weight.fill_(3.0)
    tuned.num_batches_tracked += 5
    keepskills.interpolate(base, tuned, 0.25, into)
    assert torch.allclose(into.weight, torch.full((3,), 1.5)) and int(into.num_batches_tracked) == 5
    assert torch.equal(keepskills.interpolate(base, tuned, 0.0, into).weight, base.weight)
    assert torch.equal(keepskills.interpolate(base, tuned, 1.0, into).weight, tuned.weight)


def test_the_knobs_are_refused_outside_a_finetune_and_out_of_range(tmp_path):
    data = str(tmp_path)
    keys = dict(task="t", data=data, out=data, encoders=ENCODERS)
    with pytest.raises(ConfigError, match="init_from"):
        load_config(None, ["distill=1"], **keys)
    with pytest.raises(ConfigError, match="distill and l2sp must be >= 0"):
        load_config(None, ["l2sp=-1"], **keys)


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("keepskills")
    data = make_tiny_dataset(tmp / "data", {"train": 8, "val": 3, "test": 3})
    run(_config(tmp, tmp / "base", task="tiny", data=str(data), encoders=ENCODERS, epochs=6, mma_epochs=1))
    new = make_tiny_dataset(tmp / "new", {"train": 4, "val": 2, "test": 2}, seed=3)
    rows = [json.loads(line) for line in (new / "metadata.jsonl").read_text().splitlines()]
    for row in rows:  # relabelled: plain fine-tuning pulls away from the base's answers, distillation back
        row["label"] = SHIFT[row["label"]]
    (new / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    yield tmp, tmp / "base" / "models" / "mma", new
    torch.set_num_threads(threads)


def _head_distance(parent_dir: Path, child_dir: Path, m: str) -> float:
    parent = from_pretrained(parent_dir, load_encoder_weights=False).persistent_state_dict()
    child = from_pretrained(child_dir, load_encoder_weights=False).persistent_state_dict()
    return math.sqrt(sum((parent[k] - child[k]).pow(2).sum().item() for k in parent if k.startswith(f"heads.{m}.")))


def _finetune(tmp: Path, out: Path, parent_dir: Path, new: Path, **keys) -> Path:
    run(_config(tmp, out, init_from=str(parent_dir), data=str(new), epochs=4, mma_epochs=1, lr=0.05,
                branch_guard=False, **keys))  # fmt: skip
    return out / "models" / "unimodal-audio"


def test_l2sp_and_distillation_keep_a_fine_tuned_head_nearer_the_base(parent, tmp_path):
    """The same fine-tune (same seed, same rows) three ways: a strong L2-SP pull or strong distillation toward the
    base leaves the audio head nearer the base's than plain fine-tuning does."""
    tmp, parent_dir, new = parent
    plain = _head_distance(parent_dir, _finetune(tmp, tmp_path / "plain", parent_dir, new), "audio")
    pulled = _head_distance(parent_dir, _finetune(tmp, tmp_path / "l2sp", parent_dir, new, l2sp=10.0), "audio")
    taught = _head_distance(parent_dir, _finetune(tmp, tmp_path / "kd", parent_dir, new, distill=20.0), "audio")
    assert plain > 0
    assert pulled < 0.5 * plain, (pulled, plain)
    assert taught < plain, (taught, plain)
