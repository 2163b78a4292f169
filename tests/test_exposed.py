"""The app as an outsider meets it over the network: each mode launched for real (open on 0.0.0.0 = predict
only, ``--auth``, ``--public``, a simulated Space with sign-in), every probe replayed through raw HTTP
(``POST /gradio_api/call/<api>``, ``/gradio_api/queue/join`` with an ``fn_index``, ``/login``, ``/upload``)
and gradio_client, asserting the refusal in our words AND that the server still answers afterwards."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
gr = pytest.importorskip("gradio")
import httpx  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402
from tests.test_app_annotate import as_space, dataset  # noqa: E402
from ui.annotate import Access  # noqa: E402
from ui.limits import Proxies  # noqa: E402
from ume_mma.annotate import import_dataset, open_store, predict_queue  # noqa: E402
from ume_mma.jobs import JobStore  # noqa: E402
from ume_mma.predictor import Limits  # noqa: E402

ROOT = Path(app.__file__).resolve().parent
AV = "checkpoints/av-digits"
IMAGE = str(ROOT / "assets" / "agree_7_image_7.png")
USERS = [("alice", "pw-a"), ("bob", "pw-b"), ("root", "pw-r")]
LEAKS = ("Traceback", "Could not preprocess", "TypeError", "AttributeError", "ValueError", "__round__", "/tmp/")

pytestmark = pytest.mark.skipif(not (ROOT / AV / "config.json").is_file(), reason="no av-digits checkpoint")


# ----------------------------------------------------------------------------- raw HTTP
def call(url: str, api: str, data: list, http: httpx.Client | None = None) -> tuple[str, object]:
    """``POST /gradio_api/call/<api>`` then its event stream: ("complete", value) or ("error", message)."""
    http = http or httpx.Client(timeout=120)
    posted = http.post(f"{url}gradio_api/call/{api}", json={"data": data})
    assert posted.status_code == 200, (posted.status_code, posted.text)
    event = None
    with http.stream("GET", f"{url}gradio_api/call/{api}/{posted.json()['event_id']}") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                return event, json.loads(line.split(":", 1)[1].strip() or "null")
    raise AssertionError(f"no result for {api}")


def refused(url: str, api: str, data: list, words: str, http: httpx.Client | None = None) -> str:
    """The call fails with ``words`` in its message and without Gradio's or Python's own text."""
    event, message = call(url, api, data, http)
    assert event == "error", (api, message)
    assert words in str(message), message
    assert not any(leak in str(message) for leak in LEAKS), message
    return str(message)


def join(url: str, fn_index: int, data: list, http: httpx.Client) -> dict:
    """A private event called as the browser does: ``queue/join`` with an ``fn_index``; its last message."""
    session = uuid.uuid4().hex[:10]
    body = {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
    joined = http.post(f"{url}gradio_api/queue/join", json=body)
    assert joined.status_code == 200, joined.text
    with http.stream("GET", f"{url}gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message["output"] | {"success": message.get("success")}
    raise AssertionError("no process_completed")


def fn_index(demo: gr.Blocks, fn_name: str) -> int:
    """The index of the (private) event whose function is ``fn_name``."""
    found = [i for i, f in demo.fns.items() if getattr(f.fn, "__name__", "") == fn_name]
    assert found, fn_name
    return found[0]


def answers(url: str, http: httpx.Client | None = None) -> None:
    """The server still answers: its API description and a stored evaluation."""
    http = http or httpx.Client(timeout=120)
    assert http.get(f"{url}gradio_api/info").status_code == 200
    event, value = call(url, "robustness", [""], http)
    assert event == "complete" and "accuracy" in value[2], value


def logged_in(url: str, user: tuple[str, str]) -> httpx.Client:
    http = httpx.Client(timeout=120)
    response = http.post(f"{url}login", data={"username": user[0], "password": user[1]})
    assert response.status_code == 200, response.text
    return http


def store_with_queue(tmp: Path):
    store = open_store(tmp / "ann.db")
    import_dataset(store, dataset(tmp / "unlabelled"), "q")
    return store


def public_args() -> argparse.Namespace:
    return argparse.Namespace(checkpoint=AV, max_file_mb=50, max_video_seconds=60, device="auto")


# ----------------------------------------------------------------------------- open on 0.0.0.0: predict only
@pytest.fixture(scope="module")
def open_app():
    access, _ = app.access_rule(None, "0.0.0.0")  # as app.main decides for --host 0.0.0.0
    assert access is None
    demo = app.build_demo(AV, pool=app.PredictorPool(Limits()))
    app.launch_app(demo, prevent_thread_lock=True, quiet=True)
    try:
        yield demo
    finally:
        demo.close()


def test_unknown_endpoint_is_a_404(open_app):
    url = open_app.local_url
    response = httpx.post(f"{url}gradio_api/call/no_such_thing", json={"data": []}, timeout=60)
    assert response.status_code == 404 and "no endpoint named 'no_such_thing'" in response.text
    answers(url)


def test_predict_inputs_are_checked_in_our_words(open_app):
    url, c = open_app.local_url, Client(open_app.local_url, verbose=False)
    image = handle_file(IMAGE)
    with pytest.raises(
        AppError, match=r"modalities \['txt'\] are not used by this model; it uses \['audio', 'image'\]"
    ):
        c.predict(None, None, image, "", ["txt"], "", api_name="/predict")
    refused(url, "predict", [None, None, None, "x" * 10_001, [], ""], "text is at most 10000 characters")
    refused(url, "predict", [None, None, None, "", {"a": 1}, ""], "modalities is a list of names")
    refused(url, "predict", [None, None, None, "", [], "c" * 600], "checkpoint is at most 512 characters")
    refused(url, "robustness", ["c" * 600], "checkpoint is at most 512 characters")
    refused(url, "load_model", [None], "give a checkpoint")
    assert c.predict(None, None, image, "", ["image"], "", api_name="/predict")["modalities_used"] == ["image"]
    answers(url)


# ----------------------------------------------------------------------------- --auth
@pytest.fixture(scope="module")
def auth_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("auth")
    store = store_with_queue(tmp)
    pool = app.PredictorPool(Limits())
    predict_queue(store, pool.get(AV).predictor, "q", show_progress=False)
    access, _ = app.access_rule(USERS, "0.0.0.0")
    access = Access(access.mode, server_paths=access.server_paths, admins=frozenset({"root"}))
    demo = app.build_demo(AV, pool=pool, store=store, access=access)
    app.launch_app(demo, prevent_thread_lock=True, quiet=True, auth=USERS)
    try:
        yield demo, store
    finally:
        demo.close()


def client(demo, user: int) -> Client:
    return Client(demo.local_url, auth=USERS[user], verbose=False)


def test_annotation_inputs_are_typed_and_bounded(auth_app):
    demo, store = auth_app
    url, http = demo.local_url, logged_in(demo.local_url, USERS[0])
    item = call(url, "next_item", ["q"], http)[1][0]
    before = store.counts()
    refused(
        url,
        "submit_item",
        ["nope", "7", {}, "", "q"],
        "item_id must be the id of a queue item (a number), got 'nope'",
        http,
    )
    with pytest.raises(AppError, match="item_id must be the id of a queue item"):
        client(demo, 0).predict("nope", "7", {}, "", "q", api_name="/submit_item")
    refused(
        url, "submit_item", [item["id"], "7", {}, "n" * 2001, "q"], "note is at most 2000 characters; got 2001", http
    )
    big = refused(url, "submit_item", [item["id"], "L" * 100_000, {}, "", "q"], "label is at most 200 characters", http)
    assert len(big) < 300  # the label is not echoed back
    refused(url, "submit_item", [item["id"], "7", {"image": 3}, "", "q"], "flags is a mapping from a modality", http)
    refused(url, "submit_item", [item["id"], "7", {"image": None}, "", "q"], "flags is a mapping from a modality", http)
    refused(url, "submit_item", [item["id"], "7", "noisy", "", "q"], "flags is a mapping from a modality", http)
    refused(url, "annotation_stats", ["q" * 201], "queue is at most 200 characters", http)
    with pytest.raises(AppError, match="note is at most 2000 characters"):
        client(demo, 0).predict(image=handle_file(IMAGE), label="7", note="n" * 10_000, api_name="/annotate")
    with pytest.raises(AppError, match="flags is a mapping from a modality to a list of flags"):
        client(demo, 0).predict(image=handle_file(IMAGE), label="7", flags={"image": None}, api_name="/annotate")
    assert store.counts() == before  # nothing was stored
    assert client(demo, 0).predict(image=handle_file(IMAGE), label="7", api_name="/annotate")["label"] == "7"
    done = call(url, "submit_item", [item["id"], "7", {"image": ["noisy"]}, "n" * 2000, "q"], http)
    assert done[0] == "complete" and done[1][0]["label"] == "7"
    answers(url, http)


def test_job_inputs_are_in_range(auth_app):
    demo, store = auth_app
    url, http = demo.local_url, logged_in(demo.local_url, USERS[2])  # root: an admin (only an admin starts jobs)
    jobs_before = JobStore(store).list()
    for epochs, shown in ((-5, "-5"), (10**12, "1000000000000"), ("many", "'many'"), (2.5, "2.5")):
        message = refused(
            url,
            "start_job",
            [AV, "q", "", 0.0, "local", "", epochs, 1, "finetune", "", None, ""],
            "epochs must be a whole number from 0 to 1000",
            http,
        )
        assert shown in message
    finetune = ["finetune", "", None, ""]  # task, data, encoders, name
    refused(
        url, "start_job", [AV, "q", "", 5, "local", "", 1, 1, *finetune], "replay must be a number from 0 to 0.9", http
    )
    refused(url, "start_job", [AV, "q", "", 0, "moon", "", 1, 1, *finetune], "runner is one of local, hf", http)
    refused(url, "job_status", ["x"], "job_id must be a job number", http)
    assert JobStore(store).list() == jobs_before  # no job was started
    answers(url, http)


def test_jobs_are_their_owners(auth_app):
    demo, store = auth_app
    jobs = JobStore(store)
    mine = jobs.add({"init_from": str(ROOT / AV), "data": "/srv/x"}, "local", "cpu", {}, owner="alice")
    jobs.move(mine, ["queued"], "interrupted")  # no process: a cancel moves it at once
    jobs.set(mine, error=f"{jobs.folder(mine)}/data: split 'val' has no samples")
    alice, bob, root = (client(demo, i) for i in range(3))
    status = alice.predict(mine, api_name="/job_status")
    assert status["owner"] == "alice" and status["config"]["init_from"] == AV  # by name, not by path
    assert status["error"] == f"job-{mine}/data: split 'val' has no samples"
    text = json.dumps(status)
    assert str(ROOT) not in text and "/srv/x" not in text and str(jobs.root) not in text
    assert "out_dir" not in status and "options" not in status
    for api in ("/job_status", "/cancel_job"):
        with pytest.raises(AppError, match=f"No job {mine} of yours here"):
            bob.predict(mine, api_name=api)
        with pytest.raises(AppError, match="No job 999 of yours here"):  # a missing job reads the same
            bob.predict(999, api_name=api)
    assert root.predict(mine, api_name="/job_status")["id"] == mine  # an admin sees every job
    assert jobs.get(mine)["state"] == "interrupted"  # bob's cancel changed nothing
    assert alice.predict(mine, api_name="/cancel_job")["state"] == "cancelled"
    # the Train tab's job list (a private event, called as the browser does) shows bob none of alice's jobs
    http = logged_in(demo.local_url, USERS[1])
    out = join(demo.local_url, fn_index(demo, "refresh_ui"), ["(every queue)"], http)
    assert out["success"] and out["data"][1]["choices"] == []
    out = join(demo.local_url, fn_index(demo, "refresh_ui"), ["(every queue)"], logged_in(demo.local_url, USERS[0]))
    assert [c[1] for c in out["data"][1]["choices"]] == [mine]
    answers(demo.local_url, http)


def test_undo_takes_back_the_callers_own_latest_annotation(auth_app):
    """bob's undo takes back bob's annotation even when alice's is newer, and alice's stays."""
    demo, store = auth_app
    alice, bob = client(demo, 0), client(demo, 1)
    theirs = bob.predict("q", api_name="/next_item")
    bob.predict(theirs["id"], "7", {}, "", "q", api_name="/submit_item")
    newer = alice.predict("q", api_name="/next_item")
    alice.predict(newer["id"], "7", {}, "", "q", api_name="/submit_item")  # alice's is the newest annotation
    back = bob.predict("q", api_name="/undo_last")
    assert back["id"] == theirs["id"] and back["leased_by"] == "bob"
    import sqlalchemy as sa

    from ume_mma.annotate import schema

    a = schema.annotations
    with store.transaction() as conn:
        rows = conn.execute(sa.select(a.c.item_id, a.c.annotator, a.c.undone_at)).all()
    assert {(r.item_id, r.annotator) for r in rows if r.undone_at is None} >= {(newer["id"], "alice")}
    assert all(r.undone_at is not None for r in rows if r.item_id == theirs["id"] and r.annotator == "bob")


def test_login_back_off_per_user_and_per_address(auth_app):
    """5 wrong passwords are free; then each failure locks the user (and the address) for 1, 2, 4 ... s."""
    demo, _ = auth_app
    url = demo.local_url

    def login(user: str, password: str) -> httpx.Response:
        return httpx.post(f"{url}login", data={"username": user, "password": password}, timeout=60)

    codes = [login("alice", "wrong").status_code for _ in range(6)]
    assert codes == [400] * 6
    locked = login("alice", "pw-a")  # the right password, inside the window: refused in words
    assert locked.status_code == 429 and "Too many failed logins" in locked.json()["detail"]
    assert locked.headers["retry-after"] == "1"
    time.sleep(1.2)
    assert login("alice", "pw-a").status_code == 200  # after the window the right password works (and clears)
    codes = [login(f"nobody{i}", "x").status_code for i in range(6)]  # many users from one address
    assert codes == [400] * 6 and login("bob", "pw-b").status_code == 429  # the address is locked too
    time.sleep(1.2)
    assert login("bob", "pw-b").status_code == 200
    answers(url, logged_in(url, USERS[1]))


# ----------------------------------------------------------------------------- --public
@pytest.fixture(scope="module")
def public_app():
    pool, max_mb, seconds = app.public_pool(public_args(), None)
    demo = app.build_demo(AV, max_mb, seconds, pool, per_client=app.PUBLIC_PER_CLIENT,
                          upload_mb_per_minute=app.PUBLIC_UPLOAD_MB_PER_MINUTE)  # fmt: skip
    app.launch_app(demo, max_mb, prevent_thread_lock=True, quiet=True)
    try:
        yield demo
    finally:
        demo.close()


def test_a_forwarded_for_header_does_not_make_a_new_client(public_app):
    url, limiter = public_app.local_url, public_app.client_limiter
    with limiter.slot("127.0.0.1"), limiter.slot("127.0.0.1"):  # this address's two calls still running
        for n in range(3):
            http = httpx.Client(timeout=120, headers={"X-Forwarded-For": f"10.0.0.{n}"})
            refused(url, "predict", [None, None, None, "", [], ""], "Too many requests at once from your address", http)
            refused(url, "robustness", [""], "Too many requests at once", http)  # every endpoint is counted
            refused(url, "load_model", [AV], "Too many requests at once", http)
    event, value = call(url, "robustness", [""])
    assert event == "complete"
    answers(url)


def test_the_client_is_the_peer_unless_a_trusted_proxy_says_otherwise():
    assert Proxies().client("203.0.113.5", "10.0.0.1") == "203.0.113.5"  # an untrusted peer: the header is ignored
    proxy = Proxies.parse("10.1.0.0/16")
    assert proxy.client("10.1.2.3", "1.1.1.1, 203.0.113.5") == "203.0.113.5"  # the hop the proxy saw
    assert proxy.client("10.1.2.3", "1.1.1.1, 203.0.113.5, 10.1.9.9") == "203.0.113.5"  # through two proxies
    assert proxy.client("192.0.2.7", "1.1.1.1") == "192.0.2.7"  # not from the proxy: the header is ignored
    space = Proxies(any_peer=True)  # a Space: its proxy appends the address it saw
    assert space.client("172.17.0.1", "6.6.6.6, 203.0.113.5") == "203.0.113.5"
    with pytest.raises(ValueError, match="'proxy.example' is not an IP address"):
        Proxies.parse("proxy.example")


def test_the_upload_budget_is_per_client_and_per_minute():
    from ui.guards import UploadBudget

    mb = 2**20
    budget = UploadBudget(None, 200 * mb, Proxies())
    assert budget.charge("a", 150 * mb, now=0.0) is None
    assert budget.charge("a", 100 * mb, now=10.0) == 50.0  # over 200 MB in a minute: wait for the first to age out
    assert budget.charge("b", 100 * mb, now=10.0) is None  # another client has its own budget
    assert budget.charge("a", 100 * mb, now=60.0) is None  # a minute after the first upload it no longer counts


def test_the_login_back_off_numbers():
    from ui.guards import Backoff

    backoff, windows = Backoff(), []
    for _ in range(13):
        backoff.failed("user:alice", now=100.0)
        windows.append(backoff.locked_for("user:alice", now=100.0))
    assert windows == [0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60]  # 5 free failures, then 1, 2, 4 ... 60 s
    backoff.succeeded("user:alice")
    backoff.failed("user:alice", now=200.0)
    assert backoff.locked_for("user:alice", now=200.0) == 0  # a success starts the count again


def upload(url: str, size: int, headers: dict | None = None) -> httpx.Response:
    files = {"files": ("clip.wav", b"\0" * size, "audio/wav")}
    return httpx.post(f"{url}gradio_api/upload", files=files, headers=headers or {}, timeout=120)


def test_the_public_upload_cap_is_20_mb_and_the_budget_200_mb_a_minute(public_app):
    url = public_app.local_url
    mb = 2**20
    assert upload(url, 20 * mb - 4096).status_code == 200
    too_big = upload(url, 20 * mb + 1)
    assert too_big.status_code == 413  # 20 MB is the public cap: one byte more is refused
    sent = 2 * 20 * mb
    for n in range(12):  # uploads of just under 20 MB until the budget of 200 MB in a minute is used
        response = upload(url, 20 * mb - 4096, {"X-Forwarded-For": f"10.0.0.{n}"})
        if response.status_code != 200:
            break
        sent += 20 * mb
    assert response.status_code == 429, f"{sent / mb:g} MB accepted in a minute: {response.text}"
    assert "at most 200 MB of uploads per minute from your address" in response.json()["detail"]
    assert 180 * mb <= sent <= 220 * mb
    answers(url)


def test_with_public_auth_and_mcp_the_anonymous_schema_has_no_write_tools(tmp_path):
    pool, max_mb, seconds = app.public_pool(public_args(), None)
    access, _ = app.access_rule(USERS, "0.0.0.0", public=True)
    demo = app.build_demo(AV, max_mb, seconds, pool, store=open_store(tmp_path / "a.db"), access=access, per_client=2)
    app.launch_app(demo, max_mb, prevent_thread_lock=True, quiet=True, auth=USERS, mcp_server=True)
    try:
        tools = httpx.get(f"{demo.local_url}gradio_api/mcp/schema", timeout=60).json()
        assert {t["name"] for t in tools} == {"predict", "load_model", "robustness"}
        assert "/start_job" in client(demo, 0).view_api(print_info=False, return_format="dict")["named_endpoints"]
    finally:
        demo.close()


# ----------------------------------------------------------------------------- a Space with sign-in
@pytest.fixture
def space_app(tmp_path, monkeypatch):
    as_space(monkeypatch)
    access, _ = app.access_rule(None, "0.0.0.0", public=True)
    assert access.mode == "oauth"
    store = store_with_queue(tmp_path)
    from ume_mma.annotate.direct import annotate_sample

    labels = [str(i) for i in range(10)]
    annotate_sample(store, {"image": IMAGE}, "7", "alice", labels, {}, "private note of alice", None)
    JobStore(store).add({"init_from": AV}, "local", "cpu", {}, owner="alice")
    pool, max_mb, seconds = app.public_pool(public_args(), JobStore(store).root)
    demo = app.build_demo(AV, max_mb, seconds, pool, store=store, access=access, per_client=2)
    app.launch_app(demo, max_mb, prevent_thread_lock=True, quiet=True)
    try:
        yield demo
    finally:
        demo.close()


def test_anonymous_reads_on_a_space_are_refused(space_app):
    demo = space_app
    url, http = demo.local_url, httpx.Client(timeout=120)
    refused(url, "annotation_stats", ["q"], "Sign in with Hugging Face", http)
    refused(url, "job_status", [1], "Sign in with Hugging Face", http)
    with pytest.raises(AppError, match="Sign in with Hugging Face"):
        Client(url, verbose=False).predict("app", api_name="/annotation_stats")
    for name, data in (("refresh", ["app"]), ("counts_ui", ["(every queue)"]), ("refresh_ui", ["(every queue)"])):
        out = join(url, fn_index(demo, name), data, http)  # private events, as the browser calls them
        assert out["success"] is False and "Sign in with Hugging Face" in out.get("error", ""), (name, out)
        assert "private note" not in json.dumps(out)
    page = httpx.get(url, timeout=60).text + httpx.get(f"{url}config", timeout=60).text
    assert "private note" not in page and "from " + AV not in page  # the page holds no annotation nor job list
    answers(url)


# ----------------------------------------------------------------------------- the process: uploads swept, removed
def test_the_upload_sweeper_thread_sweeps(tmp_path):
    from ui.uploads import UploadSweeper

    old = tmp_path / "abc" / "clip.wav"
    old.parent.mkdir()
    old.write_bytes(b"x" * 1000)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    sweeper = UploadSweeper(tmp_path, max_bytes=0, every_s=0.05, min_age_s=60).start()
    try:
        deadline = time.monotonic() + 30
        while old.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not old.exists()  # the thread ran sweep: the old file over the cap is gone
    finally:
        sweeper.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_upload_folder_is_removed_on_sigterm(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("GRADIO_TEMP_DIR", "SPACE_ID")}
    env |= {"TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--db", str(tmp_path / "a.db")],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/gradio_api/info", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        folders = list(tmp_path.glob("ume-mma-uploads-*"))
        assert len(folders) == 1, proc.stdout and proc.poll()
        assert upload(f"http://127.0.0.1:{port}/", 1000).status_code == 200
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGTERM  # it still ends as SIGTERM ends a process
        assert not folders[0].exists()
    finally:
        if proc.poll() is None:
            proc.kill()
