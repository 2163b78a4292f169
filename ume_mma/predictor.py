"""Predictor: files -> per-branch and fused predictions, shared by the app, the CLI and scripts.

Inputs are decoded by :mod:`ume_mma.decode` (the path training uses, with the same limits). Encoder outputs
are cached by content hash (bounded LRU), so asking again with fewer modalities re-runs no encoder: only
heads and fusion, which cost microseconds. ``predict_many`` serves several requests with one encoder call
per modality (what a server batching concurrent requests wants).

Memory is bounded in bytes whatever users send: video frames are scaled down while decoding to what the image
encoder needs, and both caches (encoder outputs, sampled frames) forget their oldest entries past a byte budget.
After a call that ran an encoder, the memory its activations and decoded inputs held goes back to the OS
(:func:`ume_mma.memory.release_free_memory`) once more than :data:`TRIM_FREE_MB` of the C heap is free, so a
server's resident memory does not stay at its peak.
Scores are never NaN: a branch whose features are not finite is left out (``sources`` says why), and scores
that are not finite are an ``InputError``. ``sources`` also says why an input that was given is not used (a
text given to a checkpoint without a text branch).
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ume_mma.cache import ByteLRU, nbytes
from ume_mma.decode import Decoder, Limits, check_file
from ume_mma.device import resolve_device
from ume_mma.encoders.base import to_device
from ume_mma.errors import InputError, UmeMmaError
from ume_mma.memory import release_free_memory
from ume_mma.models import MultiModalModel
from ume_mma.prediction import BranchResult, Prediction, calibrated_result, fused_result, modality_list

__all__ = ["BranchResult", "Limits", "Prediction", "Predictor", "file_hash", "modality_list", "nbytes"]

INPUT_KEYS = ("video", "audio", "image", "text")
TRIM_FREE_MB = 16  # free heap memory kept for reuse after an encoder call; more goes back to the OS
CACHE_MB = 64  # default byte bound of the encoder-output cache and of the sampled-frames cache (each)
_MISS = object()  # a cache miss (a cached None means "the input has nothing for this modality")
Route = tuple[str, Any, str]  # (source kind, path or text, description)


def all_finite(t: torch.Tensor) -> bool:
    """Whether every value of ``t`` is finite (numpy for a CPU tensor: one call, not torch's composite check)."""
    if t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64):
        return bool(np.isfinite(t.detach().numpy()).all())
    return bool(torch.isfinite(t).all())


def file_hash(path: str | Path) -> str:
    """The SHA-256 of the file's bytes, in hex (read in chunks by ``hashlib.file_digest``)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@dataclass
class _Job:
    """One request of a predict call: its routes, the cache key of each, its features so far, or its error."""

    routes: dict[str, Route] = field(default_factory=dict)
    keys: dict[str, tuple] = field(default_factory=dict)
    feats: dict[str, torch.Tensor | None] = field(default_factory=dict)  # modality -> Tensor[D] on the device
    notes: dict[str, str] = field(default_factory=dict)  # input given but unusable -> why (for ``sources``)
    error: UmeMmaError | None = None


class Predictor:
    """Loads a checkpoint once; ``predict`` maps inputs (``video``/``audio``/``image`` paths, ``text``)
    to fused and per-branch predictions. Not tied to any UI. ``device``: ``auto`` | ``cpu`` | ``cuda[:N]``.

    Memory is bounded in bytes: encoder outputs are cached up to ``cache_mb`` (and at most ``cache_size``
    entries), sampled video frames up to ``frames_mb``; frames are scaled down while decoding to what the
    image encoder needs (:func:`ume_mma.decode.frame_side`) before they are cached."""

    def __init__(
        self,
        model: MultiModalModel,
        name: str = "",
        cache_size: int | None = 256,
        num_frames: int = 8,
        limits: Limits | None = None,
        device: str | torch.device = "auto",
        cache_mb: float = CACHE_MB,
        frames_mb: float = CACHE_MB,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self.name = name or model.config.task
        self.limits = limits or Limits()
        self.decoder = Decoder.for_encoders(dict(model.encoders), self.limits, num_frames)
        # (modality, encoder name, source kind, content hash, frames per video) -> Tensor[D] on the device, or
        # None when the input has nothing for the modality (a silent video's soundtrack)
        self.cache = ByteLRU(int(cache_mb * 2**20), cache_size)
        self.frames = ByteLRU(int(frames_mb * 2**20))  # video content hash -> its sampled (scaled-down) frames
        # the same keys -> that input's reliability (Tensor[1]; None: the branch has no statistics), or for a model
        # with a correctness estimate its (reliability, estimate) pair, so a repeat with cached features (another
        # subset of modalities) does not score them again
        self.reliabilities = ByteLRU(2**20, cache_size)
        self.stats = {"encoder_calls": 0, "encoder_batches": 0, "cache_hits": 0}
        self.folder: Path | None = None  # the checkpoint folder, when loaded from one
        self._lock = threading.RLock()  # predict() is safe to call from several threads

    @classmethod
    def from_pretrained(cls, ref: str | Path, **kwargs: Any) -> Predictor:
        """A predictor of the checkpoint ``ref`` (folder or Hub id); ``kwargs`` as for ``__init__`` (``device``...)."""
        from ume_mma import hub
        from ume_mma.checkpoint import from_pretrained

        folder = hub.resolve(ref)
        kwargs.setdefault("name", str(ref))
        predictor = cls(from_pretrained(folder), **kwargs)
        predictor.folder = folder
        return predictor

    @property
    def num_frames(self) -> int:
        return self.decoder.num_frames

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
            self.reliabilities.clear()

    @property
    def modalities(self) -> list[str]:
        return self.model.modalities

    @property
    def labels(self) -> list[str]:
        return self.model.labels

    def resolve(self, inputs: Mapping[str, Any], enabled: str | Iterable[str] | None = None) -> dict[str, Route]:
        """Which input feeds each enabled branch: modality -> (kind, path or text, description). ``enabled``: as
        for :func:`modality_list` (None = all; ``"image"`` is one name)."""
        unknown = sorted(set(inputs) - set(INPUT_KEYS))
        if unknown:
            raise InputError(f"unknown inputs {unknown}; give any of {list(INPUT_KEYS)}")
        enabled = modality_list(enabled)
        enabled = list(self.modalities) if enabled is None else enabled
        bad = sorted(set(enabled) - set(self.modalities))
        if bad:
            raise InputError(f"modalities {bad} are not used by this model; it uses {self.modalities}")
        video = inputs.get("video") or None
        routes: dict[str, Route] = {}
        for m in enabled:
            own = inputs.get(m)
            if m == "text":
                if isinstance(own, str) and own.strip():
                    routes[m] = ("text", own, "text")
            elif own:
                routes[m] = (m, check_file(own, self.limits), f"{m} file {Path(own).name}")
            elif video and m == "image":
                desc = f"{self.num_frames} frames sampled from video {Path(video).name}"
                routes[m] = ("frames", check_file(video, self.limits), desc)
            elif video and m == "audio":
                routes[m] = ("soundtrack", check_file(video, self.limits), f"soundtrack of video {Path(video).name}")
        return routes

    def predict(
        self,
        inputs: Mapping[str, Any],
        modalities: str | Iterable[str] | None = None,
        top_k: int | None = None,
        subsets: bool = False,
    ) -> Prediction:
        """Predict from ``inputs`` (keys ``video``, ``audio``, ``image``: paths or None; ``text``: str,
        empty = absent) using only ``modalities`` (default: all of the model's; a string is one name or
        comma-separated names, see :func:`modality_list`). ``subsets``: also fuse
        every non-empty subset of the modalities used (``Prediction.subsets``; one batched fusion call).
        Raises ``UmeMmaError`` subclasses (``InputError``, ``DecodeError``) for bad inputs."""
        out = self.predict_many([inputs], modalities, top_k, subsets)[0]
        if isinstance(out, UmeMmaError):
            raise out
        return out

    def predict_many(
        self,
        requests: Sequence[Mapping[str, Any]],
        modalities: str | Iterable[str] | None = None,
        top_k: int | None = None,
        subsets: bool = False,
        *,
        modalities_each: Sequence[str | Iterable[str] | None] | None = None,
    ) -> list[Prediction | UmeMmaError]:
        """``predict`` for several requests at once, with one encoder call per modality for all the inputs
        not in the cache. One bad request fails alone: its slot holds the ``UmeMmaError`` it raised (returned,
        not raised) and the others get their ``Prediction``; other exceptions are bugs and propagate. Results
        equal sequential ``predict`` calls (up to float rounding of batched encoder arithmetic, e.g. padded text).
        For a server batching concurrent requests (gradio ``batch=True``), whose requests may each enable
        other modalities: ``modalities_each`` gives one list (or None = all) per request, instead of ``modalities``."""
        if modalities_each is None:  # one list for all (an iterator is consumed once)
            shared = modalities if modalities is None or isinstance(modalities, str) else list(modalities)
            modalities_each = [shared] * len(requests)
        elif len(modalities_each) != len(requests):
            raise ValueError(f"modalities_each has {len(modalities_each)} entries for {len(requests)} requests")
        with self._lock, torch.no_grad():
            batches = self.stats["encoder_batches"]
            digests: dict[Any, str] = {}  # each file is hashed once per call
            jobs = [self._plan(r, m, digests) for r, m in zip(requests, modalities_each)]
            clips: dict[Path, Any] = {}  # each video is decoded once per call
            # every input is decoded before any encoder runs: a file that cannot be decoded fails its request
            # before an encoder spends time on its other inputs, and the decoding runs while the caches are warm
            # (a large encoder evicts them: what runs after it costs several times more)
            decoded = {m: self._decode(m, jobs, clips) for m in sorted({m for job in jobs for m in job.routes})}
            for m, (pending, raws) in decoded.items():
                self._fill(m, pending, raws)
            out = [job.error or self._finish(job, top_k, subsets) for job in jobs]
            encoded = self.stats["encoder_batches"] > batches
            del jobs, clips
        if encoded:  # the encoders' activations and decoded inputs are free now: give them back when large
            release_free_memory(TRIM_FREE_MB * 2**20)
        return out

    def _plan(self, inputs: Mapping[str, Any], modalities: str | Iterable[str] | None, digests: dict) -> _Job:
        """Routes and cache keys of one request, or a job holding the error that made it invalid."""
        try:
            routes = self.resolve(inputs, modalities)
            notes = self.unused(inputs, routes, modalities)
            if not routes:
                raise self._no_input(notes)
            keys = {}
            for m, (kind, value, _) in routes.items():
                if value not in digests:
                    digests[value] = hashlib.sha256(value.encode()).hexdigest() if kind == "text" else file_hash(value)
                name = self.model.config.encoders[m]["name"]
                keys[m] = (m, name, kind, digests[value], self.num_frames)
        except UmeMmaError as e:
            return _Job(error=e)
        return _Job(routes=routes, keys=keys, notes=notes)

    def _decode(
        self, modality: str, jobs: list[_Job], clips: dict[Path, Any]
    ) -> tuple[dict[tuple, list[_Job]], dict[tuple, list[Any]]]:
        """Set ``job.feats[modality]`` for every valid job whose input is in the cache, and decode each distinct
        input that is not: (cache key -> the jobs waiting for it, cache key -> its raws). A decode error is recorded
        on the jobs of that input."""
        pending: dict[tuple, list[_Job]] = {}
        for job in jobs:
            if job.error is None and modality in job.routes:
                hit = self.cache.get(job.keys[modality], _MISS)
                if hit is _MISS:
                    pending.setdefault(job.keys[modality], []).append(job)
                else:
                    self.stats["cache_hits"] += 1
                    job.feats[modality] = hit
        decoded: dict[tuple, list[Any]] = {}
        for key, waiting in pending.items():
            kind, value, _ = waiting[0].routes[modality]
            try:
                raws = self.decoder(kind, value, clips)
            except UmeMmaError as e:
                for job in waiting:
                    job.error = e
                continue
            if kind in ("frames", "soundtrack", "video"):
                self.frames.put(key[3], clips[value].frames)
            if raws is None:
                self._store(key, None, waiting)
            else:
                decoded[key] = raws
        return pending, decoded

    def _fill(self, modality: str, pending: dict[tuple, list[_Job]], decoded: dict[tuple, list[Any]]) -> None:
        """Encode the ``decoded`` inputs of ``modality`` in one batch and set ``job.feats[modality]`` of the jobs
        waiting for each (``pending``). Inputs whose jobs all failed meanwhile (another input could not be decoded)
        are not encoded; an encoder error is recorded on the jobs of that input."""
        decoded = {k: raws for k, raws in decoded.items() if any(job.error is None for job in pending[k])}
        for key, feats in self._encode(modality, decoded).items():
            if isinstance(feats, UmeMmaError):
                for job in pending[key]:
                    job.error = feats
            else:
                self._store(key, feats, pending[key])

    def _store(self, key: tuple, feats: torch.Tensor | None, jobs: list[_Job]) -> None:
        self.cache.put(key, feats)
        for job in jobs:
            job.feats[key[0]] = feats

    def _encode(self, modality: str, decoded: dict[tuple, list[Any]]) -> dict[tuple, torch.Tensor | UmeMmaError]:
        """Encoder outputs ``Tensor[D]`` of several inputs (key -> K raws; their K outputs are averaged: temporal
        pooling) in one encoder call; if that call fails, input by input, so an error lands on its own input."""
        if len(decoded) > 1:
            try:
                return dict(zip(decoded, self._encode_batch(modality, list(decoded.values()))))
            except Exception:  # noqa: BLE001 - retried input by input below, where the error is attributed
                pass
        out: dict[tuple, torch.Tensor | UmeMmaError] = {}
        for key, raws in decoded.items():
            try:
                out[key] = self._encode_batch(modality, [raws])[0]
            except UmeMmaError as e:
                out[key] = e
        return out

    def _encode_batch(self, modality: str, raws: list[list[Any]]) -> list[torch.Tensor]:
        """One encoder call over B inputs of K_i raws each -> B tensors ``Tensor[D]`` on the predictor's device.
        The preprocessed batch goes to the device the encoder reports (the predictor's, once the model moved)."""
        enc = self.model.encoders[modality]
        flat = [r for rs in raws for r in rs]
        out = enc(to_device(enc.preprocess(flat), enc.device)).float().to(self.device)  # (sum K_i, D)
        self.stats["encoder_calls"] += len(raws)
        self.stats["encoder_batches"] += 1
        if len(flat) == 1:  # one input of one raw: its row (the mean of one row, bitwise), no split or mean
            return [out[0]]
        return [chunk.mean(dim=0) for chunk in out.split([len(rs) for rs in raws])]  # (K_i, D) -> (D,)

    def shown_frames(self, inputs: Mapping[str, Any]) -> tuple[Path | None, list[Any]]:
        """The video whose sampled frames feed a branch for ``inputs`` (as :meth:`resolve` routes them: none when an
        image file replaces them) and those frames (``PIL.Image``, at most the decoder's frame side), from the
        cache of sampled frames when this video was predicted on, else decoded now (no encoder runs);
        ``(None, [])`` without such a video."""
        routes = self.resolve(inputs)
        video = next((value for kind, value, _ in routes.values() if kind in ("frames", "video")), None)
        if video is None:
            return None, []
        with self._lock:
            digest = file_hash(video)
            frames = self.frames.get(digest)
            if frames is None:
                frames = self.decoder.clip(video).frames
                self.frames.put(digest, frames)
        return video, list(frames)

    def unused(
        self, inputs: Mapping[str, Any], routes: Mapping[str, Route], enabled: str | Iterable[str] | None = None
    ) -> dict[str, str]:
        """Why inputs that were given feed no branch, for ``sources`` (keys only for inputs given): a modality
        this checkpoint has no branch for (``"text": "not used: this checkpoint has no text branch"``), or a
        video whose frames and soundtrack are both replaced by files given. Inputs of modalities switched off
        in ``enabled`` get no note (the caller chose that)."""
        notes = {}
        for m in ("audio", "image", "text"):
            own = inputs.get(m)
            if (own.strip() if isinstance(own, str) else own) and m not in self.modalities:
                notes[m] = f"not used: this checkpoint has no {m} branch"
        video, wanted = inputs.get("video"), modality_list(enabled)
        if (
            video
            and wanted is None
            and not any(kind in ("frames", "soundtrack", "video") for kind, _, _ in routes.values())
        ):
            fed = [m for m in ("image", "audio") if m in self.modalities]
            what = " and ".join({"image": "frames", "audio": "soundtrack"}[m] for m in fed)
            notes["video"] = (
                f"not used: the {' and '.join(fed)} file{'s' if len(fed) > 1 else ''} given "
                f"replace{'' if len(fed) > 1 else 's'} its {what}"
                if fed
                else "not used: this checkpoint has no image, audio or video branch"
            )
        return notes

    def takes(self) -> str:
        """What this checkpoint takes, in words: ``an audio file, an image or a video (for its frames and
        soundtrack)``."""
        words = {"audio": "an audio file", "image": "an image", "text": "a text", "video": "a video"}
        parts = [words[m] for m in self.modalities]
        via = [what for m, what in (("image", "frames"), ("audio", "soundtrack")) if m in self.modalities]
        if via and "video" not in self.modalities:
            parts.append(f"a video (for its {' and '.join(via)})")
        return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} or {parts[-1]}"

    def _no_input(self, notes: Mapping[str, str] | None = None) -> InputError:
        """The error of a request with nothing this checkpoint can use, saying what was wrong and what it takes."""
        cannot = sorted(m for m, note in (notes or {}).items() if "this checkpoint has no" in note)
        head = f"this checkpoint has no {' or '.join(cannot)} branch" if cannot else "no input for any enabled modality"
        why = "; ".join(f"{m}: {n}" for m, n in (notes or {}).items() if m not in cannot)
        return InputError(f"{head}{f' ({why})' if why else ''}; it takes {self.takes()}")

    def _finish(self, job: _Job, top_k: int | None, subsets: bool) -> Prediction | UmeMmaError:
        """Heads and fusion over one job's features -> its Prediction. A branch whose features are not finite
        is left out (``sources`` says why); scores that are not finite are an InputError, never a null
        confidence."""
        feats, sources, frames = {}, dict(job.notes), []
        for m, (kind, value, desc) in sorted(job.routes.items()):
            f = job.feats[m]
            if f is None:
                sources[m] = f"no input: video {Path(value).name} has no soundtrack"
            elif not all_finite(f):
                sources[m] = f"not used: the {m} encoder gave NaN or infinite values for the {desc}"
            else:
                feats[m], sources[m] = f.unsqueeze(0), desc  # (1, D)
                if kind in ("frames", "video"):
                    frames = self.frames.get(job.keys[m][3]) or []
        if not feats:
            return self._no_input(sources)
        one = torch.ones(1, dtype=torch.bool, device=self.device)  # read only: one mask serves every branch
        present = dict.fromkeys(feats, one)
        # a model with a correctness estimate scores reliability and estimate from one pass of the checks, once
        # per input: a repeat whose branches were all scored before reuses both (no checks, no signals)
        correctness = None
        if self.model.correctness is None:
            reliability = self._reliability(job, feats)
        else:
            reliability, correctness = self._scored(job, feats)
        out = self.model.forward_features(feats, present, reliability, correctness)
        if self.model.correctness is not None and correctness is None:
            self._keep_scores(job, feats, out.reliability or {}, out.correctness or {})
        labels, rel, w, est = self.labels, out.reliability or {}, out.weights or {}, out.correctness or {}
        try:
            branches = {
                m: calibrated_result(
                    out.branches[m][0],
                    labels,
                    top_k,
                    self.model.temperature(m),
                    float(rel[m]) if m in rel else None,  # Tensor[1] each: read out without indexing
                    float(w[m]) if m in w else None,
                    float(est[m]) if m in est else None,
                )
                for m in sorted(feats)
            }
            unsure = bool(out.uncertain) if out.uncertain is not None else None
            weights = {m: float(v) for m, v in w.items() if m in feats} if out.weights is not None else None
            return Prediction(
                checkpoint=self.name,
                fusion=self.model.config.fusion,
                modalities_used=sorted(feats),
                fused=fused_result(out.fused_probs()[0], labels, top_k, unsure, weights),
                branches=branches,
                sources=sources,
                frames=frames,
                subsets=self._subsets(feats, top_k, out.reliability, out.correctness) if subsets else {},
            )
        except InputError as e:
            return e

    def _reliability(self, job: _Job, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        """Each branch's reliability (modality -> ``Tensor[1]``) for ``feats`` (``Tensor[1, D]`` each), from
        :attr:`reliabilities` when this input was scored before; None for a model without statistics."""
        if self.model.reliability is None:
            return None
        keys = {m: job.keys.get(m) for m in feats}
        known = {m: self.reliabilities.get(k, _MISS) if k is not None else _MISS for m, k in keys.items()}
        todo = {m: f for m, f in feats.items() if known[m] is _MISS}
        if todo:  # the branches not scored before, in one call
            scored = self.model.reliability(todo)
            for m in todo:
                known[m] = scored.get(m)  # absent: the branch has no statistics
                if keys[m] is not None:
                    self.reliabilities.put(keys[m], known[m])
        return {m: r for m, r in known.items() if r is not None}

    def _scored(
        self, job: _Job, feats: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor] | None, dict[str, torch.Tensor] | None]:
        """For a model with a correctness estimate: each branch's reliability and estimate (modality -> ``Tensor[1]``,
        only the branches that have them) from :attr:`reliabilities` when every branch of ``feats`` was scored
        before; ``(None, None)`` otherwise (``forward_features`` then scores them all from one pass of the checks)."""
        known = [self.reliabilities.get(job.keys[m], _MISS) if m in job.keys else _MISS for m in feats]
        if any(k is _MISS for k in known):
            return None, None
        rel = {m: r for m, (r, _) in zip(feats, known) if r is not None}
        est = {m: c for m, (_, c) in zip(feats, known) if c is not None}
        return rel, est

    def _keep_scores(
        self,
        job: _Job,
        feats: dict[str, torch.Tensor],
        reliability: dict[str, torch.Tensor],
        correctness: dict[str, torch.Tensor],
    ) -> None:
        """Cache each branch's (reliability, estimate) of ``feats`` under its input's key (None where it has none)."""
        for m in feats:
            if m in job.keys:
                self.reliabilities.put(job.keys[m], (reliability.get(m), correctness.get(m)))

    def _subsets(
        self,
        feats: dict[str, torch.Tensor],
        top_k: int | None,
        reliability: dict[str, torch.Tensor] | None = None,
        correctness: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, BranchResult]:
        """Fused result of every non-empty subset of ``feats`` (modality -> ``Tensor[1, D]``), as one batch
        of S = 2^M - 1 rows whose presence masks differ (``reliability`` and ``correctness``: the branches'
        scores and estimates, ``Tensor[1]`` each), each with its ``uncertain`` flag and weights where given."""
        mods = sorted(feats)
        combos = [c for r in range(1, len(mods) + 1) for c in itertools.combinations(mods, r)]  # S subsets
        batch = {m: feats[m].expand(len(combos), -1) for m in mods}  # (S, D) each
        present = {m: torch.tensor([m in c for c in combos], device=self.device) for m in mods}  # (S,) each
        rel = {m: r.expand(len(combos)) for m, r in reliability.items()} if reliability is not None else None
        est = {m: c.expand(len(combos)) for m, c in correctness.items()} if correctness is not None else None
        out = self.model.forward_features(batch, present, rel, est)
        probs = out.fused_probs()  # (S, C)
        results = {}
        for i, c in enumerate(combos):
            unsure = bool(out.uncertain[i]) if out.uncertain is not None else None
            w = {m: float(out.weights[m][i]) for m in c} if out.weights is not None else None
            results["+".join(c)] = fused_result(probs[i], self.labels, top_k, unsure, w)
        return results
