"""open_clip encoders: the image tower or the text tower of one open_clip model.

options: ``model`` (an open_clip architecture name, e.g. ``ViT-B-32``), ``tower`` ("image" | "text"),
``model_cfg`` (optional open_clip config overrides: ``embed_dim``, ``vision_cfg``, ``text_cfg``; a tiny
architecture for tests), ``normalize`` (L2-normalise outputs). The architecture is built with random
weights (``pretrained=None``, never downloads); :meth:`OpenClipTower.load_pretrained` resolves
``spec.pretrained`` (``hf-hub:org/name`` or a local folder/file) through :mod:`ume_mma.hub` and loads
``open_clip_model.safetensors`` (or ``open_clip_pytorch_model.bin`` with ``weights_only=True``).
Only the tower in use is kept in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ume_mma.encoders.base import Encoder, EncoderOptions
from ume_mma.encoders.hf import resolve_folder
from ume_mma.errors import CheckpointError, MissingDependencyError
from ume_mma.registry import EncoderSpec, register_adapter, register_encoder


@dataclass(frozen=True)
class OpenClipOptions(EncoderOptions):
    model: str = "ViT-B-32"  # open_clip architecture name
    tower: str = "image"  # "image" | "text"
    model_cfg: dict[str, Any] | None = None  # open_clip config overrides (embed_dim, vision_cfg, text_cfg)
    normalize: bool = False  # L2-normalise outputs


WEIGHT_NAMES = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]


def open_clip_module():
    try:
        import open_clip
    except ImportError as exc:  # pragma: no cover - open_clip_torch is a declared dependency
        raise MissingDependencyError("this encoder needs open_clip: pip install open_clip_torch") from exc
    return open_clip


class OpenClipTower(Encoder):
    """Image tower: ``Tensor[B, 3, S, S]`` (open_clip's eval transform) -> ``Tensor[B, D]``.
    Text tower: token ids ``Tensor[B, L]`` (open_clip's tokenizer) -> ``Tensor[B, D]``."""

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__(spec)
        oc = open_clip_module()
        o = self.options = OpenClipOptions.from_spec(spec)
        self.tower = o.tower
        if self.tower not in ("image", "text"):
            raise ValueError(f"encoder {spec.name!r}: tower must be 'image' or 'text', got {self.tower!r}")
        name = o.model
        base = oc.get_model_config(name)
        if base is None:
            raise ValueError(f"encoder {spec.name!r}: unknown open_clip model {name!r}")
        overrides = dict(o.model_cfg or {})
        self.cfg = {**base, **overrides}
        if self.cfg["embed_dim"] != spec.embed_dim:
            raise ValueError(
                f"encoder {spec.name!r}: open_clip {name} gives {self.cfg['embed_dim']}-d, spec says {spec.embed_dim}"
            )
        model = oc.create_model(
            name,
            pretrained=None,
            pretrained_image=False,
            pretrained_text=False,
            device=torch.get_default_device(),
            **overrides,
        )
        self.tokenizer: Any = None
        self.transform: Any = None
        if self.tower == "image":
            self.visual = model.visual  # the rest of the model is dropped
            self._set_transform({})
        else:
            model.visual = None
            self.model = model

    @property
    def _module(self) -> nn.Module:
        return self.visual if self.tower == "image" else self.model

    def _set_transform(self, overrides: dict[str, Any]) -> None:
        from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

        cfg = merge_preprocess_dict(self.visual.preprocess_cfg, overrides)
        self.visual.preprocess_cfg = cfg
        self.transform = image_transform_v2(PreprocessCfg(**cfg), is_train=False)

    def _make_tokenizer(self) -> Any:
        from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

        text_cfg = self.cfg["text_cfg"]
        length = text_cfg.get("context_length", 77)
        if text_cfg.get("hf_tokenizer_name"):
            from ume_mma.hub import resolve

            folder = resolve(text_cfg["hf_tokenizer_name"], allow_patterns=["*.json", "*.txt", "*.model"])
            return HFTokenizer(str(folder), context_length=length, tokenizer_mode=text_cfg.get("tokenizer_mode"))
        return SimpleTokenizer(context_length=length)

    # -- weights ---------------------------------------------------------------------------------
    def load_pretrained(self) -> None:
        if not self.spec.pretrained:
            return
        path = resolve_folder(self.spec.pretrained, ["open_clip_config.json"], [[n] for n in WEIGHT_NAMES])
        file = path if path.is_file() else next((path / n for n in WEIGHT_NAMES if (path / n).exists()), None)
        if file is None:
            raise CheckpointError(f"encoder {self.spec.name!r}: {path} has none of {WEIGHT_NAMES}")
        from open_clip.factory import load_state_dict

        state = load_state_dict(str(file), weights_only=True)
        if self.tower == "image":
            state = {k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")}
        else:
            state = {k: v for k, v in state.items() if not k.startswith("visual.")}
        missing = sorted(set(self._module.state_dict()) - set(state))
        if missing:
            raise CheckpointError(
                f"encoder {self.spec.name!r}: {file} lacks {len(missing)} weights, e.g. {missing[:5]}"
            )
        try:
            self._module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"encoder {self.spec.name!r}: {file} does not match the architecture: {exc}") from exc
        config = path / "open_clip_config.json" if path.is_dir() else None
        if self.tower == "image" and config is not None and config.exists():
            self._set_transform(json.loads(config.read_text()).get("preprocess_cfg", {}))
        if self.tower == "text":  # fetched now, so that preprocess never fetches
            self.tokenizer = self._make_tokenizer()

    # -- preprocessing and forward ---------------------------------------------------------------
    def preprocess(self, raws: list[Any]) -> torch.Tensor:
        if self.tower == "image":
            return torch.stack([self.transform(img.convert("RGB")) for img in raws])  # (B, 3, S, S)
        if self.tokenizer is None:
            self.tokenizer = self._make_tokenizer()
        return self.tokenizer([str(t) for t in raws])  # (B, L)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.visual(x) if self.tower == "image" else self.model.encode_text(x)
        return nn.functional.normalize(out, dim=-1) if self.options.normalize else out  # (B, D)


@register_adapter("open_clip")
def build_open_clip(spec: EncoderSpec) -> Encoder:
    return OpenClipTower(spec)


def _register(tag: str, model: str, pretrained: str, embed_dim: int, image_size: int, description: str) -> None:
    for tower in ("image", "text"):
        register_encoder(
            EncoderSpec(
                name=f"open_clip.{tag}.{tower}",
                modality=tower,
                source="open_clip",
                embed_dim=embed_dim,
                options={"model": model, "tower": tower},
                pretrained=pretrained,
                frozen=True,
                image_size=image_size if tower == "image" else None,
                description=f"{description}, {tower} tower",
            )
        )


_register(
    "vit-b-32",
    "ViT-B-32",
    "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
    512,
    224,
    "open_clip ViT-B/32 trained on LAION-2B",
)
