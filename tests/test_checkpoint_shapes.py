"""A checkpoint whose tensors have the names but not the shapes of its config is refused precisely.

Guards ``ume_mma/checkpoint.py``'s shape check: without it ``load_state_dict`` fails with a raw
``RuntimeError`` ("size mismatch") that the CLI and the app do not turn into a readable message."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from ume_mma.checkpoint import from_pretrained, save_pretrained
from ume_mma.errors import CheckpointError
from ume_mma.models import ModelConfig, MultiModalModel
from ume_mma.registry import get_spec


def _saved(folder, fusion="mma", fill="token"):
    config = ModelConfig(
        task="shapes",
        labels=["a", "b", "c"],
        fusion=fusion,
        fill=fill,
        encoders={"image": get_spec("scratch.image-cnn").to_dict(), "text": get_spec("scratch.hashed-text").to_dict()},
    )
    return save_pretrained(MultiModalModel(config), folder)


@pytest.mark.parametrize(
    ("key", "reshape"),
    [
        ("heads.image.weight", lambda t: torch.zeros(t.shape[0] + 1, t.shape[1])),  # one class too many
        ("heads.text.bias", lambda t: torch.zeros(1)),  # broadcastable, still refused
        ("missing_tokens.image", lambda t: torch.zeros(1, t.shape[0])),  # same numel, other shape
    ],
)
def test_wrong_shape_raises_checkpoint_error(tmp_path, key, reshape):
    folder = _saved(tmp_path / "ck")
    state = load_file(folder / "model.safetensors")
    assert key in state
    state[key] = reshape(state[key])
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=rf"shape mismatch for \['{key}'\]"):
        from_pretrained(folder)


def test_right_shapes_load(tmp_path):
    folder = _saved(tmp_path / "ck")
    assert from_pretrained(folder).config.task == "shapes"
