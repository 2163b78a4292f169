"""Uni-modal models, the UME ensemble and MMA late fusion: one class, a registered fusion mode.

Every model exchanges ``dict[str, Tensor]`` keyed by modality plus an explicit presence mask
``dict[str, BoolTensor[B]]``. A missing modality is never a silent zero tensor: how it is filled
(``drop`` its term, ``zero`` feature, learned missing ``token``) is chosen in the config and recorded.
Fusion modes live in :mod:`ume_mma.fusion` (``ume``, ``mma``, ``naive``, and any registered later).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ume_mma.correctness import Correctness, branch_signals
from ume_mma.correctness import check_config as check_correctness
from ume_mma.correctness import uncertain as estimate_uncertain
from ume_mma.encoders.base import Batch, batch_size
from ume_mma.errors import InputError
from ume_mma.factory import create_encoder
from ume_mma.fusion import FILLS, FusionInputs, get_fusion
from ume_mma.labelhistory import check_history
from ume_mma.registry import EncoderSpec, strict_from_dict
from ume_mma.reliability import Reliability, check_config

FORMAT_VERSION = 4  # the newest checkpoint format this library reads (2: ``reliability``, 3: ``correctness``,
# 4: ``label_history``)


@dataclass
class ModelConfig:
    """What a checkpoint's ``config.json`` holds.

    ``fusion``: a registered fusion mode (:func:`ume_mma.fusion.list_fusions`): ``ume`` averages the class
    probabilities of the present branches (weights ``ume_weights``); ``mma`` and ``naive`` sum the branch
    logits (late fusion), ``mma`` being trained with modality dropout from uni-modal initialisation and
    ``naive`` jointly without it.
    ``fill``: how late fusion treats a missing modality (``drop`` its logit term, feed a ``zero``
    feature, or a learned ``token`` feature). Modes that do not use it (UME) always drop missing branches.
    ``reliability``: per-branch temperatures, reliability thresholds and (for ``fusion="reliability"``) the base
    mode and ``alpha`` (:mod:`ume_mma.reliability`); None in checkpoints fitted without them. A config with it
    is written as format version 2 (older libraries refuse it with a clear message); one without it stays 1.
    ``correctness``: the per-branch estimate of P(the branch is right) (:mod:`ume_mma.correctness`; needs the
    ``reliability`` fields of each branch it covers); a config with it is format version 3, None otherwise.
    ``label_history``: where the labels came from when a fine-tune grew the label set
    (:mod:`ume_mma.labelgrow`): ``[{"source": ..., "labels": [...]}, ...]`` in label order, the first entry the
    labels of the original checkpoint; a config with it is format version 4, None (omitted) otherwise.
    """

    task: str
    labels: list[str]
    encoders: dict[str, dict[str, Any]]  # modality -> EncoderSpec.to_dict()
    fusion: str = "ume"
    fill: str = "drop"
    ume_weights: dict[str, float] | None = None
    training: dict[str, Any] = field(default_factory=dict)
    reliability: dict[str, Any] | None = None
    correctness: dict[str, Any] | None = None
    label_history: list[dict[str, Any]] | None = None
    format_version: int = 1

    def __post_init__(self) -> None:
        mode = get_fusion(self.fusion)  # unknown modes raise, listing the registered ones
        if self.fill not in FILLS:
            raise ValueError(f"fill must be one of {FILLS}, got {self.fill!r}")
        if not self.encoders:
            raise ValueError("a model needs at least one modality encoder")
        if len(set(self.labels)) != len(self.labels) or len(self.labels) < 2:
            raise ValueError("labels must be at least two distinct strings")
        if self.reliability is not None:
            check_config(self.reliability, self.modalities)
            self.format_version = max(self.format_version, 2)
        if self.correctness is not None:
            reliable = sorted((self.reliability or {}).get("branches", {}))
            check_correctness(self.correctness, self.modalities, reliable)
            self.format_version = max(self.format_version, 3)
        if self.label_history is not None:
            check_history(self.label_history, self.labels)
            self.format_version = max(self.format_version, 4)
        mode.check_config(self)

    @property
    def modalities(self) -> list[str]:
        return sorted(self.encoders)

    def spec(self, modality: str) -> EncoderSpec:
        return EncoderSpec.from_dict(self.encoders[modality])

    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` fields; ``reliability`` and ``correctness`` only when set (configs without them
        read as before)."""
        data = dataclasses.asdict(self)
        for key in ("reliability", "correctness", "label_history"):
            if data[key] is None:
                del data[key]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return strict_from_dict(cls, data, "model config")


@dataclass
class ModelOutput:
    """``fused``: ``Tensor[B, C]`` log-probabilities-like scores (argmax = prediction);
    ``branches``: modality -> ``Tensor[B, C]`` logits of that uni-modal branch (rows of missing
    samples are meaningless: read them through ``present``); ``present``: the mask used;
    ``reliability``: modality -> ``Tensor[B]`` in [0, 1] for the branches with reliability statistics and
    features (None when the model has none; rows of missing samples are meaningless); ``weights``: modality ->
    ``Tensor[B]``, the weight the fusion mode gave each branch (None for modes that weigh none);
    ``correctness``: modality -> ``Tensor[B]``, the estimated probability that the branch is right (None when
    the model has no estimate); ``uncertain``: ``BoolTensor[B]``, rows where no present branch is estimated
    more likely right than the model's abstain threshold (None without an estimate)."""

    fused: torch.Tensor
    branches: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]
    reliability: dict[str, torch.Tensor] | None = None
    weights: dict[str, torch.Tensor] | None = None
    correctness: dict[str, torch.Tensor] | None = None
    uncertain: torch.Tensor | None = None

    def fused_probs(self) -> torch.Tensor:
        return self.fused.softmax(dim=-1)  # (B, C)


class MultiModalModel(nn.Module):
    """Per-modality encoder + linear head, combined by the configured fusion mode (``self.fusion``)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoders = nn.ModuleDict({m: create_encoder(config.spec(m)) for m in config.modalities})
        n = len(config.labels)
        self.heads = nn.ModuleDict({m: nn.Linear(self.encoders[m].embed_dim, n) for m in config.modalities})
        self._init_fusion(config)

    def _init_fusion(self, config: ModelConfig, tokens: nn.ParameterDict | None = None) -> None:
        """The fusion mode, the missing tokens it needs (``tokens``' where given, else zeros) and the reliability
        statistics (``self.reliability``, None when the config has none: old checkpoints store no such tensors)."""
        self.fusion = get_fusion(config.fusion)(config)
        self.missing_tokens = nn.ParameterDict()
        if config.fill == "token" and self.fusion.uses_fill:
            for m in config.modalities:
                given = tokens[m] if tokens is not None and m in tokens else None
                self.missing_tokens[m] = (
                    given if given is not None else nn.Parameter(torch.zeros(self.encoders[m].embed_dim))
                )
        self.reliability = Reliability(config) if config.reliability is not None else None
        self.correctness = Correctness(config.correctness) if config.correctness is not None else None

    def derive(self, config: ModelConfig, heads: nn.ModuleDict | None = None) -> MultiModalModel:
        """A model with ``config`` (another fusion mode or fill, reliability fields) sharing this model's encoders,
        heads and the missing tokens it needs (new ones start at zero); ``config`` must have the same labels and
        encoders. Its reliability statistics (if any) start empty: load them (:func:`ume_mma.calibrate.attach`).
        ``heads`` (modality -> ``Linear(D_m, len(config.labels))``) replace the heads: then the labels may differ
        (a grown label set, :mod:`ume_mma.labelgrow`)."""
        if config.encoders != self.config.encoders or (heads is None and config.labels != self.labels):
            raise ValueError("a derived model keeps the labels and encoders of its model")
        if heads is not None and any(heads[m].out_features != len(config.labels) for m in config.modalities):
            raise ValueError(f"derived heads need {len(config.labels)} outputs, one per label")
        new = MultiModalModel.__new__(MultiModalModel)
        nn.Module.__init__(new)
        new.config = config
        new.encoders, new.heads = self.encoders, self.heads if heads is None else heads
        new._init_fusion(config, self.missing_tokens)
        if type(new.fusion) is type(self.fusion):
            new.fusion.load_state_dict(self.fusion.state_dict())
        return new.to(self.heads[self.modalities[0]].weight.device).train(self.training)

    def temperature(self, modality: str) -> float | None:
        """The branch's calibration temperature, or None when the checkpoint has none."""
        return self.reliability.temperature(modality) if self.reliability is not None else None

    @property
    def modalities(self) -> list[str]:
        return self.config.modalities

    @property
    def labels(self) -> list[str]:
        return self.config.labels

    def encode(self, inputs: dict[str, Batch]) -> dict[str, torch.Tensor]:
        """Encoder outputs: modality -> ``Tensor[B, D_m]`` for each key of ``inputs``."""
        return {m: self.encoders[m](inputs[m]) for m in sorted(inputs) if m in self.encoders}

    def forward(
        self,
        inputs: dict[str, Batch],
        present: dict[str, torch.Tensor] | None = None,
        features: dict[str, torch.Tensor] | None = None,
    ) -> ModelOutput:
        """``inputs``: modality -> preprocessed batch (absent key = missing for every sample);
        ``features``: modality -> precomputed ``Tensor[B, D]`` (e.g. cached outputs of frozen encoders);
        ``present``: modality -> ``BoolTensor[B]`` (default: every given modality present)."""
        feats = {**(features or {}), **self.encode(inputs)}
        if present is None:
            b = batch_size(next(iter({**inputs, **feats}.values())))
            present = {m: torch.ones(b, dtype=torch.bool) for m in feats}
        return self.forward_features(feats, present)

    def forward_features(
        self,
        feats: dict[str, torch.Tensor],
        present: dict[str, torch.Tensor],
        reliability: dict[str, torch.Tensor] | None = None,
        correctness: dict[str, torch.Tensor] | None = None,
    ) -> ModelOutput:
        """Heads + fusion from encoder outputs (used directly when features are cached).

        ``feats``: modality -> ``Tensor[B, D_m]`` (may omit modalities missing in every sample);
        ``present``: modality -> ``BoolTensor[B]``; a modality absent from it counts as missing.
        ``reliability``: ``self.reliability(feats)`` computed earlier for these features (a caller that caches
        it, modality -> ``Tensor[B]``); computed here when None. ``correctness`` likewise, for a model with a
        correctness estimate (:mod:`ume_mma.correctness`).
        """
        b = self._batch_size(feats, present)
        device = self.heads[self.modalities[0]].weight.device
        mask = {m: _mask(present, m, b, device) for m in self.modalities}
        for m in self.modalities:
            if m in present and m not in feats and bool(mask[m].any()):
                raise InputError(f"modality {m!r} is marked present but has no features")
        if not _every_row_present(mask):
            raise InputError("every sample needs at least one present modality")
        branches = {m: self.heads[m](feats[m]) for m in self.modalities if m in feats}  # (B, C) each
        checks = None  # both reliability checks, computed once for the reliability and the estimate
        if self.correctness is not None and correctness is None:
            checks = self.reliability.checks(feats)
        if self.reliability is None:
            reliability = None  # a model without statistics reports none, whatever was passed
        elif reliability is None:
            reliability = self.reliability.from_checks(checks, feats) if checks else self.reliability(feats)
        uncertain = None
        if self.correctness is not None:
            if correctness is None:
                correctness = self.correctness(branch_signals(self, feats, branches, checks))  # (B,) each
            correctness = {m: c.to(device) for m, c in correctness.items()}
            uncertain = estimate_uncertain(correctness, mask, self.correctness.abstain)
        else:
            correctness = None
        inputs = FusionInputs(
            branches=branches,
            feats={m: feats[m] for m in self.modalities if m in feats},
            present=mask,
            heads=self.heads,
            missing_tokens=self.missing_tokens,
            fill=self.config.fill,
            num_classes=len(self.labels),
            reliability=reliability,
            correctness=correctness,
        )
        fused = self.fusion(inputs)  # (B, C)
        weights = self.fusion.branch_weights(inputs)
        return ModelOutput(fused, branches, mask, reliability, weights, correctness, uncertain)

    @staticmethod
    def _batch_size(feats: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> int:
        sizes = {len(v) for v in feats.values()} | {len(v) for v in present.values()}
        if len(sizes) != 1:
            raise InputError(f"features and masks disagree on the batch size: {sorted(sizes)}")
        return sizes.pop()

    def persistent_state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters a checkpoint stores: everything except frozen pretrained encoders, whose weights
        are loaded from their own source (``EncoderSpec.pretrained``) by ``load_encoder_weights``."""
        skip = tuple(f"encoders.{m}." for m in self.modalities if _external(self.config.spec(m)))
        return {k: v for k, v in self.state_dict().items() if not k.startswith(skip)}

    def load_encoder_weights(self) -> None:
        """Explicit step: load the pretrained weights of every encoder that has a ``pretrained`` source."""
        for m in self.modalities:
            if self.config.spec(m).pretrained:
                self.encoders[m].load_pretrained()

    def frozen_modalities(self) -> list[str]:
        return [m for m in self.modalities if self.config.spec(m).frozen]

    @classmethod
    def from_unimodal(
        cls,
        models: dict[str, MultiModalModel],
        fusion: str,
        fill: str = "drop",
        task: str | None = None,
        ume_weights: dict[str, float] | None = None,
        training: dict[str, Any] | None = None,
    ) -> MultiModalModel:
        """Build a multi-modal model whose encoders and heads start from trained uni-modal models;
        ``training``: the training config recorded in the new model's config."""
        first = next(iter(models.values())).config
        for m, model in models.items():
            if model.modalities != [m] or model.labels != first.labels:
                raise ValueError(f"model for {m!r} must be uni-modal on {m!r} with labels {first.labels}")
        config = ModelConfig(
            task=task or first.task,
            labels=list(first.labels),
            encoders={m: models[m].config.encoders[m] for m in sorted(models)},
            fusion=fusion,
            fill=fill,
            ume_weights=ume_weights,
            training=dict(training or {}),
            label_history=first.label_history,
        )
        fused = cls(config)
        for m, model in models.items():
            fused.encoders[m].load_state_dict(model.encoders[m].state_dict())
            fused.heads[m].load_state_dict(model.heads[m].state_dict())
        return fused


def _external(spec: EncoderSpec) -> bool:
    return bool(spec.frozen and spec.pretrained)


def _every_row_present(mask: dict[str, torch.Tensor]) -> bool:
    """Whether every row has at least one present modality (``mask``: modality -> ``BoolTensor[B]``); numpy on
    the CPU (one call, not three torch dispatches and a sync)."""
    masks = list(mask.values())
    if all(t.device.type == "cpu" for t in masks):
        return bool(np.logical_or.reduce([t.numpy() for t in masks]).all())
    return bool(torch.stack(masks).any(dim=0).all())


def _mask(present: dict[str, torch.Tensor], m: str, b: int, device: torch.device) -> torch.Tensor:
    if m not in present:
        return torch.zeros(b, dtype=torch.bool, device=device)
    return present[m].to(device=device, dtype=torch.bool)
