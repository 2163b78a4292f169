"""Fine-tuning jobs through the launched app: ``/start_job``, ``/job_status``, ``/cancel_job`` with gradio_client
(a real job process on annotations of a real SQLite store), the new checkpoint loaded in the app, bad input,
the access rule, and the Train tab in Chromium (progress bars, the before/after table, "Use this model")."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
gr = pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402
from tests.chromium import ARGS, CHROMIUM  # noqa: E402
from tests.jobsutil import finished, make_base, wait_for  # noqa: E402
from tests.tiny import make_tiny_dataset  # noqa: E402
from ui.annotate import Access  # noqa: E402
from ume_mma.annotate import AnnotationQueue, import_dataset, open_store  # noqa: E402
from ume_mma.predictor import Limits  # noqa: E402

ROOT = Path(app.__file__).resolve().parent
ARTIFACTS = ROOT / "tests" / "artifacts"
WAIT_MS = 300_000  # browser deadlines on a busy machine
TINY_OTHER_LABELS = ROOT / "tests" / "fixtures" / "tiny_checkpoint_v1"  # labels no/yes: not the tiny data's


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")  # the job processes: tiny batches on a busy 2-core machine
        yield


def annotated_store(tmp: Path):
    """A store whose queue ``q`` holds the tiny dataset (30 rows), every item labelled with its true label."""
    store = open_store(tmp / "ann.db")
    data = make_tiny_dataset(tmp / "pool", {"train": 10})
    import_dataset(store, data, "q")
    queue = AnnotationQueue(store, "q")
    while (item := queue.next_item("tester")) is not None:
        queue.submit(item.id, item.given_label, "tester")
    return store


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    store = annotated_store(tmp)
    base = make_base(tmp / "base")
    demo = app.build_demo(str(base), pool=app.PredictorPool(Limits()), store=store, access=Access("local"))
    app.launch_app(demo, prevent_thread_lock=True, quiet=True)
    try:
        yield demo, store, base, tmp
    finally:
        demo.close()


@pytest.fixture(scope="module")
def job(served):
    """One tiny fine-tune started through /start_job and run to the end."""
    demo, _, base, _ = served
    c = Client(demo.local_url, verbose=False)
    started = c.predict(str(base), "q", "", 0.3, "local", "", 2, 2, api_name="/start_job")
    assert started["state"] in ("queued", "running") and started["runner"] == "local"
    return c, wait_for(finished(c, started["id"]), "the job to finish")


def test_a_job_started_from_the_api_runs_and_its_checkpoint_loads_in_the_app(served, job):
    c, status = job
    assert status["state"] == "succeeded", status["error"]
    assert status["config"]["init_from"] == served[2].name  # by name: no server path in a job's status
    assert "out_dir" not in status and str(served[3]) not in str(status)
    from ume_mma.finetune import ANNOTATION_RECIPE  # the tab's small-data recipe; epochs as given

    assert {k: status["config"][k] for k in ("head_lr", "mma_lr", "dropout_p", "head_epochs", "batch_size")} == {
        k: ANNOTATION_RECIPE[k] for k in ("head_lr", "mma_lr", "dropout_p", "head_epochs", "batch_size")
    }
    assert (status["config"]["epochs"], status["config"]["mma_epochs"], status["config"]["replay"]) == (2, 2, 0.0)
    assert [b["phase"] for b in status["bars"]] == ["unimodal-audio", "unimodal-image", "mma"]
    assert all(b["state"] == "done" for b in status["bars"]) and status["curve"]
    assert set(status["before"]) >= {"full", "without_audio", "without_image", "missing_rate_0.5"}
    assert status["after"] == status["metrics"]["test"]["accuracy"]
    assert status["checkpoint"] == f"job-{status['id']}"  # the result by name
    evidence = status["metrics"]["finetune"]["evidence"]  # a few held-out annotations cannot tell
    assert evidence["n"] == status["metrics"]["test"]["n"] < 20 and evidence["verdict"] == "too few to tell"
    from ume_mma.jobs import JobStore

    assert (JobStore(served[1]).folder(status["id"]) / "out" / "checkpoint" / "model.safetensors").is_file()
    checkpoint = status["checkpoint"]
    c.predict(checkpoint, api_name="/load_model")  # the new checkpoint loads in the running app...
    data = served[3] / "pool"
    files = handle_file(str(data / "audio" / "train-b-0.wav")), handle_file(str(data / "images" / "train-b-0.png"))
    out = c.predict(None, *files, "", [], checkpoint, api_name="/predict")
    assert set(out["branches"]) == {"audio", "image"} and out["fused"]["label"] in ("a", "b", "c")  # ...and predicts


def test_cancel_of_a_finished_job_and_bad_job_input_are_refused_in_words(served, job):
    c, status = job
    demo, store, base, _ = served
    with pytest.raises(AppError, match="has already succeeded: there is nothing to cancel"):
        c.predict(status["id"], api_name="/cancel_job")
    before = len(c.predict(status["id"], api_name="/job_status")["recent"])
    bad = [
        (("", "q"), "Choose a base checkpoint"),
        ((str(base), "no-such-queue"), "no annotations in queue 'no-such-queue'"),
        ((str(TINY_OTHER_LABELS), "q"), "labels \\['a', 'b', 'c'\\] that the base checkpoint does not know"),
        ((str(base.parent / "missing"), "q"), "does not load"),
    ]
    for (ref, queue), message in bad:
        with pytest.raises(AppError, match=message):
            c.predict(ref, queue, "", 0.3, "local", "", 1, 1, api_name="/start_job")
    with pytest.raises(AppError, match="job_id must be a job number"):
        c.predict(None, api_name="/job_status")
    from ume_mma.jobs import list_jobs

    assert [j["id"] for j in list_jobs(store)] == [status["id"]], "a refused job leaves no job row"
    assert len(c.predict(status["id"], api_name="/job_status")["recent"]) == before
    from ume_mma.jobs import JobStore

    assert sorted(p.name for p in JobStore(store).root.iterdir()) == [f"job-{status['id']}"], "nothing half-written"


def test_a_job_can_be_cancelled_from_the_api(served, job):
    c, done = job
    demo, _, base, _ = served
    started = c.predict(str(base), "q", "", 0.3, "local", "", 400, 2, api_name="/start_job")
    wait_for(lambda: c.predict(started["id"], api_name="/job_status")["progress"].get("step"), "a first step")
    c.predict(started["id"], api_name="/cancel_job")
    status = wait_for(finished(c, started["id"]), "the cancel")
    assert status["state"] == "cancelled" and status["progress"]["last_event"] == "stopped"


def test_a_queue_with_a_label_the_base_does_not_know_trains_a_grown_model(served):
    """Annotations with a new label (the c items labelled "zebra"): /start_job accepts them, and the job's
    checkpoint has the base's labels, then zebra, with the label history in its config."""
    demo, store, base, tmp = served
    data = make_tiny_dataset(tmp / "zebra-pool", {"train": 6}, seed=3)
    rows = (data / "metadata.jsonl").read_text().replace('"label": "c"', '"label": "zebra"')
    (data / "metadata.jsonl").write_text(rows)
    import_dataset(store, data, "zebra")
    queue = AnnotationQueue(store, "zebra")
    while (item := queue.next_item("tester")) is not None:
        queue.submit(item.id, item.given_label, "tester")
    c = Client(demo.local_url, verbose=False)
    started = c.predict(str(base), "zebra", "", 0.0, "local", "", 1, 1, api_name="/start_job")
    status = wait_for(finished(c, started["id"]), "the job to finish")
    assert status["state"] == "succeeded", status["error"]
    from ume_mma.checkpoint import load_config
    from ume_mma.jobs import JobStore

    config, _ = load_config(JobStore(store).folder(status["id"]) / "out" / "checkpoint")
    assert config.labels == ["a", "b", "c", "zebra"]
    assert [h["labels"] for h in config.label_history] == [["a", "b", "c"], ["zebra"]]
    assert status["metrics"]["finetune"]["added_labels"] == ["zebra"]


def test_the_jobs_api_needs_the_access_rule(tmp_path, monkeypatch):
    from tests.test_app_annotate import as_space

    as_space(monkeypatch)  # on a Space with hf_oauth: the jobs API needs "Sign in with Hugging Face"
    store = open_store(tmp_path / "ann.db")
    demo = app.build_demo(str(make_base(tmp_path / "base")), store=store, access=Access("oauth"))
    app.launch_app(demo, prevent_thread_lock=True, quiet=True)
    try:
        c = Client(demo.local_url, verbose=False)
        for args, api in (((str(tmp_path / "base"), "q", "", 0, "local", "", 1, 1), "/start_job"),
                          ((1,), "/job_status"), ((1,), "/cancel_job")):  # fmt: skip
            with pytest.raises(AppError, match="Sign in with Hugging Face"):
                c.predict(*args, api_name=api)
    finally:
        demo.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium")
def test_the_train_tab_follows_a_job_to_its_table_and_uses_the_model(served):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright for Python")
    demo, _, base, _ = served
    expect = sync_api.expect
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.set_default_timeout(120_000)
            page.goto(demo.local_url)
            page.get_by_role("tab", name="Train").click()
            expect(page.locator("#train-view")).to_contain_text("total", timeout=WAIT_MS)  # counts of the annotations
            page.locator("#train-view").get_by_label("Epochs (uni-modal)").fill("3")
            page.locator("#train-start").click()
            expect(page.locator("#train-state")).to_contain_text("running", timeout=WAIT_MS)
            expect(page.locator(".train-bar").first).to_be_visible(timeout=WAIT_MS)  # a progress bar per phase
            expect(page.locator(".train-bar")).to_have_count(3, timeout=WAIT_MS)
            # a deadline for a busy machine, not a timing assertion (the job's end is what is tested)
            expect(page.locator("#train-state")).to_contain_text("succeeded", timeout=WAIT_MS)
            expect(page.locator(".train-bar[data-state=done]")).to_have_count(3, timeout=WAIT_MS)
            table = page.locator("#train-table")
            expect(table).to_contain_text("held-out annotations", timeout=WAIT_MS)
            expect(table).to_contain_text("after", timeout=WAIT_MS)
            expect(page.locator("#train-state")).to_contain_text("too few to tell", timeout=WAIT_MS)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "train-tab.png"), full_page=True)
            page.locator("#train-use").click()  # the session now predicts with the job's checkpoint
            job_checkpoint = re.compile(r"^job-\d+$")  # the job's checkpoint by name, not by path
            expect(page.locator("#checkpoint input")).to_have_value(job_checkpoint, timeout=WAIT_MS)
            predict_tab = page.get_by_role("tab", name="Predict")
            expect(predict_tab).to_have_attribute("aria-selected", "true", timeout=WAIT_MS)  # back on it
        finally:
            browser.close()
