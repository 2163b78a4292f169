"""Publishing against a mocked ``HfApi``: push-checkpoint (the card's Hub metadata, a strict load first) and
deploy-space (exactly the files the Space needs, hardware, variables, storage; secrets named, never read);
bad input uploads nothing; a pushed checkpoint in a local HF cache loads by repo id and by repo@revision
offline, and its card renders in the app's Model card tab."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from unittest import mock

import pytest
import yaml

from ume_mma import hub
from ume_mma.errors import CheckpointError, InputError
from ume_mma.publish import deploy_space, main, push_checkpoint, space_uploads
from ume_mma.space import SpaceConfigError, load_space_config

ROOT = Path(__file__).resolve().parents[1]
AV = ROOT / "checkpoints" / "av-digits"
FORBIDDEN_TOP = (".venv/", "tests/", "data/", "runs/", "results/", "bench/", ".cache/", ".git/", ".env")
FORBIDDEN_ANY = (".db", "__pycache__", ".pyc", "token", "/.")


@pytest.fixture
def api(monkeypatch):
    """A mocked HfApi behind ``hub._api`` (the only way to the Hub), with a token in the environment."""
    fake = mock.MagicMock(name="HfApi")
    fake.create_commit.return_value = mock.Mock(oid="c0ffee")
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setattr(hub, "_api", lambda: fake)
    return fake


def committed(api) -> dict[str, bytes | str]:
    (call,) = api.create_commit.call_args_list
    ops = call.args[1]
    return {op.path_in_repo: op.path_or_fileobj for op in ops}


def test_push_checkpoint_sends_the_folder_with_the_cards_hub_metadata(api):
    plan = push_checkpoint(AV, "me/av-digits")
    api.create_repo.assert_called_once_with("me/av-digits", repo_type="model", private=False, exist_ok=True)
    files = committed(api)
    # the shipped av-digits checkpoint carries a replay memory (ume_mma.replaymemory): it travels with it
    assert sorted(files) == ["README.md", "config.json", "metrics.json", "model.safetensors", "replay.safetensors"]
    assert api.create_commit.call_args.kwargs["repo_type"] == "model" and plan["commit"] == "c0ffee"
    card = files["README.md"].decode()
    front = yaml.safe_load(card.split("---\n", 2)[1])
    assert front["library_name"] == "ume_mma" and front["pipeline_tag"] == "audio-classification"
    assert {"multimodal", "missing-modality", "audio", "image"} <= set(front["tags"])
    metrics = {m["name"]: m["value"] for m in front["model-index"][0]["results"][0]["metrics"]}
    stored = json.loads((AV / "metrics.json").read_text())
    assert metrics["accuracy (full)"] == round(100 * stored["accuracy"]["full"], 2)
    assert metrics["accuracy (without image)"] == round(100 * stored["accuracy"]["without_image"], 2)
    assert "# UME-MMA checkpoint: av-digits" in card  # the card's body is kept


def test_a_folder_that_does_not_load_strictly_is_refused_before_any_hub_call(api, tmp_path):
    from safetensors.torch import load_file, save_file

    broken = shutil.copytree(AV, tmp_path / "broken")
    state = load_file(broken / "model.safetensors")
    state.pop(sorted(state)[0])  # one tensor missing
    save_file(state, broken / "model.safetensors")
    with pytest.raises(CheckpointError):
        push_checkpoint(broken, "me/broken")
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        push_checkpoint(tmp_path, "me/empty")
    for repo in ("not a repo", "me/../x", "a/b/c", ""):
        with pytest.raises(InputError, match="not a Hub repo id"):
            push_checkpoint(AV, repo)
    assert not api.method_calls, "nothing was sent"


def test_a_missing_token_is_refused_and_a_dry_run_needs_none(monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(InputError, match="HF_TOKEN"):
        push_checkpoint(AV, "me/av-digits")
    assert main(["push-checkpoint", str(AV), "me/av-digits", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "DRY RUN: nothing sent" in out and "model.safetensors" in out and "model-index" in out


def fake_repo(root: Path) -> Path:
    """A repository with what a Space needs and decoys it must never get."""
    for name in ("app.py", "requirements.txt", "ui/__init__.py", "ui/predict.py", "ume_mma/__init__.py",
                 "ume_mma/data/x.py", "assets/a.png", "assets/examples.json",
                 # decoys
                 ".venv/lib/site.py", "tests/test_a.py", "data/annotations.db", ".env", "ume_mma/__pycache__/x.pyc",
                 "runs/x/metrics.json", ".cache/features/a.safetensors", "checkpoints/unserved/config.json",
                 "ui/.secret.py", "token.txt", "notes.md", "docs/index.md", "docs/app.png", "docs/walkthrough.py",
                 "results/plot.png", "results/table.json"):  # fmt: skip
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    shutil.copytree(AV, root / "checkpoints" / "av-digits")
    (root / "checkpoints" / "av-digits" / "optimizer.pt").write_text("not served")
    (root / "README.md").write_text("---\ntitle: old\n---\n# The repository's long README\n")
    (root / "SPACE_README.md").write_text("# Studio\n")
    space = yaml.safe_load((ROOT / "Space.yaml").read_text())
    space["deploy"] |= {"checkpoints": ["checkpoints/av-digits", "org/model@v1.0"], "env": {"UME_MMA_PUBLIC": "1"},
                        "secrets": ["HF_TOKEN"], "storage": "me/studio-data", "hardware": "zero-a10g"}  # fmt: skip
    (root / "Space.yaml").write_text(yaml.safe_dump(space, allow_unicode=True))
    return root / "Space.yaml"


def test_deploy_space_uploads_exactly_what_the_space_needs(api, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_never_sent")
    config = fake_repo(tmp_path)
    plan = deploy_space("me/studio", config)
    files = committed(api)
    assert sorted(files) == [
        "README.md", "Space.yaml", "app.py", "assets/a.png", "assets/examples.json",
        "checkpoints/av-digits/README.md", "checkpoints/av-digits/config.json", "checkpoints/av-digits/metrics.json",
        "checkpoints/av-digits/model.safetensors", "checkpoints/av-digits/replay.safetensors",
        "docs/app.png", "docs/index.md", "docs/results/plot.png",
        "requirements.txt", "ui/__init__.py", "ui/predict.py",
        "ume_mma/__init__.py", "ume_mma/data/x.py",
    ]  # fmt: skip
    api.create_repo.assert_called_once_with("me/studio", repo_type="space", space_sdk="gradio", private=False,
                                            exist_ok=True)  # fmt: skip
    api.request_space_hardware.assert_called_once_with("me/studio", "zero-a10g")
    api.add_space_variable.assert_called_once_with("me/studio", "UME_MMA_PUBLIC", "1")
    api.create_bucket.assert_called_once_with("me/studio-data", private=True, exist_ok=True)
    (volume,) = api.set_space_volumes.call_args.args[1]
    assert (volume.type, volume.source, volume.mount_path) == ("bucket", "me/studio-data", "/data")
    assert not api.add_space_secret.called, "secret values are never sent"
    readme = files["README.md"].decode()
    front = yaml.safe_load(readme.split("---\n", 2)[1])
    assert front["suggested_hardware"] == "zero-a10g" and front["models"] == ["org/model"]
    assert front["preload_from_hub"] == ["org/model config.json,model.safetensors,README.md,metrics.json v1.0"]
    assert readme.endswith("---\n# Studio\n") and plan["secrets_expected"] == ["HF_TOKEN"]  # SPACE_README.md's body
    sent = json.dumps([str(v) for v in files.values()] + [str(c) for c in api.mock_calls])
    assert "hf_secret_value_never_sent" not in sent


def test_a_dry_run_of_the_real_repository_lists_no_secrets_caches_venvs_databases_or_test_data(capsys):
    assert main(["deploy-space", "me/studio", "--dry-run"]) == 0
    out = capsys.readouterr().out
    paths = [line.split()[0] for line in out.splitlines() if line.startswith("  ") and line.endswith(" bytes)")]
    assert "app.py" in paths and "ume_mma/predictor.py" in paths and "checkpoints/av-digits/model.safetensors" in paths
    bad = [p for p in paths if p.startswith(FORBIDDEN_TOP) or any(x in p for x in FORBIDDEN_ANY)]
    assert not bad, bad
    assert paths == [u.path_in_repo for u in space_uploads(load_space_config())]


def test_the_space_gets_its_own_short_readme_whose_links_resolve_in_the_space():
    import re

    uploads = {u.path_in_repo: u for u in space_uploads(load_space_config())}
    readme = uploads["README.md"].content.decode()
    _, front, body = readme.split("---\n", 2)
    assert yaml.safe_load(front) == load_space_config().front_matter()
    assert body == (ROOT / "SPACE_README.md").read_text(encoding="utf-8")
    assert len(body.splitlines()) <= 40 and len(body) < 4000, "a short README, not the repository's"
    links = re.findall(r"\]\(([^)#\s]+)", body)
    assert "docs/index.md" in links and all(link in uploads for link in links), links
    pages = [p for p in uploads if p.startswith("docs/") and p.endswith(".md")]
    images = {(Path(p).parent / i).as_posix() for p in pages for i in re.findall(r"!\[[^]]*\]\(([^)\s]+)\)",
              uploads[p].local.read_text(encoding="utf-8"))}  # fmt: skip
    assert images and images <= set(uploads), sorted(images - set(uploads))


def test_a_repository_without_a_space_readme_is_refused_and_nothing_is_uploaded(api, tmp_path):
    config = fake_repo(tmp_path)
    (tmp_path / "SPACE_README.md").unlink()
    with pytest.raises(InputError, match="SPACE_README.md is missing"):
        deploy_space("me/studio", config)
    assert not api.method_calls


@pytest.mark.parametrize(
    "change, message",
    [
        ({"deploy": {"hardwre": "cpu-basic"}}, "unknown deploy keys \\['hardwre'\\]"),
        ({"space": {"colour": "red"}}, "unknown space keys"),
        ({"deploy": {"hardware": "tpu-v9"}}, "not a Space hardware the Hub knows"),
        ({"deploy": {"checkpoints": ["../secrets"]}}, "neither a checkpoint folder"),
        ({"deploy": {"checkpoints": ["org/model"]}}, "neither a checkpoint folder"),  # a Hub id needs a revision
        ({"deploy": {"secrets": ["HF_TOKEN=hf_abc"]}}, "names only"),
        ({"extra": {}}, "needs the sections"),
    ],
)
def test_a_bad_space_yaml_is_refused_and_nothing_is_uploaded(api, tmp_path, change, message):
    config = fake_repo(tmp_path)
    data = yaml.safe_load(config.read_text())
    for section, values in change.items():
        data[section] = {**(data.get(section) or {}), **values} if section in ("space", "deploy") else values
    config.write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(SpaceConfigError, match=message):
        deploy_space("me/studio", config)
    assert not api.method_calls


def test_a_pushed_checkpoint_loads_from_the_local_hf_cache_by_repo_id_and_revision(api, tmp_path, monkeypatch):
    """What push-checkpoint sends, laid out as huggingface_hub's cache; then loaded offline."""
    from huggingface_hub import constants

    push_checkpoint(AV, "me/av-digits")
    revision = "a" * 40
    repo = tmp_path / "hub" / "models--me--av-digits"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for path, source in committed(api).items():
        (snapshot / path).write_bytes(source if isinstance(source, bytes) else Path(source).read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    from ui.checkpoint import model_card
    from ume_mma.predictor import Predictor

    image = str(ROOT / "assets" / "agree_7_image_7.png")
    for ref in ("me/av-digits", f"me/av-digits@{revision}", f"hf-hub:me/av-digits@{revision}"):
        predictor = Predictor.from_pretrained(ref)
        assert predictor.predict({"image": image}).fused.label == "7"
    card = model_card(predictor)
    assert card.startswith("# UME-MMA checkpoint: av-digits") and "model-index" not in card
    with pytest.raises(CheckpointError, match="not in the local cache"):
        Predictor.from_pretrained("me/never-pushed")
