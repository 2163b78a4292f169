"""The pool of loaded checkpoints: one entry per checkpoint, loads that never block other checkpoints'
predictions, and readable errors for odd references."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ume_mma import pool as pool_module  # noqa: E402
from ume_mma.errors import CheckpointError  # noqa: E402
from ume_mma.pool import PredictorPool  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
AV, EMOJI = "checkpoints/av-digits", "checkpoints/emoji-vl"
IMAGE = str(ROOT / "assets" / "agree_7_image_7.png")


def test_equivalent_references_share_one_entry(monkeypatch):
    pool = PredictorPool(root=ROOT)
    monkeypatch.chdir(ROOT)
    first = pool.get(AV)
    assert pool.get("./checkpoints/av-digits/") is first
    assert pool.get(str(ROOT / AV)) is first
    assert pool.loaded() == [str((ROOT / AV).resolve())]


def test_relative_references_work_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert PredictorPool(root=ROOT).get(AV).predictor.modalities == ["audio", "image"]


def test_loading_never_blocks_predictions_on_loaded_checkpoints(monkeypatch):
    pool = PredictorPool(root=ROOT)
    pool.get(AV)
    release, started, calls = threading.Event(), threading.Event(), []
    real = pool_module.Predictor.from_pretrained

    def slow(ref, **kwargs):  # a load that takes as long as the test wants
        calls.append(ref)
        started.set()
        assert release.wait(60)
        return real(ref, **kwargs)

    monkeypatch.setattr(pool_module.Predictor, "from_pretrained", slow)
    loaders = [threading.Thread(target=pool.get, args=(EMOJI,)) for _ in range(3)]
    for t in loaders:
        t.start()
    assert started.wait(30)
    done = threading.Event()
    predictor = threading.Thread(target=lambda: (pool.predict(AV, {"image": IMAGE}), done.set()))
    predictor.start()
    predictor.join(30)
    try:
        assert done.is_set(), "a prediction on a loaded checkpoint waited for another checkpoint's load"
        assert all(t.is_alive() for t in loaders)  # the load was still running meanwhile
    finally:
        release.set()
        for t in loaders:
            t.join(60)
    assert len(calls) == 1  # three concurrent requests, one load
    assert pool.get(EMOJI).predictor.modalities == ["image", "text"]


def test_a_failed_load_reaches_every_waiting_caller_and_is_retried(tmp_path):
    pool = PredictorPool(root=ROOT)
    (tmp_path / "bad").mkdir()
    with pytest.raises(CheckpointError, match="Could not load .*no config.json"):
        pool.get(str(tmp_path / "bad"))
    (tmp_path / "bad" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="Could not load"):  # tried again, not a cached failure
        pool.get(str(tmp_path / "bad"))
    assert pool.loaded() == []


@pytest.mark.parametrize("ref", ["x" * 10_240, "a/" + "b" * 300, "  ", "nul\0byte"])
def test_odd_references_get_a_short_readable_error(ref):
    with pytest.raises(CheckpointError) as err:
        PredictorPool(root=ROOT).get(ref)
    message = str(err.value)
    assert len(message) < 400 and "Errno" not in message, message
    assert "x" * 200 not in message and "b" * 200 not in message


def test_concurrent_requests_run_as_batches_with_their_own_results_and_errors(tmp_path):
    """16 threads predict at once through the pool: fewer predict_many batches than requests, every result
    equals a lone prediction, and a bad request fails alone."""
    from concurrent.futures import ThreadPoolExecutor

    pool = PredictorPool(root=ROOT)
    item = pool.get(AV)
    assets = ROOT / "assets"
    good = [
        {"image": str(assets / "agree_7_image_7.png"), "audio": str(assets / "agree_7_speech_7_en_US_f_Allison.wav")},
        {"image": str(assets / "disagree_2_5_image_2.png")},
        {"video": str(assets / "video_3.mp4")},
    ]
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    requests = [good[i % 3] for i in range(15)] + [{"image": str(tmp_path / "broken.png")}]
    expected = [item.predictor.predict(r) for r in good]
    item.predictor.clear_cache()
    barrier = threading.Barrier(len(requests))

    def one(inputs):
        barrier.wait()
        try:
            return pool.predict(AV, inputs)
        except Exception as exc:  # noqa: BLE001 - the bad request's own error is the result under test
            return exc

    with ThreadPoolExecutor(len(requests)) as ex:
        results = list(ex.map(one, requests))
    for i, result in enumerate(results[:-1]):
        assert result.fused.label == expected[i % 3].fused.label
        assert result.sources == expected[i % 3].sources
    assert "broken.png" in str(results[-1]) and "image" in str(results[-1])
    stats = item.batcher.stats
    assert stats["requests"] == 16 and stats["batches"] < 16 and stats["largest_batch"] > 1
