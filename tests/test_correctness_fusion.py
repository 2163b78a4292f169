"""Fusion by estimated correctness (ume_mma.fusion.correctness), the abstain flag and the choice under held-out
drift (ume_mma.drift_choice), on a tiny real model trained here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

from tests.tiny import make_tiny_dataset, train_tiny_model
from ume_mma import correctness_fit as cf
from ume_mma import drift_choice as dc
from ume_mma.calibrate import calibrate, split_features
from ume_mma.checkpoint import from_pretrained, save_pretrained
from ume_mma.correctness import uncertain
from ume_mma.data.format import load_dataset
from ume_mma.fusion.reliability import branch_weights
from ume_mma.models import MultiModalModel


class Tiny(NamedTuple):
    root: Path
    fitted: MultiModalModel  # calibrated, with a correctness estimate, fusion mma
    val: dc.DriftSet


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Tiny:
    root = make_tiny_dataset(tmp_path_factory.mktemp("cfus") / "data", {"train": 20, "val": 12, "test": 12})
    model = train_tiny_model(root)
    data = load_dataset(root)
    sets = {s: split_features(model, data.split(s).samples, None, s) for s in ("train", "val")}
    calibrated, _ = calibrate(model, sets["train"], sets["val"], fusion="keep")
    est, _ = cf.fit_on_dataset(calibrated, root)
    fitted = cf.with_correctness(calibrated, est).eval()
    return Tiny(root, fitted, dc.drift_set(fitted, data.split("val").samples, severities=(1.0,)))


def _feats(tiny: Tiny) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    return tiny.val.clean.feats, tiny.val.clean.present


def _present(feats: dict[str, torch.Tensor], keep: dict[str, bool]) -> dict[str, torch.Tensor]:
    n = len(next(iter(feats.values())))
    return {m: torch.full((n,), keep[m], dtype=torch.bool) for m in feats}


@pytest.mark.parametrize("alpha", [0.5, 4.0])
def test_one_present_branch_fuses_bitwise_as_the_base(tiny, alpha):
    feats, _ = _feats(tiny)
    base = dc.configure(tiny.fitted, "mma")
    weighed = dc.configure(tiny.fitted, "correctness", alpha)
    for m in feats:
        present = _present(feats, {k: k == m for k in feats})
        a = base.forward_features(feats, present).fused
        b = weighed.forward_features(feats, present).fused
        assert torch.equal(a, b), m


def test_a_missing_modality_behaves_as_in_the_base_and_alpha_zero_is_the_base(tiny):
    feats, _ = _feats(tiny)
    both = _present(feats, {m: True for m in feats})
    both["image"][::3] = False  # some rows miss the image: the base's fill term, never weighted
    base = dc.configure(tiny.fitted, "mma").forward_features(feats, both)
    zero = dc.configure(tiny.fitted, "correctness", 0.0).forward_features(feats, both)
    assert torch.equal(base.fused, zero.fused)
    strong = dc.configure(tiny.fitted, "correctness", 8.0).forward_features(feats, both)
    missing = ~both["image"]
    assert torch.equal(base.fused[missing], strong.fused[missing])


def test_the_branch_estimated_wrong_fades_and_the_one_estimated_right_counts():
    present = {"audio": torch.tensor([True, True, True]), "image": torch.tensor([True, True, False])}
    est = {"audio": torch.tensor([0.9, 0.2, 0.1]), "image": torch.tensor([0.3, 0.8, 0.9])}
    w = branch_weights(est, present, alpha=2.0)
    assert torch.allclose(w["audio"], torch.tensor([1.0, (0.2 / 0.8) ** 2, 1.0]))
    assert torch.allclose(w["image"], torch.tensor([(0.3 / 0.9) ** 2, 1.0, 1.0]))


def test_a_dead_zone_keeps_branches_near_the_best_at_full_weight():
    present = {"audio": torch.tensor([True, True]), "image": torch.tensor([True, True])}
    est = {"audio": torch.tensor([0.9, 0.9]), "image": torch.tensor([0.7, 0.3])}
    w = branch_weights(est, present, alpha=2.0, tau=0.5)
    assert w["image"][0] == 1.0  # 0.7 is within a factor 0.5 of 0.9: trusted as in the base
    assert torch.isclose(w["image"][1], torch.tensor((0.3 / (0.5 * 0.9)) ** 2))
    assert bool((w["audio"] == 1.0).all())


def test_the_model_output_carries_the_estimate_weights_and_uncertain(tiny):
    feats, present = _feats(tiny)
    out = dc.configure(tiny.fitted, "correctness", 2.0).forward_features(feats, present)
    assert set(out.correctness) == set(feats)
    for m, c in out.correctness.items():
        assert c.shape == present[m].shape and bool(((c >= 0) & (c <= 1)).all())
    expect = branch_weights(out.correctness, out.present, 2.0)
    for m in feats:
        assert torch.allclose(out.weights[m], expect[m])
    assert out.uncertain is not None and out.uncertain.dtype == torch.bool


def test_uncertain_when_every_present_branch_is_below_the_threshold():
    present = {"audio": torch.tensor([True, True, False, True]), "image": torch.tensor([True, False, True, True])}
    est = {"audio": torch.tensor([0.4, 0.6, 0.9, 0.1]), "image": torch.tensor([0.3, 0.1, 0.2, 0.7])}
    assert uncertain(est, present).tolist() == [True, False, True, False]
    assert uncertain(est, present, 1.0).tolist() == [True, True, True, True]
    assert uncertain({}, present).tolist() == [False] * 4  # no estimate: never uncertain


def test_the_abstain_threshold_is_read_from_the_config(tiny):
    feats, present = _feats(tiny)
    est = dict(tiny.fitted.config.correctness)
    always = cf.with_correctness(tiny.fitted, est | {"abstain": 1.0})
    never = cf.with_correctness(tiny.fitted, est | {"abstain": 0.0})
    assert bool(always.forward_features(feats, present).uncertain.all())
    assert not bool(never.forward_features(feats, present).uncertain.any())


def test_the_choice_keeps_in_distribution_accuracy_within_the_cost(tiny):
    chosen, record = dc.choose(tiny.fitted, tiny.val)
    table = record["table"]
    assert list(table)[0] == "mma" and any(k.startswith("correctness@") for k in table)
    assert record["conditions"] and all(c.split("@")[0] in _heldout() for c in record["conditions"])

    def ok(r: dict) -> bool:
        return r["full"] >= table["mma"]["full"] - dc.COST - 1e-9 and r["worst"] >= -dc.COST - 1e-9

    assert ok(table[record["chosen"]]) and table["mma"]["worst"] == 0.0
    best = max(r["drift_mean"] for r in table.values() if ok(r))
    assert table[record["chosen"]]["drift_mean"] == best
    assert chosen.config.fusion == record["mode"]
    assert chosen.config.correctness["choice"]["chosen"] == record["chosen"]


def _heldout() -> set[str]:
    from ume_mma.drift import list_drifts

    return set(list_drifts(split="heldout"))


def test_the_chosen_model_round_trips_through_a_checkpoint(tiny, tmp_path):
    model = dc.configure(tiny.fitted, "correctness", 4.0)
    save_pretrained(model, tmp_path / "ck")
    back = from_pretrained(tmp_path / "ck").eval()
    assert back.config.fusion == "correctness" and back.config.correctness["alpha"] == 4.0
    feats, present = _feats(tiny)
    a, b = model.forward_features(feats, present), back.forward_features(feats, present)
    assert torch.allclose(a.fused, b.fused, atol=1e-5)
    for m in feats:
        assert torch.allclose(a.correctness[m], b.correctness[m], atol=1e-6)


def test_the_cli_never_reads_the_test_split(tiny, tmp_path):
    """Poison the test split (labels shuffled to nonsense) and see nothing of the choice change."""
    ck = tmp_path / "ck"
    save_pretrained(tiny.fitted, ck)
    args = ["--limit", "12", "--test-split", "none"]
    assert dc.main([str(ck), str(tiny.root), "--out", str(tmp_path / "a"), *args]) == 0
    poisoned = tmp_path / "poisoned"
    import shutil

    shutil.copytree(tiny.root, poisoned)
    meta = poisoned / "metadata.jsonl"
    rows = [json.loads(line) for line in meta.read_text().splitlines()]
    labels = sorted({r["label"] for r in rows})
    for r in rows:
        if r["split"] == "test":
            r["label"] = labels[(labels.index(r["label"]) + 1) % len(labels)]
            for m in ("image", "audio"):
                r.pop(m, None)  # and its media gone
            r["image"] = rows[0]["image"]
    meta.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert dc.main([str(ck), str(poisoned), "--out", str(tmp_path / "b"), *args]) == 0
    a = json.loads((tmp_path / "a" / "config.json").read_text())
    b = json.loads((tmp_path / "b" / "config.json").read_text())
    for c in (a, b):  # the data folder's name is the one difference
        c["correctness"]["fitted_on"].pop("data"), c["correctness"]["choice"].pop("fit")
    assert a["fusion"] == b["fusion"] and a["correctness"] == b["correctness"]


def test_the_cli_refuses_to_choose_on_a_test_split(tiny, tmp_path, capsys):
    assert dc.main([str(tiny.root), str(tiny.root), "--out", str(tmp_path / "x"), "--split", "test"]) == 2
    assert "never chosen on a test split" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def served(tiny, tmp_path_factory):
    """The app on the tiny checkpoint with fusion by correctness, and one that abstains on every input."""
    gr = pytest.importorskip("gradio")
    from gradio_client import Client

    import app
    from ume_mma.predictor import Limits

    root = tmp_path_factory.mktemp("served")
    weighed = dc.configure(tiny.fitted, "correctness", 4.0)
    save_pretrained(weighed, root / "weighed")
    est = dict(weighed.config.correctness) | {"abstain": 1.0}
    save_pretrained(cf.with_correctness(weighed, est), root / "abstains")
    pool = app.PredictorPool(Limits())
    demo = app.build_demo(str(root / "weighed"), pool=pool)
    app.launch_app(demo, prevent_thread_lock=True, quiet=True)
    try:
        yield {"client": Client(demo.local_url, verbose=False), "root": root, "pool": pool, "gr": gr, "app": app}
    finally:
        demo.close()


def _inputs(tiny: Tiny) -> dict[str, str]:
    row = load_dataset(tiny.root).split("test").samples[0]
    return {"image": str(tiny.root / row.image), "audio": str(tiny.root / row.audio)}


def test_predict_returns_each_branch_s_estimate_weight_and_the_uncertain_flag(served, tiny):
    from gradio_client import handle_file

    files = {k: handle_file(v) for k, v in _inputs(tiny).items()}
    r = served["client"].predict(**files, checkpoint=str(served["root"] / "weighed"), api_name="/predict")
    assert r["fusion"] == "correctness" and r["uncertain"] is r["fused"]["uncertain"]
    assert isinstance(r["uncertain"], bool)
    for m, b in r["branches"].items():
        assert 0 <= b["estimated_accuracy"] <= 1 and 0 < b["fusion_weight"] <= 1
        assert r["fused"]["weights"][m] == b["fusion_weight"]
    assert max(b["fusion_weight"] for b in r["branches"].values()) == 1.0
    sure = served["client"].predict(**files, checkpoint=str(served["root"] / "abstains"), api_name="/predict")
    assert sure["uncertain"] is True


def test_the_cards_show_estimate_weight_and_the_uncertain_note(served, tiny):
    gr, app = served["gr"], served["app"]
    render = app.make_render(gr.Label(num_top_classes=3), gr.JSON())
    ref = str(served["root"] / "abstains")
    fns = app.handlers(served["pool"], ref, render)
    inputs = _inputs(tiny)
    views, label = fns.predict_ui(None, inputs["audio"], inputs["image"], "", ref)
    assert "uncertain here: annotate this" in label["label"]  # the Predict tab asks for the true label
    both = views["subsets"]["audio+image"]
    assert "uncertain" in both[0]["label"]
    labels = [v["label"] for v in both[1:5] if isinstance(v, dict) and "label" in v]
    shown = [x for x in labels if x.startswith(("audio", "image"))]
    assert len(shown) == 2 and all("est." in x and "% right" in x and "weight" in x for x in shown)
    alone = views["subsets"]["image"]
    image_card = next(v["label"] for v in alone[1:5] if v.get("label", "").startswith("image"))
    assert "weight 1.00" in image_card  # alone, a branch has weight 1 whatever its estimate


def test_uncertain_inputs_kept_by_the_server_import_as_a_queue(tiny, tmp_path):
    """app.py --keep-uncertain: an uncertain prediction's inputs land in a dataset folder (once, however often
    served) that ume_mma.annotate imports as a queue; a sure one is not kept."""
    pytest.importorskip("gradio")
    from gradio_client import Client, handle_file

    import app
    from ume_mma.annotate import AnnotationQueue, import_dataset, open_store
    from ume_mma.predictor import Limits

    weighed = dc.configure(tiny.fitted, "correctness", 4.0)
    est = dict(weighed.config.correctness)
    save_pretrained(cf.with_correctness(weighed, est | {"abstain": 1.0}), tmp_path / "abstains")
    save_pretrained(cf.with_correctness(weighed, est | {"abstain": 0.0}), tmp_path / "sure")
    kept = tmp_path / "kept"
    demo = app.build_demo(str(tmp_path / "abstains"), pool=app.PredictorPool(Limits()), keep_uncertain=str(kept))
    app.launch_app(demo, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        files = {k: handle_file(v) for k, v in _inputs(tiny).items()}
        for _ in range(2):
            assert client.predict(**files, api_name="/predict")["uncertain"] is True
        assert client.predict(**files, checkpoint=str(tmp_path / "sure"), api_name="/predict")["uncertain"] is False
    finally:
        demo.close()
    rows = [json.loads(line) for line in (kept / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and "label" not in rows[0] and {"image", "audio"} <= set(rows[0])
    assert rows[0]["meta"]["checkpoint"] == str(tmp_path / "abstains")
    store = open_store(f"sqlite:///{tmp_path / 'ann.db'}", tmp_path / "media")
    result = import_dataset(store, kept, queue="uncertain", labels=weighed.labels)
    assert result.added == 1
    item = AnnotationQueue(store, "uncertain").next_item("alice")
    assert item is not None and set(item.inputs) >= {"image", "audio"}


def test_refitting_the_estimate_of_a_correctness_model_keeps_its_fusion(tiny):
    weighed = dc.configure(tiny.fitted, "correctness", 4.0, 0.7)
    fresh = {k: v for k, v in tiny.fitted.config.correctness.items() if k not in ("base", "alpha", "tau")}
    refit = cf.with_correctness(weighed, fresh)
    assert refit.config.fusion == "correctness" and (
        refit.config.correctness["alpha"],
        refit.config.correctness["tau"],
    ) == (4.0, 0.7)
    dropped = cf.with_correctness(weighed, None)
    assert dropped.config.fusion == "mma" and dropped.config.correctness is None
