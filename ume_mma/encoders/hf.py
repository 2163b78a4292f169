"""Hugging Face ``transformers`` encoders: CLIP/CLAP towers, AST, the Whisper encoder, or any AutoModel.

The architecture is built from a config (``options["config"]`` overrides on the kind's Config class, so
a tiny random model needs no download); :meth:`HFEncoder.load_pretrained` resolves ``spec.pretrained``
through :func:`ume_mma.hub.resolve` and calls ``from_pretrained`` on the local folder. ``transformers``
is imported lazily: importing this module is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ume_mma.encoders.base import Encoder, EncoderOptions, audio_to_tensor
from ume_mma.encoders.whisper import pool_span, whisper_window
from ume_mma.errors import CheckpointError, MissingDependencyError
from ume_mma.registry import EncoderSpec, register_adapter, register_encoder

# kind -> (Config class, model class, output attribute used by pooling="pooler", modality)
KINDS: dict[str, tuple[str, str, str | None, str | None]] = {
    "clip_vision": ("CLIPVisionConfig", "CLIPVisionModelWithProjection", "image_embeds", "image"),
    "clip_text": ("CLIPTextConfig", "CLIPTextModelWithProjection", "text_embeds", "text"),
    "clap_audio": ("ClapAudioConfig", "ClapAudioModelWithProjection", "audio_embeds", "audio"),
    "clap_text": ("ClapTextConfig", "ClapTextModelWithProjection", "text_embeds", "text"),
    "ast": ("ASTConfig", "ASTModel", "pooler_output", "audio"),
    "whisper_encoder": ("WhisperConfig", "WhisperModel", None, "audio"),
    "auto": ("AutoConfig", "AutoModel", "pooler_output", None),
}


@dataclass(frozen=True)
class HFOptions(EncoderOptions):
    """Options of :class:`HFEncoder` (``transformers`` adapter and the packaged MiniLM)."""

    kind: str  # a key of KINDS
    model_id: str = ""  # informative: the Hub model the spec was written for
    pooling: str | None = None  # "pooler" | "mean" | "cls"; None: "mean" for auto/whisper, else "pooler"
    config: dict[str, Any] = field(default_factory=dict)  # overrides on the kind's Config class
    tokenizer: str | None = None  # text kinds: tokenizer reference; None = spec.pretrained
    max_length: int = 0  # text kinds: token limit; 0 = the model's
    normalize: bool = False  # L2-normalise outputs
    seconds: float = 30.0  # Whisper: window each clip is put in (longer clips: centred crop)
    segments: int = 1  # Whisper: equal parts of the frames covering audio, each mean-pooled
    align: str = "start"  # Whisper: where a shorter clip sits in its window


META_FILES = ["*.json", "*.txt", "*.model"]  # configs, processors, tokenizer vocabularies
WEIGHT_FILES = [["*.safetensors"], ["*.bin"]]  # tried in order when downloading


def transformers_module():
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - transformers is a declared dependency
        raise MissingDependencyError("this encoder needs transformers: pip install transformers") from exc
    return transformers


def resolve_folder(ref: str, meta: list[str], weights: list[list[str]]) -> Path:
    """Resolve ``ref`` to a local folder holding ``meta`` files and the first ``weights`` pattern found."""
    from ume_mma.hub import resolve

    folder = Path(ref)
    for patterns in weights:
        folder = resolve(ref, allow_patterns=meta + patterns)
        if not patterns or any(any(folder.glob(p)) for p in patterns):
            break
    return folder


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the tokens where ``mask`` is 1. ``hidden (B, L, C)``, ``mask (B, L)`` -> ``(B, C)``."""
    if mask is None:
        return hidden.mean(1)
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


class HFEncoder(Encoder):
    """One ``transformers`` model as an encoder; options: :class:`HFOptions`. Image: ``Tensor[B, 3, S, S]``,
    text: ``{"input_ids", "attention_mask"[, "token_type_ids"]}: Tensor[B, L]``, audio: the kind's feature
    extractor output (Whisper adds ``"span": Tensor[B, 2]``) -> ``Tensor[B, D]``."""

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__(spec)
        o = self.options = HFOptions.from_spec(spec)
        self.kind = o.kind
        if self.kind not in KINDS:
            raise ValueError(f"encoder {spec.name!r}: unknown kind {self.kind!r}; known: {sorted(KINDS)}")
        self.pooling = o.pooling or ("mean" if self.kind in ("auto", "whisper_encoder") else "pooler")
        self.tokenizer: Any = None
        self.processor: Any = None
        self.model = self._build(config=self._config())
        self.processor = self._default_processor()

    # -- building --------------------------------------------------------------------------------
    def _config(self):
        tf = transformers_module()
        overrides = dict(self.options.config)
        cls = getattr(tf, KINDS[self.kind][0])
        return tf.AutoConfig.for_model(**overrides) if self.kind == "auto" else cls(**overrides)

    def _build(self, config: Any = None, folder: Path | None = None) -> nn.Module:
        tf = transformers_module()
        cls = getattr(tf, KINDS[self.kind][1])
        if self.kind == "whisper_encoder":
            from transformers.models.whisper.modeling_whisper import WhisperEncoder

            model = self._from_pretrained(cls, folder).get_encoder() if folder else WhisperEncoder(config)
            return self._crop_positions(model)
        if folder is not None:
            return self._from_pretrained(cls, folder)
        return tf.AutoModel.from_config(config) if self.kind == "auto" else cls(config)

    def _from_pretrained(self, cls: Any, folder: Path) -> nn.Module:
        # Strict: transformers only warns about missing weights and initialises them at random.
        model, info = cls.from_pretrained(folder, output_loading_info=True)
        bad = list(info.get("missing_keys", [])) + [str(k) for k in info.get("mismatched_keys", [])]
        if bad:
            raise CheckpointError(
                f"encoder {self.spec.name!r}: {folder} lacks or mismatches {len(bad)} weights, e.g. {bad[:5]}"
            )
        return model

    def _crop_positions(self, model: nn.Module) -> nn.Module:
        # A window shorter than 30 s: keep the first positions (what CTranslate2 does), ~20x less compute.
        n = int(round(self.options.seconds * 50))
        if n < model.config.max_source_positions:
            old = model.embed_positions
            model.embed_positions = nn.Embedding(n, old.embedding_dim).requires_grad_(False)
            model.embed_positions.weight.data.copy_(old.weight.data[:n])
            model.config.max_source_positions = n
        return model

    def _out_dim(self) -> int:
        c = self.model.config
        if self.kind == "whisper_encoder":
            return c.d_model * self.options.segments
        if self.pooling == "pooler" and hasattr(c, "projection_dim") and self.kind != "auto":
            return c.projection_dim
        return c.hidden_size

    def _check_dim(self, error: type[Exception]) -> None:
        if self._out_dim() != self.spec.embed_dim:
            raise error(
                f"encoder {self.spec.name!r}: model gives {self._out_dim()}-d outputs, spec says {self.spec.embed_dim}"
            )

    def _default_processor(self) -> Any:
        tf, c = transformers_module(), self.model.config
        if self.kind == "clip_vision":
            s = c.image_size
            return tf.CLIPImageProcessor(size={"shortest_edge": s}, crop_size={"height": s, "width": s})
        if self.kind == "clap_audio":
            return tf.ClapFeatureExtractor(
                feature_size=c.num_mel_bins, truncation="fusion" if c.enable_fusion else "rand_trunc"
            )
        if self.kind == "ast":
            return tf.ASTFeatureExtractor(num_mel_bins=c.num_mel_bins, max_length=c.max_length)
        if self.kind == "whisper_encoder":
            return tf.WhisperFeatureExtractor(feature_size=c.num_mel_bins)
        return None

    # -- weights ---------------------------------------------------------------------------------
    def load_pretrained(self) -> None:
        if not self.spec.pretrained:
            return
        folder = resolve_folder(self.spec.pretrained, META_FILES, WEIGHT_FILES)
        try:
            self.model = self._build(folder=folder)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"encoder {self.spec.name!r}: cannot load {self.spec.pretrained!r}: {exc}") from exc
        self._check_dim(CheckpointError)
        if (folder / "preprocessor_config.json").exists():
            tf = transformers_module()
            auto = tf.AutoImageProcessor if self.spec.modality == "image" else tf.AutoFeatureExtractor
            self.processor = auto.from_pretrained(folder)
        if self.spec.modality == "text":  # fetched now, so that preprocess never fetches
            self.tokenizer = self._load_tokenizer(None if self.options.tokenizer else folder)

    def _load_tokenizer(self, folder: Path | None = None) -> Any:
        if folder is None:
            ref = self.options.tokenizer or self.spec.pretrained
            if not ref:
                raise CheckpointError(
                    f"encoder {self.spec.name!r} needs a tokenizer: set options['tokenizer'] or pretrained"
                )
            folder = resolve_folder(ref, META_FILES, [[]])
        return transformers_module().AutoTokenizer.from_pretrained(folder)

    # -- preprocessing and forward ---------------------------------------------------------------
    def preprocess(self, raws: list[Any]) -> torch.Tensor | dict[str, torch.Tensor]:
        if self.spec.modality == "text":
            return self._tokenize([str(t) for t in raws])
        if self.spec.modality == "image":
            if self.processor is None:
                raise CheckpointError(f"encoder {self.spec.name!r}: no image processor; call load_pretrained() first")
            return self.processor(images=[im.convert("RGB") for im in raws], return_tensors="pt")["pixel_values"]
        return self._audio_features(raws)

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if self.tokenizer is None:
            self.tokenizer = self._load_tokenizer()
        c = self.model.config
        limit = self.options.max_length or min(
            self.tokenizer.model_max_length, getattr(c, "max_position_embeddings", 512)
        )
        out = self.tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        keep = (
            ("input_ids", "attention_mask", "token_type_ids")
            if self.kind == "auto"
            else ("input_ids", "attention_mask")
        )
        return {k: v for k, v in out.items() if k in keep}

    def _audio_features(self, raws: list[Any]) -> dict[str, torch.Tensor]:
        sr = self.spec.sample_rate
        if self.kind == "whisper_encoder":
            waves, span = whisper_window(raws, sr, self.options.seconds, self.options.align)
            feats = self.processor(
                list(waves.numpy()),
                sampling_rate=sr,
                padding="max_length",
                max_length=waves.shape[1],
                return_tensors="pt",
            )
            return {"input_features": feats["input_features"], "span": span}
        # AST pads/truncates itself; CLAP truncates at random beyond its window: centre-crop first.
        seconds = getattr(self.processor, "max_length_s", None) or 1e9
        waves = [audio_to_tensor(a, sr, min(seconds, len(a.samples) / a.sample_rate)).numpy() for a in raws]
        out = self.processor(waves, sampling_rate=sr, return_tensors="pt")
        return {k: v for k, v in out.items() if k in ("input_features", "input_values", "is_longer")}

    def forward(self, batch: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        if isinstance(batch, torch.Tensor):
            batch = {"pixel_values": batch}
        batch = dict(batch)
        span = batch.pop("span", None)
        out = self.model(**batch)
        if self.kind == "whisper_encoder":  # (B, T, C), pool only the frames covering audio
            x = pool_span(out.last_hidden_state, span, self.options.segments)
        elif self.pooling == "pooler":
            x = getattr(out, KINDS[self.kind][2])
        elif self.pooling == "cls":
            x = out.last_hidden_state[:, 0]
        else:
            x = masked_mean(out.last_hidden_state, batch.get("attention_mask"))
        return nn.functional.normalize(x, dim=-1) if self.options.normalize else x  # (B, D)

    @property
    def input_seconds(self) -> float | None:
        """Audio window: Whisper's ``options.seconds`` (centred crop), CLAP's ``max_length_s`` (centred crop),
        AST's ``max_length`` frames of 10 ms (it keeps the start); None for image and text encoders."""
        if self.kind == "whisper_encoder":
            return self.options.seconds
        if self.kind == "clap_audio":
            return float(self.processor.max_length_s)
        if self.kind == "ast":
            return self.processor.max_length / 100.0
        return None


@register_adapter("transformers")
def build_transformers(spec: EncoderSpec) -> Encoder:
    encoder = HFEncoder(spec)
    encoder._check_dim(ValueError)
    return encoder


def _register(name: str, kind: str, model_id: str, embed_dim: int, description: str, **extra: Any) -> None:
    options = {"kind": kind, "model_id": model_id, **extra.pop("options", {})}
    register_encoder(
        EncoderSpec(
            name=name,
            modality=KINDS[kind][3],
            source="transformers",
            embed_dim=embed_dim,
            options=options,
            pretrained=f"hf-hub:{model_id}",
            frozen=True,
            description=description,
            **extra,
        )
    )


_CLIP = "openai/clip-vit-base-patch32"
_CLAP = "laion/clap-htsat-unfused"
_register(
    "hf.clip-vit-b-32.image", "clip_vision", _CLIP, 512, "OpenAI CLIP ViT-B/32 image tower (projected)", image_size=224
)
_register("hf.clip-vit-b-32.text", "clip_text", _CLIP, 512, "OpenAI CLIP ViT-B/32 text tower (projected)")
_register(
    "hf.clap.audio", "clap_audio", _CLAP, 512, "LAION CLAP HTS-AT audio tower (projected), 48 kHz", sample_rate=48000
)
_register("hf.clap.text", "clap_text", _CLAP, 512, "LAION CLAP RoBERTa text tower (projected)")
_register(
    "hf.ast.audio",
    "ast",
    "MIT/ast-finetuned-audioset-10-10-0.4593",
    768,
    "Audio Spectrogram Transformer (AudioSet), pooled CLS+distillation tokens, 16 kHz",
    sample_rate=16000,
)
_register(
    "hf.whisper-base.audio",
    "whisper_encoder",
    "openai/whisper-base",
    5 * 512,
    "Whisper base encoder on a 2 s window, mean of 5 segments of the frames covering audio, 16 kHz",
    sample_rate=16000,
    options={
        "seconds": 2.0,
        "segments": 5,
        "config": {"d_model": 512, "encoder_layers": 6, "encoder_attention_heads": 8, "encoder_ffn_dim": 2048},
    },
)
