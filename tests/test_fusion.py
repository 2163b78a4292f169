"""The fusion registry, and proof that a new fusion mode is one class and no other edit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ume_mma.checkpoint import from_pretrained, save_pretrained
from ume_mma.fusion import FUSIONS, Fusion, FusionInputs, get_fusion, list_fusions, register_fusion
from ume_mma.models import ModelConfig, MultiModalModel
from ume_mma.registry import get_spec

ENC = {"image": get_spec("scratch.image-cnn").to_dict(), "text": get_spec("scratch.hashed-text").to_dict()}


def _config(fusion: str, fill: str = "token") -> ModelConfig:
    return ModelConfig(task="t", labels=["x", "y", "z"], encoders=ENC, fusion=fusion, fill=fill)


def _inputs(model: MultiModalModel) -> dict[str, torch.Tensor]:
    torch.manual_seed(5)
    texts = ["red apple", "", "blue sky", "green tree"]
    return {"image": torch.randn(4, 1, 28, 28), "text": model.encoders["text"].preprocess(texts)}


PRESENT = {"image": torch.tensor([True, False, True, True]), "text": torch.tensor([True, True, False, True])}


@pytest.fixture
def max_prob():
    """A new mode, defined here: per sample, the present branch whose top class probability is highest."""

    @register_fusion("max-prob")
    class MaxProb(Fusion):
        description = "the present branch with the highest top-class probability decides"

        def forward(self, x: FusionInputs) -> torch.Tensor:
            logp = torch.stack([x.branches[m].log_softmax(-1) for m in x.branches])  # (M, B, C)
            present = torch.stack([x.present[m] for m in x.branches])  # (M, B)
            confidence = logp.amax(-1).masked_fill(~present, float("-inf"))  # (M, B)
            best = confidence.argmax(0)  # (B,)
            return logp[best, torch.arange(logp.shape[1])]  # (B, C)

    yield MaxProb
    FUSIONS.pop("max-prob")


@pytest.fixture
def learned_weights():
    """A new mode with its own parameters (as a reliability-aware mode may have): weighted logit sum."""

    @register_fusion("learned-weights")
    class LearnedWeights(Fusion):
        description = "sum of the present branches' logits with one learned weight per modality"

        def __init__(self, config: ModelConfig) -> None:
            super().__init__(config)
            self.weights = nn.Parameter(torch.ones(len(config.modalities)))

        def forward(self, x: FusionInputs) -> torch.Tensor:
            terms = [w * x.present[m].unsqueeze(1) * x.branches[m] for w, m in zip(self.weights, sorted(x.present))]
            return torch.stack(terms).sum(0)  # (B, C)

    yield LearnedWeights
    FUSIONS.pop("learned-weights")


def test_builtin_modes_are_registered_with_one_line_descriptions():
    assert {"ume", "mma", "naive", "reliability"} <= set(list_fusions())
    for name in ("ume", "mma", "naive", "reliability"):
        cls = get_fusion(name)
        assert cls.name == name and cls.description and "\n" not in cls.description
    assert not get_fusion("ume").uses_fill and get_fusion("mma").uses_fill


def test_unknown_mode_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown fusion 'early'; known: .*mma, naive, reliability, ume"):
        _config("early")


def test_registration_is_checked():
    with pytest.raises(ValueError, match="already registered"):

        @register_fusion("ume")
        class Other(Fusion):
            description = "another ume"

    with pytest.raises(ValueError, match="one-line description"):
        register_fusion("undocumented")(type("Undocumented", (Fusion,), {}))
    with pytest.raises(TypeError):
        register_fusion("not-a-module")(int)
    assert {"undocumented", "not-a-module"}.isdisjoint(FUSIONS)


def test_a_new_mode_is_one_class(max_prob, tmp_path):
    torch.manual_seed(0)
    model = MultiModalModel(_config("max-prob")).eval()
    assert len(model.missing_tokens) == 0  # the mode does not use fill: no missing tokens are created
    x = _inputs(model)
    with torch.no_grad():
        out = model(x, PRESENT)
    p = {m: out.branches[m].softmax(-1) for m in out.branches}
    for i in range(4):
        candidates = [m for m in ("image", "text") if PRESENT[m][i]]
        best = max(candidates, key=lambda m: float(p[m][i].max()))
        assert torch.allclose(out.fused_probs()[i], p[best][i], atol=1e-6)

    save_pretrained(model, tmp_path / "ck")
    card = (tmp_path / "ck" / "README.md").read_text()
    assert "`max-prob` (the present branch with the highest top-class probability decides)" in card
    loaded = from_pretrained(tmp_path / "ck")
    assert loaded.config == model.config and type(loaded.fusion) is max_prob
    with torch.no_grad():
        assert torch.equal(loaded(x, PRESENT).fused, out.fused)


def test_a_mode_with_parameters_saves_them(learned_weights, tmp_path):
    torch.manual_seed(0)
    model = MultiModalModel(_config("learned-weights")).eval()
    with torch.no_grad():
        model.fusion.weights.copy_(torch.tensor([0.25, 2.0]))
    x = _inputs(model)
    with torch.no_grad():
        out = model(x, PRESENT)
    expected = (
        0.25 * PRESENT["image"].unsqueeze(1) * out.branches["image"]
        + 2.0 * PRESENT["text"].unsqueeze(1) * out.branches["text"]
    )
    assert torch.allclose(out.fused, expected, atol=1e-6)
    save_pretrained(model, tmp_path / "ck")
    loaded = from_pretrained(tmp_path / "ck")
    assert torch.equal(loaded.fusion.weights, model.fusion.weights)
    with torch.no_grad():
        assert torch.equal(loaded(x, PRESENT).fused, out.fused)


def test_builtin_modes_keep_no_state_of_their_own():
    """Existing checkpoints store no ``fusion.*`` tensors: the built-in modes must not add any."""
    for name in ("ume", "mma", "naive"):
        model = MultiModalModel(_config(name))
        assert not [k for k in model.persistent_state_dict() if k.startswith("fusion.")]


@pytest.mark.parametrize(("fusion", "fill"), [("ume", "drop"), ("mma", "drop"), ("mma", "zero"), ("naive", "token")])
def test_weights_of_one_are_bitwise_the_unweighted_output(fusion, fill):
    """The hook the reliability mode uses: weight 1 changes nothing (bitwise); other weights scale present terms."""
    torch.manual_seed(0)
    model = MultiModalModel(_config(fusion, fill)).eval()
    for p in model.missing_tokens.values():
        torch.nn.init.normal_(p)
    assert model.fusion.takes_weights
    with torch.no_grad():
        feats = model.encode(_inputs(model))
        branches = {m: model.heads[m](f) for m, f in feats.items()}
        x = FusionInputs(branches, feats, PRESENT, model.heads, model.missing_tokens, fill, 3)
        plain = model.fusion(x)
        ones = {m: torch.ones(4) for m in PRESENT}
        assert torch.equal(model.fusion(x, ones), plain)
        half = {"image": torch.full((4,), 0.5), "text": torch.ones(4)}
        weighted = model.fusion(x, half)
    assert torch.equal(weighted[1], plain[1])  # row 1 has no image: an image weight changes nothing
    assert not torch.allclose(weighted[0], plain[0])  # row 0 has both: the image counts half


def test_branch_weights_follow_reliability_relative_to_the_best_present_branch():
    from ume_mma.fusion.reliability import branch_weights

    r = {"image": torch.tensor([0.9, 0.1, 0.1, 0.5]), "text": torch.tensor([0.9, 0.9, 0.05, 0.5])}
    w = branch_weights(r, PRESENT, alpha=2.0)
    assert torch.equal(w["image"], torch.tensor([1.0, 1.0, 1.0, 1.0]))  # the best present (or missing row 1)
    assert torch.equal(w["text"], torch.tensor([1.0, 1.0, 1.0, 1.0]))  # row 2: text is missing
    r["image"][0] = 0.45
    w = branch_weights(r, PRESENT, alpha=2.0)
    assert float(w["image"][0]) == pytest.approx(0.25) and float(w["text"][0]) == 1.0
    assert all(torch.equal(v, torch.ones(4)) for v in branch_weights(r, PRESENT, alpha=0.0).values())
