"""The per-branch correctness estimate (ume_mma.correctness, ume_mma.correctness_fit), on a tiny real model
trained here: a probability, monotone where it must be, fitted on validation + fitting drifts only, stored in
the checkpoint config (older checkpoints load unchanged)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image

from tests.tiny import make_noise_shift, make_tiny_dataset, train_tiny_model
from ume_mma import correctness as co
from ume_mma import correctness_fit as cf
from ume_mma.calibrate import calibrate, split_features
from ume_mma.checkpoint import from_pretrained, save_pretrained
from ume_mma.data.format import load_dataset
from ume_mma.drift import Drift, list_drifts
from ume_mma.models import MultiModalModel
from ume_mma.registry import get_spec

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_checkpoint_v1"
ENC = {"image": get_spec("scratch.image-cnn").to_dict(), "audio": get_spec("scratch.logmel-cnn").to_dict()}


class Tiny(NamedTuple):
    root: Path
    model: MultiModalModel  # calibrated (reliability fields), no correctness
    fitted: MultiModalModel  # the same with its correctness estimate
    config: dict
    report: dict


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Tiny:
    """A two-branch model (image band + audio tone) trained for a few seconds, calibrated, with its estimate."""
    root = make_tiny_dataset(tmp_path_factory.mktemp("corr") / "data", {"train": 20, "val": 12, "test": 12})
    model = train_tiny_model(root)
    data = load_dataset(root)
    sets = {s: split_features(model, data.split(s).samples, None, s) for s in ("train", "val")}
    calibrated, _ = calibrate(model, sets["train"], sets["val"], fusion="keep")
    config, report = cf.fit_on_dataset(calibrated, root)
    return Tiny(root, calibrated, cf.with_correctness(calibrated, config), config, report)


_MEANS: dict[tuple[str, str], tuple[float, float]] = {}


def _mean_estimate(tiny: Tiny, modality: str, drift: Drift | None) -> tuple[float, float]:
    """(the branch's accuracy, its mean estimate) on the test split through ``drift`` (computed once each)."""
    key = (modality, str(drift))
    if key not in _MEANS:
        _MEANS[key] = _measure(tiny, modality, drift)
    return _MEANS[key]


def _measure(tiny: Tiny, modality: str, drift: Drift | None) -> tuple[float, float]:
    test = load_dataset(tiny.root, split="test").samples
    feats, y = cf.drifted_features(tiny.fitted, test, modality, drift, seed=0)
    est = co.estimate(tiny.fitted, {modality: feats})[modality]
    return float(cf.outcomes(tiny.fitted, feats, y, modality).double().mean()), float(est.double().mean())


# Families that make the tiny branches worse (accuracy falls with severity). Left out: image.crop, which on this
# toy task moves the class band: a cropped image is a clean-looking image of another class, a change of meaning
# that no signal of the branch can see (measured: accuracy 0.89 -> 0.58, estimate 0.988 -> 0.990).
WORSENING = [
    ("audio", "audio.white-noise"),
    ("audio", "audio.speed"),
    ("audio", "audio.bandlimit"),
    ("audio", "audio.pitch"),
    ("image", "image.contrast"),
    ("image", "image.downsample"),
    ("image", "image.gamma"),
]


@pytest.mark.parametrize(("modality", "family"), WORSENING)
def test_a_branch_made_worse_never_gets_a_higher_mean_estimate(tiny, modality, family):
    rows = [_mean_estimate(tiny, modality, Drift(family, s) if s else None) for s in (0.0, 0.5, 1.0)]
    acc, est = zip(*rows)
    assert acc[2] < acc[0], f"{family} does not make the {modality} branch worse here: {acc}"
    assert est[0] >= est[1] >= est[2], f"{family}: accuracy {acc}, mean estimate {est}"


def test_the_estimate_is_a_probability_even_for_extreme_inputs(tiny):
    for scale in (0.0, 1e-3, 1.0, 1e3, 1e6):
        feats = {m: torch.randn(5, tiny.fitted.encoders[m].embed_dim) * scale for m in tiny.fitted.modalities}
        for m, p in co.estimate(tiny.fitted, feats).items():
            assert p.shape == (5,) and torch.isfinite(p).all() and (p >= 0).all() and (p <= 1).all(), (m, scale)


def test_fitting_reads_the_fitting_families_only(tiny):
    for m in ("audio", "image"):
        conditions = set(tiny.report[m]["accuracy"])
        fit = {f"{n}@{s:g}" for n in list_drifts(m, "fit") for s in cf.SEVERITIES}
        assert conditions == {"clean"} | fit
        assert not any(c.startswith(tuple(list_drifts(m, "heldout"))) for c in conditions)
    assert tiny.config["fitted_on"]["split"] == "val"
    assert tiny.config["fitted_on"]["held_out_families"]["image"] == list_drifts("image", "heldout")


def test_fitting_never_reads_a_test_or_shifted_split(tiny, tmp_path):
    """Poison the test split (other images, other labels) and build a shifted set: the fit is bitwise the same."""
    poisoned = tmp_path / "data"
    poisoned.mkdir()
    for p in tiny.root.rglob("*"):
        if p.is_file():
            (poisoned / p.relative_to(tiny.root)).parent.mkdir(parents=True, exist_ok=True)
            (poisoned / p.relative_to(tiny.root)).write_bytes(p.read_bytes())
    rows = [json.loads(line) for line in (poisoned / "metadata.jsonl").read_text().splitlines()]
    rng = np.random.default_rng(0)
    for r in rows:
        if r["split"] == "test":
            r["label"] = "a"
            Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(poisoned / r["image"])
    (poisoned / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config, _ = cf.fit_on_dataset(tiny.model, poisoned)
    config["fitted_on"].pop("data")
    assert config == {**tiny.config, "fitted_on": {k: v for k, v in tiny.config["fitted_on"].items() if k != "data"}}
    with pytest.raises(ValueError, match="never fitted on a test split"):
        cf.fit_on_dataset(tiny.model, poisoned, split="test")
    shifted = make_noise_shift(tiny.root, tmp_path / "shifted")
    (shifted / "build_info.json").write_text(json.dumps({"benchmark": "tiny-shifted"}))
    with pytest.raises(ValueError, match="is a shifted set, kept for measuring"):
        cf.fit_on_dataset(tiny.model, shifted, split="val")


def test_the_estimate_tells_wrong_from_right_on_its_fitting_rows(tiny):
    """On the rows it was fitted on, right answers get higher estimates than wrong ones (AUROC well above 0.5)."""
    from ume_mma.reliability import auroc

    rows = cf.fit_rows(tiny.model, load_dataset(tiny.root, split="val").samples)
    for m, conds in rows.items():
        sig = torch.cat([s for s, _ in conds.values()])
        right = torch.cat([r for _, r in conds.values()])
        p = co.Correctness(tiny.config)({m: sig})[m]
        assert auroc(p[right], p[~right]) > 0.85, m


def test_signals_of_known_logits():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    s = co.signals(logits, 2.0, torch.tensor([0.5, 100.0]))
    p1 = math.exp(1) / (math.exp(1) + 2)
    assert s.shape == (2, len(co.FEATURES))
    assert s[0, 0] == pytest.approx(math.log(p1 / (1 - p1)))
    assert s[0, 1] == pytest.approx(p1 - 1 / (math.exp(1) + 2))
    assert s[1, 2] == pytest.approx(1.0) and s[1, 1] == pytest.approx(0.0)
    assert s[0, 3] == pytest.approx(math.log(math.exp(1) + 2))
    assert s[1, 4] == co.Z_CLAMP[1] and s[0, 5] == 0.0
    assert s[0, 6] == 0.0 and s[0, 7] == pytest.approx(p1 * 0.5) and s[1, 7] == pytest.approx(co.Z_CLAMP[1] / 3)
    assert s[0, 8] == 0.0  # p1 * norm, no norm check


def test_the_trust_score_compares_the_answer_s_class_with_the_nearest_other():
    log_d2 = np.log(np.array([[1.0, 4.0, 9.0], [1.0, 4.0, 9.0]]))
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 3.0]])  # answers: the nearest class, the farthest
    t = co.trust_score(logits, log_d2)
    assert t[0] == pytest.approx(math.log(4.0)) and t[1] == pytest.approx(-math.log(9.0))
    s = co.signals(logits, 1.0, torch.zeros(2), None, t)
    assert s[0, 6] == pytest.approx(math.log(4.0))


def test_class_distances_are_the_reliability_s_before_its_minimum(tiny):
    for m in tiny.model.modalities:
        stats = tiny.model.reliability[m]
        x = torch.randn(7, tiny.model.encoders[m].embed_dim, dtype=torch.float64)
        d = co.class_log_distances(stats, x.numpy())
        assert d.shape == (7, len(tiny.model.labels))
        assert np.allclose(d.min(1), np.log(stats.distance(x).numpy()), rtol=0, atol=1e-9)
        at_mean = co.class_log_distances(stats, stats.means.double().numpy())  # each class mean: nearest itself
        assert (at_mean.argmin(1) == np.arange(len(at_mean))).all()


def test_an_estimate_fitted_on_the_six_older_signals_loads_and_estimates_unchanged(tiny, tmp_path):
    """Checkpoints fitted before the trust terms name FEATURES_V1: their estimate reads those six columns."""
    import dataclasses

    rows = cf.fit_rows(tiny.model, load_dataset(tiny.root, split="val").samples)
    old = {"model": co.MODEL, "features": list(co.FEATURES_V1), "fitted_on": {}, "branches": {}}
    for m, conds in rows.items():
        sig = torch.cat([s for s, _ in conds.values()])[:, :6]
        right = torch.cat([r for _, r in conds.values()])
        old["branches"][m] = co.fit_logistic(sig, right, features=co.FEATURES_V1)
    model = cf.with_correctness(tiny.model, old)
    save_pretrained(model, tmp_path / "v1")
    back = from_pretrained(tmp_path / "v1")
    assert back.config.correctness["features"] == list(co.FEATURES_V1)
    feats = {m: torch.randn(4, back.encoders[m].embed_dim) for m in back.modalities}
    sigs = co.branch_signals(back, feats)
    for m, p in co.estimate(back, feats).items():
        b = old["branches"][m]
        mean, scale, w = (torch.tensor(b[k], dtype=torch.float64) for k in ("mean", "scale", "weights"))
        x = ((sigs[m][:, :6] - mean) / scale) @ w
        assert torch.allclose(p.double(), torch.sigmoid(x + b["bias"]), atol=1e-6), m
    with pytest.raises(ValueError, match="need 6 numbers"):
        bad = {**old, "branches": {m: tiny.config["branches"][m] for m in old["branches"]}}
        dataclasses.replace(tiny.model.config, correctness=bad)


def test_it_round_trips_in_the_checkpoint_config(tiny, tmp_path):
    save_pretrained(tiny.fitted, tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert cfg["format_version"] == 3 and cfg["correctness"]["branches"].keys() == {"audio", "image"}
    loaded = from_pretrained(tmp_path / "ck")
    feats = {m: torch.randn(4, loaded.encoders[m].embed_dim) for m in loaded.modalities}
    a, b = co.estimate(tiny.fitted, feats), co.estimate(loaded, feats)
    assert all(torch.equal(a[m], b[m]) for m in a)
    save_pretrained(tiny.model, tmp_path / "plain")
    plain = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert "correctness" not in plain and plain["format_version"] == 2


def test_older_checkpoints_load_unchanged():
    model = from_pretrained(FIXTURE)
    assert model.config.correctness is None and "correctness" not in model.config.to_dict()
    assert model.config.format_version == 1
    with pytest.raises(ValueError, match="has no correctness estimate"):
        co.estimate(model, {})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["branches"]["image"].update(weights=[0.0] * 3), "mean, scale and weights need 9 numbers"),
        (lambda c: c["branches"]["image"]["weights"].__setitem__(4, 0.5), "the weight of 'distance' must be <= 0"),
        (lambda c: c["branches"]["image"]["weights"].__setitem__(7, 0.5), "the weight of 'p1_distance' must be <= 0"),
        (lambda c: c["branches"]["image"]["weights"].__setitem__(6, -0.5), "the weight of 'trust' must be >= 0"),
        (lambda c: c["branches"]["image"].update(bias=float("nan")), "needs finite numbers"),
        (lambda c: c["branches"]["image"]["scale"].__setitem__(0, 0.0), "scales > 0"),
        (lambda c: c.update(features=["confidence"]), "correctness needs model 'logistic' and features"),
        (lambda c: c["branches"].update(text=c["branches"]["image"]), "'text', which is not a modality"),
    ],
)
def test_a_malformed_config_is_refused_in_words(tiny, change, message):
    import copy
    import dataclasses

    bad = copy.deepcopy(tiny.config)
    change(bad)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        dataclasses.replace(tiny.model.config, correctness=bad)


def test_correctness_needs_the_reliability_fields(tiny):
    import dataclasses

    with pytest.raises(ValueError, match="needs that branch's reliability fields"):
        dataclasses.replace(tiny.model.config, reliability=None, correctness=tiny.config)


def test_fitting_needs_right_and_wrong_answers():
    with pytest.raises(ValueError, match="needs right and wrong answers, got 3/3"):
        co.fit_logistic(torch.randn(3, len(co.FEATURES)), torch.ones(3, dtype=torch.bool))
