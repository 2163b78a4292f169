"""Proof that adding an encoder is one spec + one small adapter, and no other file touched."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ume_mma import registry
from ume_mma.checkpoint import from_pretrained, save_pretrained
from ume_mma.encoders.base import Encoder, EncoderOptions
from ume_mma.errors import UnknownEncoderError
from ume_mma.models import ModelConfig, MultiModalModel
from ume_mma.registry import EncoderSpec, get_spec, list_encoders, register_adapter, register_encoder


@dataclass(frozen=True)
class PixelOptions(EncoderOptions):
    size: int = 8  # images are resized to size x size grayscale


class PixelMLP(Encoder):
    """Grayscale pixels ``Tensor[B, S*S]`` in [0, 1] -> one linear layer + ReLU -> ``Tensor[B, D]``."""

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__(spec)
        self.options = PixelOptions.from_spec(spec)
        self.proj = nn.Sequential(nn.Linear(self.options.size**2, spec.embed_dim), nn.ReLU())

    def preprocess(self, raws: list[Any]) -> torch.Tensor:
        s = self.options.size
        arrays = [np.asarray(img.convert("L").resize((s, s)), dtype=np.float32).ravel() / 255.0 for img in raws]
        return torch.from_numpy(np.stack(arrays))  # (B, S*S)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)  # (B, D)


@pytest.fixture
def pixel_encoder():
    """Registers the adapter and its spec for one test, then removes both (nothing leaks to other tests)."""
    register_adapter("test-pixels")(PixelMLP)
    spec = register_encoder(
        EncoderSpec(name="test.pixel-mlp", modality="image", source="test-pixels", embed_dim=12, options={"size": 6})
    )
    yield spec
    registry.ENCODERS.pop(spec.name)
    registry._ADAPTERS.pop("test-pixels")


def _images(n: int, seed: int) -> tuple[list[Image.Image], torch.Tensor]:
    """Bright-left (label 0) or bright-right (label 1) noisy images."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = []
    for y in labels:
        arr = rng.normal(60, 20, (16, 16))
        arr[:, 8:] += 120 if y else 0
        arr[:, :8] += 0 if y else 120
        images.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
    return images, torch.tensor(labels)


def test_a_new_encoder_is_one_spec_and_one_adapter(pixel_encoder, tmp_path):
    assert "test.pixel-mlp" in list_encoders("image") and get_spec("test.pixel-mlp") == pixel_encoder
    torch.manual_seed(0)
    config = ModelConfig(
        task="pixels",
        labels=["left", "right"],
        encoders={"image": pixel_encoder.to_dict(), "text": get_spec("scratch.hashed-text").to_dict()},
        fusion="mma",
        fill="token",
    )
    model = MultiModalModel(config)
    images, labels = _images(32, seed=0)
    texts = ["left" if y == 0 else "right" for y in labels.tolist()]
    x = {"image": model.encoders["image"].preprocess(images), "text": model.encoders["text"].preprocess(texts)}
    assert x["image"].shape == (32, 36)
    present = {"image": torch.ones(32, dtype=torch.bool), "text": torch.arange(32) % 2 == 0}  # half lack text
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x, present).fused, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    model.eval()
    with torch.no_grad():
        out = model(x, present)
    assert (out.fused.argmax(-1) == labels).float().mean() > 0.9

    save_pretrained(model, tmp_path / "ck")
    loaded = from_pretrained(tmp_path / "ck")
    assert loaded.config.spec("image") == pixel_encoder and isinstance(loaded.encoders["image"], PixelMLP)
    with torch.no_grad():
        assert torch.equal(loaded(x, present).fused, out.fused)


def test_a_checkpoint_of_an_unregistered_adapter_names_the_source(pixel_encoder, tmp_path):
    config = ModelConfig(task="pixels", labels=["left", "right"], encoders={"image": pixel_encoder.to_dict()})
    save_pretrained(MultiModalModel(config), tmp_path / "ck")
    registry._ADAPTERS.pop("test-pixels")
    try:
        with pytest.raises(UnknownEncoderError, match="test-pixels"):
            from_pretrained(tmp_path / "ck")
    finally:
        register_adapter("test-pixels")(PixelMLP)
