"""From dataset samples to model inputs: decode, preprocess once, and cache.

Trainable encoders get their *preprocessed inputs* cached (decoding is the slow part); frozen encoders
get their *outputs* cached, so head-only epochs never re-run an encoder. Both caches live on disk as
safetensors, keyed by the dataset content, the split and the encoder spec, and are reused across seeds.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ume_mma.decode import Decoder, Limits
from ume_mma.encoders.base import Batch, Encoder, to_device
from ume_mma.registry import EncoderSpec

CHUNK = 256
DECODE_VERSION = 2  # bump when decoding changes what a cached file would hold


@dataclass
class ModalityInputs:
    """One modality over N samples. ``data``: ``Tensor[N, ...]`` or dict of them (preprocessed inputs)
    or ``Tensor[N, D]`` (features, when ``is_features``); rows of missing samples are placeholders
    and ``present`` (``BoolTensor[N]``) says which rows are real."""

    data: Batch
    present: torch.Tensor
    is_features: bool

    def rows(self, index: torch.Tensor) -> Batch:
        if isinstance(self.data, dict):
            return {k: v[index] for k, v in self.data.items()}
        return self.data[index]


def take(x: ModalityInputs, rows: torch.Tensor) -> ModalityInputs:
    """The rows ``rows`` (``LongTensor[K]``) of ``x``."""
    return ModalityInputs(x.rows(rows), x.present[rows], x.is_features)


def concat(a: ModalityInputs, b: ModalityInputs) -> ModalityInputs:
    """The rows of ``a`` then those of ``b`` (the same modality and kind)."""
    if isinstance(a.data, dict):
        data: Any = {k: torch.cat([a.data[k], b.data[k]]) for k in a.data}
    else:
        data = torch.cat([a.data, b.data])
    return ModalityInputs(data, torch.cat([a.present, b.present]), a.is_features)


def load_raw(sample: Any, modality: str, decoder: Decoder) -> Any:
    """Decode one sample's input for ``modality`` into what the encoder's preprocess takes, through the
    library's one decode path (the predictor's): same limits, same audio window."""
    return decoder.sample(sample, modality)


def _cache_key(samples: list[Any], modality: str, spec: EncoderSpec, kind: str, decoder: Decoder) -> str:
    """Content key of one cache file: the samples' inputs (path, size, mtime), the spec and how they decode."""
    how = [kind, modality, spec.to_dict(), DECODE_VERSION, repr(decoder)]
    h = hashlib.sha256(json.dumps(how, sort_keys=True).encode())
    for s in samples:
        value = getattr(s, modality, None)
        h.update(repr(value).encode())
        if value is not None and modality != "text":
            st = Path(s.path(modality)).stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def _preprocess_all(
    samples: list[Any], modality: str, encoder: Encoder, desc: str, frozen: bool, decoder: Decoder | None = None
) -> tuple[Batch, torch.Tensor]:
    """Decode (``decoder``, default: the encoder's own with default limits) + preprocess every distinct input
    once (and encode it, if ``frozen``); rows of samples that share an input share its result.
    Returns (``Tensor[N, ...]`` or dict, ``BoolTensor[N]``)."""
    decoder = decoder or Decoder.for_encoders({modality: encoder})
    present = torch.tensor([getattr(s, modality, None) is not None for s in samples], dtype=torch.bool)
    idx = present.nonzero().flatten().tolist()

    def source(i: int) -> Any:  # what identifies sample i's input: the text itself, or the file path
        return samples[i].text if modality == "text" else samples[i].path(modality)

    # Rows that share an input (the same clip paired with several images) are decoded once.
    first: dict[Any, int] = {}
    for i in idx:
        first.setdefault(source(i), i)
    unique = list(first.values())
    if modality == "text" or not unique:  # tokenizers pad per call: one call keeps one length
        raws = [load_raw(samples[i], modality, decoder) for i in unique] or [placeholder(modality, decoder)]
        batch = encoder.preprocess(raws)
    else:
        parts = []
        for start in tqdm(range(0, len(unique), CHUNK), desc=desc, leave=False):
            raws = [load_raw(samples[i], modality, decoder) for i in unique[start : start + CHUNK]]
            parts.append(encoder.preprocess(raws))
        batch = (
            torch.cat(parts)
            if isinstance(parts[0], torch.Tensor)
            else {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        )
    if frozen:  # encode each distinct input once
        batch = encode_all(encoder, ModalityInputs(batch, torch.ones(len(unique), dtype=torch.bool), False))
    slot = {i: k for k, i in enumerate(unique)}
    rows = torch.tensor([slot[first[source(i)]] for i in idx], dtype=torch.long)
    take = (lambda t: t[rows]) if idx else (lambda t: t[:0])
    batch = {k: take(v) for k, v in batch.items()} if isinstance(batch, dict) else take(batch)
    return _scatter(batch, idx, len(samples)), present


def placeholder(modality: str, decoder: Decoder) -> Any:
    """A stand-in input of ``modality`` when no sample has one: it only gives the (all-missing) rows their
    shape, and is never a present row (an empty text; a second of silence; a black image or clip)."""
    from PIL import Image

    from ume_mma import io

    if modality == "text":
        return ""
    if modality == "audio":
        import numpy as np

        rate = decoder.audio_rate or 16_000
        return io.Audio(np.zeros(rate, dtype=np.float32), rate)
    image = Image.new("RGB", (32, 32))
    return image if modality == "image" else io.VideoClip([image], [0.0], None)


def _scatter(batch: Batch, idx: list[int], n: int) -> Batch:
    """Place rows of present samples at their indices; missing rows stay zero placeholders."""

    def one(t: torch.Tensor) -> torch.Tensor:
        out = torch.zeros((n, *t.shape[1:]), dtype=t.dtype)
        if idx:
            out[torch.tensor(idx)] = t[: len(idx)]
        return out

    return {k: one(v) for k, v in batch.items()} if isinstance(batch, dict) else one(batch)


@torch.no_grad()
def encode_all(encoder: Encoder, inputs: ModalityInputs, batch_size: int = 256, desc: str = "") -> torch.Tensor:
    """Run ``encoder`` over every present row -> ``Tensor[N, D]`` (missing rows zero)."""
    encoder.eval()
    idx = inputs.present.nonzero().flatten()
    out = torch.zeros(len(inputs.present), encoder.embed_dim)
    for start in tqdm(
        range(0, len(idx), batch_size),
        desc=desc or f"encode {encoder.spec.name}",
        leave=False,
        disable=len(idx) <= batch_size,
    ):
        rows = idx[start : start + batch_size]
        out[rows] = encoder(to_device(inputs.rows(rows), encoder.device)).float().cpu()
    return out


def prepare(
    samples: list[Any],
    modality: str,
    encoder: Encoder,
    cache_dir: Path | None,
    label: str = "",
    limits: Limits | None = None,
) -> ModalityInputs:
    """Inputs for ``modality`` over ``samples``: cached features if the encoder is frozen, else cached
    preprocessed inputs. ``cache_dir`` None disables the disk cache. Inputs are decoded as the predictor
    decodes them, under ``limits`` (default: :class:`~ume_mma.decode.Limits`): a sample over a cap raises
    ``DecodeError`` naming its file."""
    decoder = Decoder.for_encoders({modality: encoder}, limits)
    from safetensors.torch import load_file, save_file

    frozen = encoder.spec.frozen
    kind = "features" if frozen else "inputs"
    path = None
    if cache_dir is not None:
        key = _cache_key(samples, modality, encoder.spec, kind, decoder)
        path = Path(cache_dir) / f"{modality}-{encoder.spec.name}-{kind}-{key}.safetensors"
        if path.is_file():
            data = load_file(path)
            present = data.pop("__present__").bool()
            batch: Batch = data["__tensor__"] if "__tensor__" in data else data
            return ModalityInputs(batch, present, frozen)
    batch, present = _preprocess_all(samples, modality, encoder, f"decode {modality} {label}", frozen, decoder)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = dict(batch) if isinstance(batch, dict) else {"__tensor__": batch}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # a kill mid-write leaves no corrupt cache
        save_file({**{k: v.contiguous() for k, v in tensors.items()}, "__present__": present.to(torch.uint8)}, tmp)
        os.replace(tmp, path)
    return ModalityInputs(batch, present, frozen)
