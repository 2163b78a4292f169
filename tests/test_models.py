import pytest
import torch

from ume_mma.errors import InputError
from ume_mma.models import ModelConfig, MultiModalModel
from ume_mma.registry import get_spec

ENC = {
    "audio": get_spec("scratch.logmel-cnn").to_dict(),
    "image": get_spec("scratch.image-cnn").to_dict(),
    "text": get_spec("scratch.hashed-text").to_dict(),
}


def make(fusion="mma", fill="zero", mods=("audio", "image", "text"), **kw):
    torch.manual_seed(0)
    cfg = ModelConfig(
        task="t", labels=["x", "y", "z"], encoders={m: ENC[m] for m in mods}, fusion=fusion, fill=fill, **kw
    )
    model = MultiModalModel(cfg).eval()
    for p in model.missing_tokens.values():
        torch.nn.init.normal_(p)
    return model


def feats(b=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(b, 128, generator=g) for m in ("audio", "image", "text")}


def full(b=5):
    return {m: torch.ones(b, dtype=torch.bool) for m in ("audio", "image", "text")}


@pytest.mark.parametrize(
    "fusion,fill", [("ume", "drop"), ("mma", "drop"), ("mma", "zero"), ("mma", "token"), ("naive", "zero")]
)
def test_missing_modality_leaves_other_branches_unchanged(fusion, fill):
    model = make(fusion, fill)
    f = feats()
    a = model.forward_features(f, full())
    present = full()
    present["audio"] = torch.tensor([False, True, False, True, True])
    b = model.forward_features(f, present)
    for m in ("image", "text"):
        assert torch.equal(a.branches[m], b.branches[m])
    # samples that keep every modality keep their fused output
    keep = present["audio"]
    assert torch.allclose(a.fused[keep], b.fused[keep])
    assert not torch.allclose(a.fused[~keep], b.fused[~keep])


def test_fill_strategies_differ_and_drop_equals_sum_of_present_logits():
    f = feats()
    present = full()
    present["text"] = torch.zeros(5, dtype=torch.bool)
    outs = {}
    for fill in ("drop", "zero", "token"):
        model = make("mma", fill)
        outs[fill] = model.forward_features(f, present).fused
    drop_model = make("mma", "drop")
    expected = drop_model.heads["audio"](f["audio"]) + drop_model.heads["image"](f["image"])
    assert torch.allclose(outs["drop"], expected, atol=1e-6)
    zero_model = make("mma", "zero")
    assert torch.allclose(outs["zero"], expected + zero_model.heads["text"].bias, atol=1e-6)
    assert not torch.allclose(outs["token"], outs["zero"])


def test_missing_modality_without_features_equals_masked():
    model = make("mma", "token")
    f = feats()
    present = full()
    present["text"] = torch.zeros(5, dtype=torch.bool)
    with_text = model.forward_features(f, present).fused
    no_key = model.forward_features(
        {m: v for m, v in f.items() if m != "text"}, {m: v for m, v in present.items() if m != "text"}
    ).fused
    assert torch.allclose(with_text, no_key, atol=1e-6)


def test_ume_averages_probabilities_of_present_modalities_only():
    model = make("ume", ume_weights={"audio": 2.0, "image": 1.0, "text": 1.0})
    f = feats()
    present = full()
    present["image"] = torch.tensor([True, False, True, False, True])
    out = model.forward_features(f, present)
    p = {m: out.branches[m].softmax(-1) for m in out.branches}
    for i in range(5):
        ws = {"audio": 2.0, "text": 1.0} | ({"image": 1.0} if present["image"][i] else {})
        expected = sum(w * p[m][i] for m, w in ws.items()) / sum(ws.values())
        assert torch.allclose(out.fused_probs()[i], expected, atol=1e-5)


def test_every_sample_needs_a_modality():
    model = make("ume")
    present = {m: torch.tensor([True, False]) for m in ("audio", "image", "text")}
    with pytest.raises(InputError, match="at least one present modality"):
        model.forward_features(feats(2), present)


def test_from_unimodal_copies_encoders_and_heads():
    uni = {m: make("ume", mods=(m,)) for m in ("audio", "image")}
    for m, u in uni.items():
        torch.nn.init.normal_(u.heads[m].weight)
    mma = MultiModalModel.from_unimodal(uni, "mma", fill="zero")
    ume = MultiModalModel.from_unimodal(uni, "ume")
    for m in uni:
        assert torch.equal(mma.heads[m].weight, uni[m].heads[m].weight)
        for k, v in uni[m].encoders[m].state_dict().items():
            assert torch.equal(ume.encoders[m].state_dict()[k], v)
    x = torch.randn(3, 1, 28, 28)
    assert torch.allclose(
        uni["image"].eval()({"image": x}).branches["image"], ume.eval()({"image": x}).branches["image"]
    )


def test_config_rejects_unknown_fusion_and_fill():
    with pytest.raises(ValueError):
        ModelConfig(task="t", labels=["a", "b"], encoders={"image": ENC["image"]}, fusion="early")
    with pytest.raises(ValueError):
        ModelConfig(task="t", labels=["a", "b"], encoders={"image": ENC["image"]}, fill="mean")
    with pytest.raises(ValueError, match="unknown model config fields"):
        ModelConfig.from_dict({"task": "t", "labels": ["a", "b"], "encoders": {"image": ENC["image"]}, "bogus": 1})


def test_per_group_branch_accuracy():
    from ume_mma.evaluate import evaluate_features

    model = make("ume", mods=("audio", "image"))
    f = {m: v for m, v in feats(6).items() if m != "text"}
    present = {m: torch.ones(6, dtype=torch.bool) for m in ("audio", "image")}
    targets = model.forward_features(f, present).branches["audio"].argmax(-1)  # audio is right everywhere
    targets[0] = (targets[0] + 1) % 3  # ... but on sample 0
    out = evaluate_features(model, f, present, targets, groups=["s1", "s1", "s2", "s2", "s2", None])
    assert out["branches_by_group"]["audio"] == {"s1": 0.5, "s2": 1.0}


def test_logmel_augmentation_is_seeded_and_opt_in():
    from ume_mma.registry import create_encoder

    spec = get_spec("scratch.logmel-cnn")
    x = torch.randn(3, 40, 81)
    assert torch.equal(create_encoder(spec).augment(x, torch.Generator().manual_seed(0)), x)  # off by default
    aug = create_encoder(
        spec.replace(
            options={**spec.options, "augment": {"stretch": [0.8, 1.5], "shift": 5, "freq_mask": 4, "time_mask": 6}}
        )
    )
    a = aug.augment(x, torch.Generator().manual_seed(1))
    b = aug.augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
