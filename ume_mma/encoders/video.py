"""Video encoders: sample frames, run any registered image encoder on them, pool over time.

options: ``image_encoder`` (a registered image encoder name, or a full spec dict, e.g. a tiny one for tests),
``num_frames`` T (default 8), ``pooling`` ("mean" | "max"). The soundtrack is not used here: it goes
through an audio encoder as the separate ``audio`` modality.
"""

from __future__ import annotations

from typing import Any

import torch

from ume_mma.encoders.base import Batch, Encoder
from ume_mma.errors import InputError
from ume_mma.registry import EncoderSpec, create_encoder, get_spec, register_adapter, register_encoder


def image_spec(spec: EncoderSpec) -> EncoderSpec:
    """The spec of the image encoder a video spec names."""
    ref = spec.options["image_encoder"]
    inner = get_spec(ref) if isinstance(ref, str) else EncoderSpec.from_dict(ref)
    if inner.modality != "image":
        raise ValueError(f"encoder {spec.name!r}: {inner.name!r} is a {inner.modality} encoder, not an image encoder")
    return inner


def sample_indices(n_frames: int, num: int) -> list[int]:
    """``num`` frame indices spread evenly over ``n_frames`` (centres of equal segments); a clip with fewer
    frames repeats them in order."""
    if n_frames <= 0:
        raise InputError("a video clip has no frames")
    return [min(n_frames - 1, int((i + 0.5) * n_frames / num)) for i in range(num)]


class FrameVideoEncoder(Encoder):
    """``preprocess`` -> the image encoder's batch of ``B * T`` frames reshaped to ``(B, T, ...)``;
    ``forward`` -> image encoder on ``(B * T, ...)`` -> ``(B, T, D)`` -> pooled over T -> ``(B, D)``."""

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__(spec)
        self.image_encoder = create_encoder(image_spec(spec))
        if self.image_encoder.embed_dim != spec.embed_dim:
            raise ValueError(
                f"encoder {spec.name!r}: image encoder gives {self.image_encoder.embed_dim}-d, "
                f"spec says {spec.embed_dim}"
            )
        self.num_frames = int(spec.options.get("num_frames", 8))
        self.pooling = spec.options.get("pooling", "mean")
        if self.pooling not in ("mean", "max"):
            raise ValueError(f"encoder {spec.name!r}: pooling must be 'mean' or 'max', got {self.pooling!r}")

    def load_pretrained(self) -> None:
        self.image_encoder.load_pretrained()

    def preprocess(self, raws: list[Any]) -> Batch:
        frames = [clip.frames[i] for clip in raws for i in sample_indices(len(clip.frames), self.num_frames)]
        batch = self.image_encoder.preprocess(frames)  # (B * T, ...)
        b, t = len(raws), self.num_frames
        if isinstance(batch, dict):
            return {k: v.reshape(b, t, *v.shape[1:]) for k, v in batch.items()}
        return batch.reshape(b, t, *batch.shape[1:])  # (B, T, C, H, W)

    def forward(self, batch: Batch) -> torch.Tensor:
        first = next(iter(batch.values())) if isinstance(batch, dict) else batch
        b, t = first.shape[:2]
        if isinstance(batch, dict):
            flat: Batch = {k: v.reshape(b * t, *v.shape[2:]) for k, v in batch.items()}
        else:
            flat = batch.reshape(b * t, *batch.shape[2:])
        x = self.image_encoder(flat).reshape(b, t, -1)  # (B, T, D)
        return x.mean(1) if self.pooling == "mean" else x.amax(1)  # (B, D)


@register_adapter("video")
def build_video(spec: EncoderSpec) -> Encoder:
    return FrameVideoEncoder(spec)


def _register(name: str, image_encoder: str, num_frames: int = 8) -> None:
    inner = get_spec(image_encoder)
    register_encoder(
        EncoderSpec(
            name=name,
            modality="video",
            source="video",
            embed_dim=inner.embed_dim,
            options={"image_encoder": image_encoder, "num_frames": num_frames, "pooling": "mean"},
            pretrained=inner.pretrained,
            frozen=inner.frozen,
            image_size=inner.image_size,
            description=f"{num_frames} evenly spaced frames through {image_encoder}, mean over time",
        )
    )


# The image encoders register on import (see ume_mma/encoders/__init__.py, which imports them first).
_register("video.frames-efficientnet-lite0", "packaged.efficientnet-lite0")
_register("video.frames-clip-vit-b-32", "open_clip.vit-b-32.image")
