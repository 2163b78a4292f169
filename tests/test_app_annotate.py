"""Annotation through the launched app (gradio_client, real SQLite): /annotate, the queue endpoints, auth,
the local-only rule, bad input, and an export that load_dataset reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
gr = pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402
from ui.annotate import Access  # noqa: E402
from ume_mma.annotate import import_dataset, open_store, predict_queue  # noqa: E402
from ume_mma.data.format import load_dataset  # noqa: E402
from ume_mma.predictor import Limits  # noqa: E402

ROOT = Path(app.__file__).resolve().parent
ASSETS = ROOT / "assets"
AV = "checkpoints/av-digits"
USERS = [("alice", "pw-a"), ("bob", "pw-b")]
AGREE = {"image": "agree_7_image_7.png", "audio": "agree_7_speech_7_en_US_f_Allison.wav"}
DISAGREE = {"image": "disagree_2_5_image_2.png", "audio": "disagree_2_5_speech_5_es_MX_f_Allison.wav"}


def dataset(folder: Path) -> Path:
    """Unlabelled rows in file order: agree, image alone, disagree (the only one whose branches disagree)."""
    folder.mkdir(parents=True)
    rows = [AGREE, {"image": AGREE["image"]}, DISAGREE]
    lines = []
    for i, row in enumerate(rows):
        for name in row.values():
            (folder / name).write_bytes((ASSETS / name).read_bytes())
        lines.append(json.dumps({"id": f"s{i}", **row}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def launch(tmp_path: Path, access: Access, auth=None):
    store = open_store(tmp_path / "ann.db")
    pool = app.PredictorPool(Limits())
    import_dataset(store, dataset(tmp_path / "unlabelled"), "q")
    predict_queue(store, pool.get(AV).predictor, "q", show_progress=False)
    demo = app.build_demo(AV, pool=pool, store=store, access=access)
    app.launch_app(demo, prevent_thread_lock=True, quiet=True, auth=auth)
    return demo, store


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    demo, store = launch(tmp_path_factory.mktemp("ann"), Access("login"), auth=USERS)
    try:
        yield demo, store
    finally:
        demo.close()


def client(demo, user: int) -> Client:
    return Client(demo.local_url, auth=USERS[user], verbose=False)


def test_an_anonymous_client_cannot_annotate(served):
    demo, store = served
    with pytest.raises(Exception):  # noqa: B017 - the whole app is behind the login
        Client(demo.local_url, verbose=False).predict(api_name="/annotation_stats")


def test_queue_disagreement_first_two_annotators_undo_and_stats(served):
    demo, store = served
    alice, bob = client(demo, 0), client(demo, 1)
    first = alice.predict("q", api_name="/next_item")
    assert first["source_id"] == "s2" and first["disagree"] is True  # the disagreeing sample comes first
    assert first["leased_by"] == "alice"
    second = bob.predict("q", api_name="/next_item")
    assert second["id"] != first["id"]  # a leased item is never handed to someone else
    assert alice.predict("q", api_name="/next_item")["id"] == first["id"]  # alice gets hers back
    done = alice.predict(first["id"], "2", {"audio": ["irrelevant"]}, "speech says five", "q", api_name="/submit_item")
    assert done["label"] == "2" and done["annotator"] == "alice" and len(done["id"]) == 32
    stats = alice.predict("q", api_name="/annotation_stats")
    assert stats["labelled"] == 1 and stats["disagreements_left"] == 0 and stats["annotators"] == {"alice": 1}
    with pytest.raises(AppError, match="leased to 'bob'"):
        alice.predict(second["id"], "7", {}, "", "q", api_name="/submit_item")
    undone = alice.predict("q", api_name="/undo_last")
    assert undone["id"] == first["id"] and undone["leased_by"] == "alice"
    assert alice.predict("q", api_name="/annotation_stats")["labelled"] == 0


def test_annotate_then_export(served, tmp_path):
    demo, store = served
    bob = client(demo, 1)
    r = bob.predict(
        image=handle_file(str(ASSETS / DISAGREE["image"])),
        audio=handle_file(str(ASSETS / DISAGREE["audio"])),
        label="2",
        flags={"audio": ["noisy"]},
        note="the speech is another digit",
        api_name="/annotate",
    )
    assert set(r) == {"id", "sample_id", "label", "annotator"} and r["annotator"] == "bob"
    out = tmp_path / "export"
    run = subprocess.run(
        [sys.executable, "-m", "ume_mma.annotate", "export", str(out), "--db", store.display],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    samples = {s.id: s for s in load_dataset(out).samples}
    assert samples[r["id"]].label == "2" and samples[r["id"]].meta["annotator"] == "bob"
    assert Path(samples[r["id"]].path("audio")).read_bytes() == (ASSETS / DISAGREE["audio"]).read_bytes()


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"image": AGREE["image"], "label": "seven"}, "unknown label"),
        ({"label": "7"}, "no input"),
        ({"image": AGREE["image"], "label": "7", "flags": {"audio": ["noisy"]}}, "no audio"),
        ({"image": AGREE["image"], "label": "7", "flags": {"image": ["blurry"]}}, "unknown flag"),
        ({"image": AGREE["audio"], "label": "7"}, "not an image"),
        ({"image": AGREE["image"], "label": "7", "flags": "noisy"}, "flags is a mapping"),
    ],
)
def test_bad_annotations_store_nothing(served, kwargs, words):
    demo, store = served
    before = store.counts()
    files = {k: handle_file(str(ASSETS / v)) for k, v in kwargs.items() if k in ("image", "audio")}
    with pytest.raises(AppError, match=words):
        client(demo, 0).predict(**{**kwargs, **files}, api_name="/annotate")
    assert store.counts() == before


def as_space(monkeypatch) -> None:
    """The variables the Hub sets on a Space with ``hf_oauth: true`` (no request reaches the Hub)."""
    space = {"SPACE_ID": "org/studio", "OAUTH_CLIENT_ID": "id", "OAUTH_CLIENT_SECRET": "secret",
             "OAUTH_SCOPES": "openid profile", "OPENID_PROVIDER_URL": "https://huggingface.co"}  # fmt: skip
    import gradio.oauth

    for name, value in space.items():
        monkeypatch.setenv(name, value)
        if hasattr(gradio.oauth, name):  # read by gradio at import
            monkeypatch.setattr(gradio.oauth, name, value)
    monkeypatch.setenv("SYSTEM", "spaces")


def test_oauth_mode_needs_a_hugging_face_sign_in(tmp_path, monkeypatch):
    """As on a Space with ``hf_oauth: true``."""
    as_space(monkeypatch)
    assert app.access_rule(None, "0.0.0.0")[0] == Access("oauth")
    demo, store = launch(tmp_path, Access("oauth"))
    try:
        c = Client(demo.local_url, verbose=False)
        with pytest.raises(AppError, match="Sign in with Hugging Face"):
            c.predict(image=handle_file(str(ASSETS / AGREE["image"])), label="7", api_name="/annotate")
        assert c.predict(image=handle_file(str(ASSETS / AGREE["image"])), api_name="/predict")["fused"]["label"]
        assert store.counts()["annotations"] == 0
    finally:
        demo.close()


def test_a_space_s_roles_come_from_space_yaml(tmp_path, monkeypatch):
    """On a Space, Space.yaml's deploy.admins / deploy.reviewers (Hub user names) give the roles; others annotate;
    a malformed list is refused in words."""
    import shutil

    import yaml

    from ume_mma.space import SpaceConfigError

    as_space(monkeypatch)
    monkeypatch.delenv("UME_MMA_ADMINS", raising=False)
    monkeypatch.delenv("UME_MMA_REVIEWERS", raising=False)
    root = Path(app.__file__).resolve().parent
    for name in ("checkpoints/av-digits", "checkpoints/emoji-vl"):
        shutil.copytree(root / name, tmp_path / name, ignore=shutil.ignore_patterns("*.safetensors"))
    data = yaml.safe_load((root / "Space.yaml").read_text())
    data["deploy"] |= {"admins": ["adam"], "reviewers": ["rita"]}
    (tmp_path / "Space.yaml").write_text(yaml.safe_dump(data))
    access, _ = app.access_rule(None, "0.0.0.0", space_yaml=tmp_path / "Space.yaml")
    assert (access.role("adam"), access.role("rita"), access.role("ann")) == ("admin", "reviewer", "annotator")
    with pytest.raises(gr.Error, match="Only an admin may import a queue; rita is reviewer"):
        access.require("rita", "admin", "import a queue")
    data["deploy"]["admins"] = "adam"
    (tmp_path / "Space.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(SpaceConfigError, match="admins is a list of Hugging Face user names"):
        app.access_rule(None, "0.0.0.0", space_yaml=tmp_path / "Space.yaml")


def test_annotation_is_served_only_to_localhost_without_auth():
    assert app.access_rule(None, None)[0] == Access("local")
    assert app.access_rule(None, "127.0.0.1")[0] == Access("local")
    access, line = app.access_rule(None, "0.0.0.0")
    assert access is None and "predict only" in line
    assert app.access_rule([("a", "b")], "0.0.0.0")[0] == Access("login")
    assert app.access_rule(None, None, share=True)[0] is None
    assert app.access_rule([("a", "b")], None, share=True)[0] == Access("login")


def test_without_access_there_is_no_annotation_endpoint():
    demo = app.build_demo(AV)
    app.launch_app(demo, prevent_thread_lock=True, quiet=True)
    try:
        names = Client(demo.local_url, verbose=False).view_api(print_info=False, return_format="dict")
        assert "/annotate" not in names["named_endpoints"] and "/predict" in names["named_endpoints"]
    finally:
        demo.close()


def test_read_auth(tmp_path, monkeypatch):
    path = tmp_path / "users"
    path.write_text("# team\nalice:pw-a\n\nbob:p:w\n")
    assert app.read_auth(str(path)) == [("alice", "pw-a"), ("bob", "p:w")]
    monkeypatch.setenv("UME_MMA_AUTH", "carol:pw")
    assert app.read_auth(None) == [("carol", "pw")]
    path.write_text("no-colon\n")
    with pytest.raises(SystemExit, match="user:password"):
        app.read_auth(str(path))


def test_roles_from_the_auth_file_and_the_environment(tmp_path, monkeypatch):
    """A third column names the role; a two-column line (an existing file) is an annotator, unless
    UME_MMA_ADMINS / UME_MMA_REVIEWERS name the user; a password may hold colons."""
    path = tmp_path / "users"
    path.write_text("ann:pw\nrita:p:w:reviewer\nadam:pw:admin\nbob:pw:boss\n")
    assert app.read_auth(str(path)) == [("ann", "pw"), ("rita", "p:w"), ("adam", "pw"), ("bob", "pw:boss")]
    roles = app.read_roles(str(path))
    assert roles == {"rita": "reviewer", "adam": "admin"}
    monkeypatch.setenv("UME_MMA_ADMINS", "bob")
    monkeypatch.setenv("UME_MMA_REVIEWERS", "cy")
    access, _ = app.access_rule(app.read_auth(str(path)), "0.0.0.0", roles=roles)
    assert [access.role(u) for u in ("ann", "rita", "adam", "bob", "cy")] == [
        "annotator", "reviewer", "admin", "admin", "reviewer"
    ]  # fmt: skip
    assert access.may("adam", "reviewer") and not access.may("rita", "admin") and access.is_admin("bob")
    assert Access("local", "me").role("me") == "admin"  # the local user of a 127.0.0.1 server


def test_annotate_this_from_the_predict_tab(tmp_path):
    """The Predict tab's "Annotate this": the inputs on screen, the chosen label, committed to queue "app"."""
    store = open_store(tmp_path / "ann.db")
    pool = app.PredictorPool(Limits())
    fns = __import__("ui.annotate", fromlist=["handlers"]).handlers(store, Access("local", "carol"), pool, AV)
    image, audio = str(ASSETS / DISAGREE["image"]), str(ASSETS / DISAGREE["audio"])
    status, progress, recent = fns.annotate_ui_from_predict(None, audio, image, "", "2", "odd one", AV, None, None)
    assert "labelled **2** by carol" in status and "1 of 1 labelled" in progress
    assert recent[0][1:4] == ["carol", "2", 1]
    with pytest.raises(gr.Error, match="Choose the label"):
        fns.annotate_ui_from_predict(None, audio, image, "", None, "", AV, None, None)
    assert store.counts()["annotations"] == 1
