"""Public mode (``--public``, and on a Space): checkpoints only from Space.yaml's list, refused in words through
gradio_client for a local path, ``..``, a URL or a repo outside the list; lower upload caps; calls in flight
per client; no folder on the server named by a user; annotating needs a sign-in."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
gr = pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402
from ui.annotate import Access  # noqa: E402
from ui.limits import ClientLimiter  # noqa: E402
from ume_mma.errors import CheckpointError  # noqa: E402
from ume_mma.pool import PredictorPool  # noqa: E402

ROOT = Path(app.__file__).resolve().parent
IMAGE = str(ROOT / "assets" / "agree_7_image_7.png")
BAD_REFS = [
    str(ROOT / "checkpoints" / "av-digits"),  # an absolute path, even to a served folder
    "tests/fixtures/tiny_checkpoint_v1",  # a local checkpoint that is not served
    "checkpoints/../checkpoints/av-digits",
    "../../etc",
    "https://example.com/model",
    "someone/else",  # a Hub repo outside the list
    "org/model@other-revision",  # a served repo at another revision
]


def args(**kw) -> argparse.Namespace:
    base = dict(checkpoint="checkpoints/av-digits", max_file_mb=50, max_video_seconds=60, device="auto")
    return argparse.Namespace(**(base | kw))


def test_the_pool_loads_only_the_allow_list(tmp_path):
    pool = PredictorPool(root=ROOT, allow=["checkpoints/av-digits", "org/model@v1"], allow_roots=[tmp_path])
    assert pool.allowed("checkpoints/av-digits") == pool.allowed("./checkpoints/av-digits") == "checkpoints/av-digits"
    assert pool.allowed("org/model") == pool.allowed("hf-hub:org/model") == "org/model@v1"  # pinned
    for ref in BAD_REFS:
        with pytest.raises(CheckpointError, match="is not served here: this public app loads only"):
            pool.get(ref)
    assert pool.loaded() == []  # nothing was loaded for a refused reference
    job = tmp_path / "job-1" / "out" / "checkpoint"
    job.mkdir(parents=True)
    with pytest.raises(CheckpointError, match="not served here"):
        pool.allowed(str(job))  # not a checkpoint (no config.json): refused
    (job / "config.json").write_text("{}")
    assert pool.allowed(str(job)) == str(job.resolve())  # this app's own job results are served
    assert PredictorPool(root=ROOT).allowed("/anything") == "/anything"  # no allow-list: not public


def test_public_mode_reads_space_yaml_and_lowers_the_caps():
    pool, max_mb, seconds = app.public_pool(args(), None)
    assert pool.allow[:2] == ["checkpoints/av-digits", "checkpoints/emoji-vl"]
    assert (max_mb, seconds) == (app.PUBLIC_MAX_FILE_MB, app.PUBLIC_MAX_VIDEO_SECONDS)
    assert app.public_pool(args(max_file_mb=5), None)[1] == 5  # a lower cap given wins
    assert app.public_pool(args(checkpoint="org/mine@v2"), None)[0].allow[0] == "org/mine@v2"


def test_access_in_public_mode_needs_a_sign_in():
    assert app.access_rule(None, None, public=True)[0] is None  # not even the local user
    assert app.access_rule([("a", "b")], None, public=True)[0] == Access("login", server_paths=False)


@pytest.fixture(scope="module")
def served():
    pool, max_mb, seconds = app.public_pool(args(), None)
    demo = app.build_demo("checkpoints/av-digits", max_mb, seconds, pool, per_client=app.PUBLIC_PER_CLIENT)
    app.launch_app(demo, max_mb, prevent_thread_lock=True, quiet=True)
    try:
        yield demo
    finally:
        demo.close()


def test_load_model_and_predict_refuse_what_is_not_served(served):
    c = Client(served.local_url, verbose=False)
    for ref in BAD_REFS:
        with pytest.raises(AppError, match="is not served here: this public app loads only checkpoints/av-digits"):
            c.predict(ref, api_name="/load_model")
        with pytest.raises(AppError, match="is not served here"):
            c.predict(None, None, handle_file(IMAGE), "", [], ref, api_name="/predict")
    assert "emoji-vl" in c.predict("checkpoints/emoji-vl", api_name="/load_model")  # the status line
    assert c.predict(None, None, handle_file(IMAGE), "", [], "", api_name="/predict")["fused"]["label"] == "7"


def test_a_client_gets_at_most_its_share_of_calls_in_flight(served):
    c = Client(served.local_url, verbose=False)
    limiter: ClientLimiter = served.client_limiter
    with limiter.slot("127.0.0.1"), limiter.slot("127.0.0.1"):  # this client's two calls still running
        with pytest.raises(AppError, match="Too many requests at once from your address \\(at most 2"):
            c.predict(None, None, handle_file(IMAGE), "", [], "", api_name="/predict")
        with limiter.slot("10.0.0.9"):
            pass  # another address is not affected
    assert c.predict(None, None, handle_file(IMAGE), "", [], "", api_name="/predict")["fused"]["label"] == "7"


def test_no_folder_on_the_server_and_only_served_bases_for_training(tmp_path):
    from ume_mma.annotate import open_store

    pool, max_mb, seconds = app.public_pool(args(), None)
    store = open_store(tmp_path / "ann.db")
    users = [("alice", "pw")]
    access = Access("login", server_paths=False, roles={"alice": "admin"})  # only an admin starts jobs
    demo = app.build_demo("checkpoints/av-digits", max_mb, seconds, pool, store=store, access=access, per_client=2)
    app.launch_app(demo, max_mb, prevent_thread_lock=True, quiet=True, auth=users)
    try:
        c = Client(demo.local_url, auth=users[0], verbose=False)
        with pytest.raises(AppError, match="does not read folders on the server \\(base data\\)"):
            c.predict("checkpoints/av-digits", "", "/etc", 0.3, "local", "", 1, 1, api_name="/start_job")
        with pytest.raises(AppError, match="not served here"):
            c.predict("tests/fixtures/tiny_checkpoint_v1", "", "", 0.3, "local", "", 1, 1, api_name="/start_job")
        assert store.counts()["annotations"] == 0
    finally:
        demo.close()


def test_zero_gpu_wraps_the_prediction_handlers_and_is_a_no_op_elsewhere(monkeypatch):
    import sys
    import types

    from ui import zerogpu

    wrapped: list[str] = []
    fake = types.ModuleType("spaces")
    fake.GPU = lambda fn, duration: wrapped.append(fn.__name__) or fn
    monkeypatch.setitem(sys.modules, "spaces", fake)
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    app.handlers(app.PredictorPool(app.Limits()), "checkpoints/av-digits", lambda *a: None)
    assert wrapped == []  # cpu-basic or a local machine: spaces.GPU is never called
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert zerogpu.zero_gpu()
    app.handlers(app.PredictorPool(app.Limits()), "checkpoints/av-digits", lambda *a: None)
    assert sorted(wrapped) == ["predict", "predict_ui"]
