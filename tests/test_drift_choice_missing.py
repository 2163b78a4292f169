"""The fusion choice under drift also sees missing modalities (ume_mma.drift_choice): with three branches, a
weighting decides between the two that remain when one is missing, so the choice scores each modality missing, on
clean validation and under the other modalities' held-out drift; with two branches nothing is added."""

from __future__ import annotations

import pytest
import torch

from tests.tiny import make_tiny_dataset, train_tiny_model
from ume_mma import correctness_fit as cf
from ume_mma import drift_choice as dc
from ume_mma.calibrate import FeatureSet, calibrate, split_features
from ume_mma.data.format import load_dataset


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    splits = {"train": 16, "val": 8, "test": 2}
    root = make_tiny_dataset(tmp_path_factory.mktemp("dcm") / "data", splits, with_text=True)
    model = train_tiny_model(root, text=True)
    data = load_dataset(root)
    sets = {s: split_features(model, data.split(s).samples, None, s) for s in ("train", "val")}
    calibrated, _ = calibrate(model, sets["train"], sets["val"], fusion="keep")
    est, _ = cf.fit_on_dataset(calibrated, root)
    fitted = cf.with_correctness(calibrated, est).eval()
    return fitted, dc.drift_set(fitted, data.split("val").samples, severities=(1.0,))


def test_three_modalities_are_chosen_on_each_one_missing_too(three):
    model, data = three
    n = len(data.clean.targets)
    drifted = [c for c in data.conditions if "+" not in c and not c.startswith("without-")]
    assert drifted
    for k in model.modalities:
        alone = data.conditions[f"without-{k}"]
        assert not alone.present[k].any() and len(alone.targets) == n  # every row keeps two modalities
        for m in model.modalities:
            if m != k:
                assert torch.equal(alone.present[m], data.clean.present[m])
        for c in drifted:
            name = f"{c}+without-{k}"
            if c.split(".")[0] == k:
                assert name not in data.conditions  # a missing modality is not drifted
            else:
                cond = data.conditions[name]
                assert not cond.present[k].any()
                m = c.split(".")[0]
                assert torch.equal(cond.feats[m], data.conditions[c].feats[m])  # the drift is kept
    _, record = dc.choose(model, data)
    assert {f"without-{k}" for k in model.modalities} <= set(record["conditions"])
    assert "with each modality missing" in record["rule"]


def test_a_row_with_nothing_left_is_not_scored():
    fs = FeatureSet(
        {"image": torch.randn(3, 4), "text": torch.randn(3, 4)},
        {"image": torch.tensor([True, True, False]), "text": torch.tensor([True, False, True])},
        torch.tensor([0, 1, 2]),
    )
    out = dc.without(fs, "image")
    assert out.targets.tolist() == [0, 2] and not out.present["image"].any()
    assert torch.equal(out.feats["text"], fs.feats["text"][[0, 2]])


def test_two_modalities_get_no_missing_conditions(tmp_path):
    root = make_tiny_dataset(tmp_path / "data", {"train": 8, "val": 4, "test": 2})
    model = train_tiny_model(root).eval()
    data = dc.drift_set(model, load_dataset(root).split("val").samples, severities=(1.0,))
    assert data.conditions and not any("without" in c for c in data.conditions)
