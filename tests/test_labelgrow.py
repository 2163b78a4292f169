"""Growing a checkpoint's label set (:mod:`ume_mma.labelgrow`) on the shipped checkpoints: old rows bitwise, the
same answer on every input and presence pattern (late fusion, reliability weighting, UME), the same reliability,
a label history that saves and loads, and bad growth refused."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import pytest
import torch

from ume_mma.calibrate import base_mode
from ume_mma.checkpoint import from_pretrained, save_pretrained
from ume_mma.drift_choice import configure
from ume_mma.labelgrow import GROW_MARGIN, grow
from ume_mma.models import ModelConfig

ROOT = Path(__file__).resolve().parents[1]
NEW = ["kiwi", "yak"]


def _load(name: str):
    return from_pretrained(ROOT / "checkpoints" / name, load_encoder_weights=False)


def _ume(model):
    config = dataclasses.replace(model.config, fusion="ume", fill="drop", reliability=None, correctness=None)
    return model.derive(config)


@pytest.fixture(scope="module", params=["av-digits", "emoji-vl", "av-digits as ume"])
def model(request):
    name = request.param.split()[0]
    m = _load(name)
    return _ume(m) if request.param.endswith("ume") else m


def _inputs(model, n: int = 64):
    """Gaussian features around each branch's training centre (or unit scale) and every presence pattern."""
    g = torch.Generator().manual_seed(0)
    feats = {}
    for m in model.modalities:
        d = model.encoders[m].embed_dim
        center = model.reliability[m].center if model.reliability is not None and m in model.reliability else 0
        feats[m] = center + torch.randn(n, d, generator=g) * (1 + 3 * torch.rand(n, 1, generator=g))
    patterns = [p for p in itertools.product([True, False], repeat=len(model.modalities)) if any(p)]
    rows = torch.arange(n) % len(patterns)
    present = {m: torch.tensor([patterns[r][i] for r in rows]) for i, m in enumerate(model.modalities)}
    return feats, present


def test_old_rows_are_bitwise_and_new_rows_are_the_mean_minus_the_margin(model):
    assert GROW_MARGIN == 2.0  # docs/training.md: "its bias 2 lower"
    grown = grow(model, NEW, parent="p", source="s")
    c = len(model.labels)
    assert grown.labels == [*model.labels, *NEW]
    for m in model.modalities:
        old, new = model.heads[m], grown.heads[m]
        assert new.weight.shape == (c + 2, old.in_features)
        assert torch.equal(new.weight[:c], old.weight) and torch.equal(new.bias[:c], old.bias)
        for r in (c, c + 1):
            assert torch.allclose(new.weight[r], old.weight.mean(0), atol=1e-7)
            assert new.bias[r].item() == pytest.approx(old.bias.mean().item() - GROW_MARGIN, abs=1e-6)
    assert grown.encoders is model.encoders  # shared, not copied


def test_the_grown_model_answers_like_the_base_on_every_input(model):
    grown = grow(model, NEW, parent="p", source="s")
    feats, present = _inputs(model)
    c = len(model.labels)
    reference = model  # a correctness-weighted base grows into its base mode (its estimate is for the old labels)
    if model.config.fusion == "correctness":
        reference = configure(model, base_mode(model))
    with torch.no_grad():
        before, after = reference.forward_features(feats, present), grown.forward_features(feats, present)
    if model.config.fusion == "ume":  # the same label wherever the base's top two were more than 1 + eps apart
        eps = len(NEW) * math.exp(-GROW_MARGIN) / c
        top2 = before.fused.softmax(-1).topk(2, dim=-1).values
        clear = top2[:, 0] > (1 + eps) * top2[:, 1]
        assert int(clear.sum()) > len(clear) // 2
        assert torch.equal(after.fused.argmax(-1)[clear], before.fused.argmax(-1)[clear])
        ratio = after.fused[:, :c].exp() / before.fused.softmax(-1)  # each old probability shrinks, by <= 1 + eps
        assert float(ratio.max()) <= 1 + 1e-5 and float(ratio.min()) >= 1 / (1 + eps) - 1e-5
    else:  # late fusion: exact, the same label on every row; the old labels' probabilities keep their ratios
        assert torch.equal(after.fused.argmax(-1), before.fused.argmax(-1))
        assert torch.allclose(after.fused[:, :c].softmax(-1), before.fused.softmax(-1), atol=1e-5)  # float32
    assert float(after.fused_probs()[:, c:].max()) < float(after.fused_probs()[:, :c].max(-1).values.min())
    if model.reliability is not None:
        for m in before.reliability:
            assert torch.allclose(after.reliability[m], before.reliability[m], atol=1e-6)


def test_the_history_saves_and_loads(tmp_path):
    base = _load("emoji-vl")
    grown = grow(base, ["kiwi"], parent="checkpoints/emoji-vl", source="data/fruit")
    assert grown.config.correctness is None and grown.config.format_version == 4
    folder = save_pretrained(grown, tmp_path / "grown")
    again = from_pretrained(folder, load_encoder_weights=False)
    assert again.config.label_history == [
        {"source": "checkpoints/emoji-vl", "labels": base.labels},
        {"source": "data/fruit", "labels": ["kiwi"]},
    ]
    card = (folder / "README.md").read_text()
    assert "**Label history:**" in card and "kiwi from `data/fruit`" in card
    twice = grow(again, ["yak"], parent="ignored: it has a history", source="data/farm")
    assert [h["source"] for h in twice.config.label_history] == ["checkpoints/emoji-vl", "data/fruit", "data/farm"]


def test_bad_growth_and_bad_histories_are_refused():
    base = _load("emoji-vl")
    with pytest.raises(ValueError, match="must be new and distinct"):
        grow(base, [base.labels[0]], parent="p", source="s")
    with pytest.raises(ValueError, match="must be new and distinct"):
        grow(base, ["kiwi", "kiwi"], parent="p", source="s")
    assert grow(base, [], parent="p", source="s") is base
    data = base.config.to_dict() | {"label_history": [{"source": "p", "labels": base.labels[:-1]}]}
    with pytest.raises(ValueError, match="label_history must list each label once"):
        ModelConfig.from_dict(data)


def test_new_labels_are_sorted_and_misfits_named():
    from ume_mma.finetune import LabelMismatchError, check_new_labels

    base = _load("emoji-vl").config
    known = base.labels[:2]
    assert check_new_labels([*known, "zebra", "yak"], [*known, "zebra", "yak"], base, "d") == ["yak", "zebra"]
    assert check_new_labels(known, known[:1], base, "d") == []  # old labels need no training rows
    with pytest.raises(LabelMismatchError, match=r"d: new labels \['yak'\] .* have no training rows"):
        check_new_labels([*known, "yak"], known, base, "d")
    with pytest.raises(LabelMismatchError, match="no label in common"):
        check_new_labels(["yak"], ["yak"], base, "d")


def test_a_correctness_weighted_model_grows_into_its_base_mode():
    """The shipped checkpoints fuse by estimated correctness; the estimate is fitted for their labels, so a
    grown model drops it and fuses as the base mode it weighed."""
    from ume_mma.checkpoint import from_pretrained
    from ume_mma.labelgrow import grow

    pytest.importorskip("efficientnet_lite_pytorch")
    model = from_pretrained(Path(__file__).resolve().parents[1] / "checkpoints" / "emoji-vl")
    assert model.config.fusion == "correctness"
    grown = grow(model, ["Plants"], parent="checkpoints/emoji-vl", source="plants/")
    assert grown.config.fusion == model.config.correctness["base"] and grown.config.correctness is None
    assert grown.labels[-1] == "Plants"
