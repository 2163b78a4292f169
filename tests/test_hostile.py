"""Odd and hostile inputs through the app's public API (gradio_client), as a careless or hostile user sends
them: every file of the generated corpus (:mod:`tests.corpus.make_corpus`) gets its expected outcome, a
prediction or a readable message that says what was wrong with the input without internals."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

gr = pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402
from tests.corpus.make_corpus import CASES, MAX_VIDEO_SECONDS, build  # noqa: E402
from ume_mma.predictor import Limits  # noqa: E402

ROOT = Path(app.__file__).resolve().parent
AV_DIGITS, EMOJI_VL = "checkpoints/av-digits", "checkpoints/emoji-vl"
ASSETS = ROOT / "assets"
IMAGE, AUDIO = ASSETS / "agree_7_image_7.png", ASSETS / "agree_7_speech_7_en_US_f_Allison.wav"
INTERNALS = ("Traceback", "/tmp/", "gr.State", "OSError", "FFmpegError", "LibsndfileError", "PIL cannot")

pytestmark = pytest.mark.skipif(not (ROOT / AV_DIGITS / "config.json").is_file(), reason="no av-digits checkpoint")


@pytest.fixture(scope="module")
def served():
    """``python app.py``'s defaults (50 MB files, 60 s of video), launched in-process on av-digits."""
    pool = app.PredictorPool(Limits(max_file_bytes=50 * 2**20, max_video_seconds=MAX_VIDEO_SECONDS))
    demo = app.build_demo(AV_DIGITS, pool=pool)
    app.launch_app(demo, prevent_thread_lock=True, quiet=True)
    try:
        yield SimpleNamespace(pool=pool, client=Client(demo.local_url, verbose=False))
    finally:
        demo.close()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return build(tmp_path_factory.mktemp("corpus"))


def predict(client: Client, **kwargs):
    files = {k: handle_file(str(v)) for k, v in kwargs.items() if k in ("video", "audio", "image")}
    return client.predict(**kwargs | files, api_name="/predict")


def check_prediction(result: dict) -> None:
    """Every confidence is a real probability (never null or NaN), each distribution sums to 1."""
    for res in [result["fused"], *result["branches"].values()]:
        values = list(res["confidences"].values())
        assert all(isinstance(v, float) and math.isfinite(v) for v in values), res
        assert math.isclose(sum(values), 1.0, abs_tol=1e-4)
        assert res["label"] == max(res["confidences"], key=res["confidences"].get)


def check_message(message: str, words: tuple[str, ...]) -> None:
    for word in (*words,):
        assert word in message, message
    for leak in INTERNALS:
        assert leak not in message, message


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_file_gets_its_outcome(served, corpus, case):
    path = corpus[case.name]
    if case.outcome == "ok":
        result = predict(served.client, **{case.slot: path})
        check_prediction(result)
        check_message(json.dumps(result["sources"]), case.words)
    else:
        with pytest.raises(AppError) as err:
            predict(served.client, **{case.slot: path})
        check_message(str(err.value), (case.name, *case.words))


def test_nan_audio_beside_a_good_image_is_refused_not_answered(served, corpus):
    """The reported case: image 99% sure of 7 + a WAV of NaN samples gave "0" with null confidences."""
    with pytest.raises(AppError) as err:
        predict(served.client, image=IMAGE, audio=corpus["nan.wav"])
    check_message(str(err.value), ("nan.wav", "NaN or infinite samples"))
    check_prediction(predict(served.client, image=IMAGE, audio=AUDIO))  # the app keeps serving


def test_text_alone_on_an_image_audio_checkpoint_says_there_is_no_text_branch(served):
    with pytest.raises(AppError) as err:
        predict(served.client, text="seven")
    check_message(str(err.value), ("this checkpoint has no text branch", "it takes an audio file, an image"))
    assert "give an image/audio/text" not in str(err.value)


def test_text_beside_image_and_audio_is_reported_unused(served):
    result = predict(served.client, image=IMAGE, audio=AUDIO, text="seven")
    check_prediction(result)
    assert result["modalities_used"] == ["audio", "image"]
    assert result["sources"]["text"] == "not used: this checkpoint has no text branch"


@pytest.mark.skipif(not (ROOT / EMOJI_VL / "config.json").is_file(), reason="no emoji-vl checkpoint")
def test_audio_given_to_an_image_text_checkpoint_is_reported_unused(served):
    result = predict(served.client, image=IMAGE, audio=AUDIO, text="red apple", checkpoint=EMOJI_VL)
    check_prediction(result)
    assert result["sources"]["audio"] == "not used: this checkpoint has no audio branch"
    with pytest.raises(AppError) as err:
        predict(served.client, audio=AUDIO, checkpoint=EMOJI_VL)
    check_message(
        str(err.value), ("this checkpoint has no audio branch", "it takes an image, a text or a video (for its frames)")
    )


def test_a_4k_clip_is_cached_as_small_frames(served, corpus):
    predictor = served.pool.get(AV_DIGITS).predictor
    predictor.clear_cache()
    predict(served.client, video=corpus["uhd_4k.mp4"])
    (frames,) = [v for v, _ in predictor.frames._items.values()]
    assert [f.size for f in frames] == [(256, 144)] * predictor.num_frames
    assert predictor.frames.nbytes < 2**20  # not 8 x 25 MB


def test_modalities_given_as_one_string_is_one_modality(served):
    """``modalities="image"`` is one name, not the letters i, m, a, g, e (Gradio passes the string through)."""
    result = predict(served.client, image=IMAGE, audio=AUDIO, modalities="image")
    assert result["modalities_used"] == ["image"]
