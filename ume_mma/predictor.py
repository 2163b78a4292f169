"""Predictor: files -> per-branch and fused predictions, shared by the app, the CLI and scripts.

Encoder outputs are cached by content hash (bounded LRU), so asking again with fewer modalities
re-runs no encoder: only heads and fusion, which cost microseconds.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ume_mma import io
from ume_mma.errors import InputError
from ume_mma.models import MultiModalModel

INPUT_KEYS = ("video", "audio", "image", "text")


@dataclass
class BranchResult:
    label: str
    confidences: dict[str, float]  # label -> probability, sorted by probability

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "confidences": self.confidences}


@dataclass
class Prediction:
    """What one predict call returns. ``sources``: modality -> which input fed that branch."""

    checkpoint: str
    fusion: str
    modalities_used: list[str]
    fused: BranchResult
    branches: dict[str, BranchResult]
    sources: dict[str, str]
    frames: list[Image.Image] = field(default_factory=list)  # frames sampled from a video, if any
    # Fused result for every non-empty subset of ``modalities_used`` ("audio+image" -> result), when asked
    # for: a UI can then switch modalities off without another call (branches do not depend on the subset).
    subsets: dict[str, BranchResult] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "fusion": self.fusion,
            "modalities_used": self.modalities_used,
            "fused": self.fused.to_dict(),
            "branches": {m: b.to_dict() for m, b in self.branches.items()},
            "sources": self.sources,
        }


@dataclass(frozen=True)
class Limits:
    """Input caps; ``None`` = no cap."""

    max_file_bytes: int | None = 200 * 2**20
    max_video_seconds: float | None = 120.0
    max_audio_seconds: float | None = 120.0
    max_image_pixels: int = io.MAX_IMAGE_PIXELS


class _LRU(OrderedDict):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_item(self, key: Any) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        return None

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


def file_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Predictor:
    """Loads a checkpoint once; ``predict`` maps inputs (``video``/``audio``/``image`` paths, ``text``)
    to fused and per-branch predictions. Not tied to any UI."""

    def __init__(
        self,
        model: MultiModalModel,
        name: str = "",
        cache_size: int = 256,
        num_frames: int = 8,
        limits: Limits | None = None,
    ) -> None:
        self.model = model.eval()
        self.name = name or model.config.task
        self.num_frames = num_frames
        self.limits = limits or Limits()
        self.cache = _LRU(cache_size)  # (modality, encoder, source kind, hash) -> Tensor[D]
        self.frames = _LRU(max(8, cache_size // 8))  # video hash -> sampled frames
        self.stats = {"encoder_calls": 0, "cache_hits": 0}
        self.folder: Path | None = None  # the checkpoint folder, when loaded from one
        self._lock = threading.RLock()  # predict() is safe to call from several threads

    @classmethod
    def from_pretrained(cls, ref: str | Path, **kwargs: Any) -> Predictor:
        from ume_mma import hub
        from ume_mma.checkpoint import from_pretrained

        folder = hub.resolve(ref)
        kwargs.setdefault("name", str(ref))
        predictor = cls(from_pretrained(folder), **kwargs)
        predictor.folder = folder
        return predictor

    @property
    def metrics(self) -> dict[str, Any] | None:
        """The checkpoint's stored evaluation (``metrics.json``), if any."""
        from ume_mma.checkpoint import load_metrics

        return load_metrics(self.folder) if self.folder else None

    @property
    def card(self) -> str:
        """The checkpoint's model card (``README.md``), or an empty string."""
        path = self.folder / "README.md" if self.folder else None
        return path.read_text(encoding="utf-8") if path and path.is_file() else ""

    def clear_cache(self) -> None:
        """Forget every cached encoder output and sampled frame."""
        with self._lock:
            self.cache.clear()
            self.frames.clear()

    @property
    def modalities(self) -> list[str]:
        return self.model.modalities

    @property
    def labels(self) -> list[str]:
        return self.model.labels

    def _check_file(self, path: str | Path) -> Path:
        p = Path(path)
        if not p.is_file():
            raise io.DecodeError(p, "file does not exist")
        cap = self.limits.max_file_bytes
        if cap is not None and p.stat().st_size > cap:
            raise io.DecodeError(p, f"file is {p.stat().st_size / 2**20:.1f} MB, the limit is {cap / 2**20:.0f} MB")
        return p

    def resolve(
        self, inputs: Mapping[str, Any], enabled: Iterable[str] | None = None
    ) -> dict[str, tuple[str, Any, str]]:
        """Which input feeds each enabled branch: modality -> (kind, path or text, description)."""
        unknown = sorted(set(inputs) - set(INPUT_KEYS))
        if unknown:
            raise InputError(f"unknown inputs {unknown}; give any of {list(INPUT_KEYS)}")
        enabled = list(self.modalities if enabled is None else enabled)
        bad = sorted(set(enabled) - set(self.modalities))
        if bad:
            raise InputError(f"modalities {bad} are not used by this model; it uses {self.modalities}")
        video = inputs.get("video") or None
        routes: dict[str, tuple[str, Any, str]] = {}
        for m in enabled:
            own = inputs.get(m)
            if m == "text":
                if isinstance(own, str) and own.strip():
                    routes[m] = ("text", own, "text")
            elif own:
                routes[m] = (m, self._check_file(own), f"{m} file {Path(own).name}")
            elif video and m == "image":
                routes[m] = (
                    "frames",
                    self._check_file(video),
                    f"{self.num_frames} frames sampled from video {Path(video).name}",
                )
            elif video and m == "audio":
                routes[m] = ("soundtrack", self._check_file(video), f"soundtrack of video {Path(video).name}")
        return routes

    def _decode(self, kind: str, value: Any, modality: str, clips: dict[Path, io.VideoClip]) -> Any:
        spec = self.model.config.spec(modality)
        if kind == "text":
            return [value]
        if kind == "image":
            return [io.load_image(value, self.limits.max_image_pixels)]
        if kind == "audio":
            return [io.load_audio(value, spec.sample_rate, self.limits.max_audio_seconds)]
        if value not in clips:
            clips[value] = io.load_video(
                value,
                self.num_frames,
                self._audio_rate(),
                self.limits.max_video_seconds,
                audio_window=self._audio_window(),
            )
        clip = clips[value]
        if kind == "frames":
            return clip.frames
        if kind == "soundtrack":
            if clip.audio is None:
                return None
            return [clip.audio]
        return [clip]  # a "video" modality encoder takes the whole clip

    def _audio_rate(self) -> int:
        spec = self.model.config.spec("audio") if "audio" in self.modalities else None
        return (spec.sample_rate if spec else None) or 16000

    def _audio_window(self) -> float | None:
        """Seconds of soundtrack the audio encoder looks at (a centred window), plus margin; None = all."""
        if "audio" not in self.modalities:
            return 0.0
        seconds = self.model.config.spec("audio").options.get("seconds")
        return float(seconds) + 1.0 if seconds else None

    def features(
        self, modality: str, kind: str, value: Any, clips: dict[Path, io.VideoClip], digest: str
    ) -> torch.Tensor | None:
        """Encoder output ``Tensor[D]`` for one input, from the cache when its content (``digest``) was
        seen before; ``None`` when the input has nothing for this modality (a silent video)."""
        key = (modality, self.model.config.encoders[modality]["name"], kind, digest, self.num_frames)
        hit = self.cache.get_item(key)
        if hit is not None:
            self.stats["cache_hits"] += 1
            return hit
        raws = self._decode(kind, value, modality, clips)
        if raws is None:
            return None
        if kind in ("frames", "soundtrack", "video") and value in clips:
            self.frames.put(digest, clips[value].frames)
        feats = self.model.encoders[modality].encode(raws).mean(dim=0)  # (K, D) -> (D,): temporal pooling
        self.stats["encoder_calls"] += 1
        self.cache.put(key, feats)
        return feats

    @torch.no_grad()
    def predict(
        self,
        inputs: Mapping[str, Any],
        modalities: Iterable[str] | None = None,
        top_k: int | None = None,
        subsets: bool = False,
    ) -> Prediction:
        """Predict from ``inputs`` (keys ``video``, ``audio``, ``image``: paths or None; ``text``: str,
        empty = absent) using only ``modalities`` (default: all of the model's). ``subsets``: also fuse
        every non-empty subset of the modalities used (``Prediction.subsets``; one batched fusion call)."""
        with self._lock:
            return self._predict(inputs, modalities, top_k, subsets)

    def _predict(
        self, inputs: Mapping[str, Any], modalities: Iterable[str] | None, top_k: int | None, subsets: bool = False
    ) -> Prediction:
        routes = self.resolve(inputs, modalities)
        clips: dict[Path, io.VideoClip] = {}
        digests: dict[Any, str] = {}  # each file is hashed once per call
        feats, sources, frames = {}, {}, []
        for m, (kind, value, desc) in sorted(routes.items()):
            if value not in digests:
                digests[value] = hashlib.sha256(value.encode()).hexdigest() if kind == "text" else file_hash(value)
            f = self.features(m, kind, value, clips, digests[value])
            if f is None:
                sources[m] = f"no input: video {Path(value).name} has no soundtrack"
                continue
            feats[m], sources[m] = f.unsqueeze(0), desc
            if kind in ("frames", "video"):
                frames = self.frames.get_item(digests[value]) or []
        if not feats:
            raise InputError(
                f"no input for any enabled modality; this model uses {self.modalities} "
                "(give an image/audio/text, or a video for image frames and its soundtrack)"
            )
        present = {m: torch.ones(1, dtype=torch.bool) for m in feats}
        out = self.model.forward_features(feats, present)
        labels = self.labels
        branches = {m: _result(out.branches[m][0].softmax(-1), labels, top_k) for m in sorted(feats)}
        return Prediction(
            checkpoint=self.name,
            fusion=self.model.config.fusion,
            modalities_used=sorted(feats),
            fused=_result(out.fused_probs()[0], labels, top_k),
            branches=branches,
            sources=sources,
            frames=frames,
            subsets=self._subsets(feats, top_k) if subsets else {},
        )

    def _subsets(self, feats: dict[str, torch.Tensor], top_k: int | None) -> dict[str, BranchResult]:
        """Fused result of every non-empty subset of ``feats`` (modality -> ``Tensor[1, D]``), as one batch
        of S = 2^M - 1 rows whose presence masks differ."""
        mods = sorted(feats)
        combos = [c for r in range(1, len(mods) + 1) for c in itertools.combinations(mods, r)]  # S subsets
        batch = {m: feats[m].expand(len(combos), -1) for m in mods}  # (S, D) each
        present = {m: torch.tensor([m in c for c in combos]) for m in mods}  # (S,) each
        probs = self.model.forward_features(batch, present).fused_probs()  # (S, C)
        return {"+".join(c): _result(probs[i], self.labels, top_k) for i, c in enumerate(combos)}


def _result(probs: torch.Tensor, labels: list[str], top_k: int | None) -> BranchResult:
    order = probs.argsort(descending=True).tolist()[: top_k or len(labels)]
    return BranchResult(label=labels[order[0]], confidences={labels[i]: round(float(probs[i]), 6) for i in order})
