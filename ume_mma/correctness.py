"""Per-branch correctness: an estimate of P(this branch's answer is right | this input), on one scale for every
branch, from signals each branch already has.

**Signals** (:func:`branch_signals`, ``Tensor[B, F]`` per branch, F = ``len(FEATURES)``), from the branch's logits
``z`` with its calibration temperature ``T`` and the reliability checks of :mod:`ume_mma.reliability`:

==============  ==============================================================================
``confidence``  ``logit(p1)``, ``p1`` the top probability of ``softmax(z / T)`` (clamped to +-12)
``margin``      ``p1 - p2``, the gap to the second class
``entropy``     entropy of ``softmax(z / T)`` divided by ``log C`` (0..1)
``energy``      ``logsumexp(z / T)``
``distance``    the distance check's ``z`` (0 at its validation 95th percentile; clamped to [-10, 30])
``norm``        the feature-norm check's ``z`` (0 where the branch stores no norm check; clamped likewise)
``trust``       a Trust Score (Jiang et al. 2018) in the branch's feature space: ``log d_other - log d_pred``,
                ``d`` the squared Mahalanobis distance of the reliability statistics to a class mean, ``pred``
                the branch's answer, ``other`` the nearest other class (clamped to +-20)
``p1_distance`` ``p1 * distance``: far from the training data, a confident answer counts for less
``p1_norm``     ``p1 * norm``, likewise
==============  ==============================================================================

**Model** (:class:`Correctness`): per branch, a logistic regression on those signals standardised with the
mean and scale of its fitting rows: ``P(right) = sigmoid(b + sum_k w_k (s_k - mean_k) / scale_k)``. The weights
of ``distance``, ``norm``, ``p1_distance`` and ``p1_norm`` are constrained to be <= 0 (an input farther from the
training data never raises the estimate: ``p1 >= 0``), that of ``trust`` >= 0 (an answer closer to its own class
than to any other never lowers it). A config stores the features it was fitted on: :data:`FEATURES` now, the
first six (:data:`FEATURES_V1`) in checkpoints fitted before the trust and interaction terms, which load and
estimate unchanged. Each branch's estimate is a probability of being right, so the scale is the same for every
encoder, whatever its feature space. Fitted by :mod:`ume_mma.correctness_fit` on in-distribution validation data
plus that data through the *fitting* drift families (:mod:`ume_mma.drift`), never on a held-out family, a test
split or a shifted set.

What a checkpoint stores (``ModelConfig.correctness``, a few numbers per branch; absent in older checkpoints,
which load unchanged; a config with it is format version 3)::

    {"model": "logistic", "features": [...FEATURES], "fitted_on": {...},   # or FEATURES_V1 (older fits)
     "branches": {m: {"mean": [F floats], "scale": [F floats], "weights": [F floats], "bias": float}},
     "base": "mma", "alpha": 2.0, "tau": 0.5,  # read only by fusion="correctness" (ume_mma.fusion.correctness)
     "abstain": 0.5,                   # "uncertain" below this for every present branch (default 0.5)
     "choice": {...}}                  # what ume_mma.drift_choice measured when it chose the fusion

It needs the model's ``reliability`` fields (the temperatures and checks) for every branch it covers.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ume_mma.reliability import BLOCK, EPS, _np64

if TYPE_CHECKING:
    from ume_mma.models import MultiModalModel
    from ume_mma.reliability import BranchStats

FEATURES_V1 = ("confidence", "margin", "entropy", "energy", "distance", "norm")  # fits before the trust terms
FEATURES = (*FEATURES_V1, "trust", "p1_distance", "p1_norm")  # what a fit uses now; signals() computes these
FEATURE_SETS = (FEATURES, FEATURES_V1)  # what a config may name
NON_POSITIVE = ("distance", "norm", "p1_distance", "p1_norm")  # their weights are <= 0
NON_NEGATIVE = ("trust",)  # its weight is >= 0
MODEL = "logistic"
CONF_CLAMP = 12.0
Z_CLAMP = (-10.0, 30.0)
TRUST_CLAMP = 20.0
L2 = 1e-2  # ridge penalty on the standardised weights
ABSTAIN = 0.5  # "uncertain" when every present branch's estimate is below this (``correctness["abstain"]``)


def class_log_distances(stats: BranchStats, x: np.ndarray) -> np.ndarray:
    """``log d^2`` to every class mean, ``[B, C]`` float64, for float64 features ``x`` ``[B, D]``: the squared
    Mahalanobis distances of :meth:`ume_mma.reliability.BranchStats.distance` before its minimum over classes."""
    center, proj_g, const, w, inv_res = stats._fixed()  # see BranchStats._fixed for the expansion
    k = len(w)
    out = np.empty((len(x), len(const)))
    for i in range(0, len(x), BLOCK):
        z = x[i : i + BLOCK] - center  # [b, D]
        y = z @ proj_g  # [b, k + C]: projections on the basis, then z . g_c
        p = y[:, :k]
        own = (p * p) @ w + inv_res * np.einsum("ij,ij->i", z, z)  # [b]
        out[i : i + BLOCK] = np.maximum(own[:, None] + const - 2 * y[:, k:], 0)  # [b, C]
    return np.log(np.maximum(out, EPS))


def trust_score(logits: torch.Tensor, log_d2: np.ndarray) -> np.ndarray:
    """``[B]``: ``log d_other - log d_pred`` from :func:`class_log_distances` ``[B, C]``, ``pred`` the argmax of
    ``logits`` ``[B, C]`` and ``other`` the nearest other class (clamped to +-:data:`TRUST_CLAMP`)."""
    rows = np.arange(len(log_d2))
    pred = logits.detach().cpu().numpy().argmax(-1)
    own = log_d2[rows, pred]
    if log_d2.shape[1] < 2:
        return np.zeros(len(log_d2))
    others = log_d2.copy()
    others[rows, pred] = np.inf
    return np.clip(others.min(1) - own, -TRUST_CLAMP, TRUST_CLAMP)


def signals(
    logits: torch.Tensor,
    temperature: float,
    distance_z: torch.Tensor,
    norm_z: torch.Tensor | None = None,
    trust: np.ndarray | torch.Tensor | None = None,
) -> torch.Tensor:
    """``Tensor[B, F]`` (float64) of :data:`FEATURES` for one branch: ``logits`` ``[B, C]``, the distance check's
    ``z`` ``[B]``, the norm check's ``[B]`` (None: zeros) and the :func:`trust_score` ``[B]`` (None: zeros)."""
    # numpy in float64: a predict scores a batch of one, where torch's per-operation dispatch would dominate
    z = logits.detach().cpu().double().numpy() / temperature  # (B, C)
    lse = np.logaddexp.reduce(z, axis=-1)  # (B,) energy
    p = np.exp(z - lse[:, None])
    top = -np.sort(-p, axis=-1)[:, :2]  # (B, 2)
    p1 = np.clip(top[:, 0], 1e-12, 1 - 1e-12)
    conf = np.clip(np.log(p1) - np.log1p(-p1), -CONF_CLAMP, CONF_CLAMP)
    margin = top[:, 0] - top[:, 1] if top.shape[1] > 1 else top[:, 0]
    entropy = -(p * np.log(np.maximum(p, 1e-12))).sum(-1) / math.log(max(2, p.shape[1]))
    dist = np.clip(distance_z.detach().cpu().double().numpy(), *Z_CLAMP)
    norm = np.zeros_like(dist) if norm_z is None else np.clip(norm_z.detach().cpu().double().numpy(), *Z_CLAMP)
    tr = np.zeros_like(dist) if trust is None else np.asarray(trust, dtype=np.float64)
    p = top[:, 0]
    return torch.from_numpy(np.stack([conf, margin, entropy, lse, dist, norm, tr, p * dist, p * norm], axis=1))


@torch.no_grad()
def branch_signals(
    model: MultiModalModel,
    feats: dict[str, torch.Tensor],
    logits: dict[str, torch.Tensor] | None = None,
    checks: dict[str, tuple[torch.Tensor, torch.Tensor | None]] | None = None,
) -> dict[str, torch.Tensor]:
    """:func:`signals` of every branch of ``model`` that has reliability fields and features in ``feats``
    (modality -> ``Tensor[B, D_m]``): modality -> ``Tensor[B, F]``. ``logits``: the branches' ``Tensor[B, C]``
    and ``checks``: ``model.reliability.checks(feats)``, when the caller has them already."""
    if model.reliability is None:
        raise ValueError("a correctness estimate needs the model's reliability fields (python -m ume_mma.calibrate)")
    out = {}
    for m, (dz, nz) in (checks if checks is not None else model.reliability.checks(feats)).items():
        head = model.heads[m]
        z = logits[m] if logits is not None and m in logits else head(feats[m].to(head.weight.device))
        trust = trust_score(z, class_log_distances(model.reliability[m], _np64(feats[m])))
        out[m] = signals(z, float(model.reliability.branches[m]["temperature"]), dz, nz, trust)
    return out


def uncertain(
    estimate: dict[str, torch.Tensor], present: dict[str, torch.Tensor], threshold: float = ABSTAIN
) -> torch.Tensor:
    """``BoolTensor[B]``: rows where every present branch with an estimate is below ``threshold`` (no present
    branch is more likely right than wrong, at the default 0.5). A row whose present branches have no estimate
    is never uncertain."""
    rows = next(iter(present.values()))
    if all(t.device.type == "cpu" for t in [*estimate.values(), *present.values()]):  # numpy: no torch dispatch
        low_np, covered_np = np.ones(rows.shape, dtype=bool), np.zeros(rows.shape, dtype=bool)
        for m, c in estimate.items():
            if m in present:
                p = present[m].numpy().astype(bool, copy=False)
                low_np &= ~p | (c.detach().numpy() < threshold)  # float32 against float32, as torch compares
                covered_np |= p
        return torch.from_numpy(low_np & covered_np)
    low = torch.ones_like(rows, dtype=torch.bool)
    covered = torch.zeros_like(low)
    for m, c in estimate.items():
        if m in present:
            p = present[m].to(low.device)
            low &= ~p | (c.to(low.device) < threshold)
            covered |= p
    return low & covered


class Correctness:
    """The fitted estimate (``ModelConfig.correctness``): ``self(signals)`` -> modality -> ``Tensor[B]`` in [0, 1]."""

    def __init__(self, data: dict[str, Any]) -> None:
        check_config(data)
        self.data = data
        self.features = tuple(data["features"])
        self.columns = [FEATURES.index(f) for f in self.features]  # of signals()' [B, F] (all of FEATURES)
        self.params = {
            m: tuple(torch.tensor(b[k], dtype=torch.float64) for k in ("mean", "scale", "weights", "bias"))
            for m, b in sorted(data["branches"].items())
        }
        self._np = {m: tuple(t.numpy() for t in v) for m, v in self.params.items()}

    @property
    def modalities(self) -> list[str]:
        return sorted(self.params)

    @property
    def abstain(self) -> float:
        return float(self.data.get("abstain", ABSTAIN))

    def logit(self, modality: str, s: torch.Tensor) -> torch.Tensor:
        """The estimate's log-odds for ``s`` (``Tensor[B, F]``) of branch ``modality`` -> ``Tensor[B]``."""
        mean, scale, w, b = self.params[modality]
        return ((s.double().cpu()[:, self.columns] - mean) / scale) @ w + b

    def __call__(self, sigs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """P(right) per branch (``Tensor[B]`` float32) for signals ``[B, F]`` (numpy inside, as :func:`signals`)."""
        out = {}
        for m, s in sigs.items():
            if m in self._np:
                mean, scale, w, b = self._np[m]
                x = ((s.detach().cpu().double().numpy()[:, self.columns] - mean) / scale) @ w + b
                out[m] = torch.from_numpy(1.0 / (1.0 + np.exp(-x))).float()
        return out


def estimate(model: MultiModalModel, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """P(right) per branch for encoder outputs ``feats`` of ``model`` (which stores ``correctness``)."""
    data = model.config.correctness
    if data is None:
        raise ValueError("this model has no correctness estimate (fit one: ume_mma.correctness_fit)")
    return Correctness(data)(branch_signals(model, feats))


def fit_logistic(
    s: torch.Tensor, right: torch.Tensor, l2: float = L2, max_iter: int = 200, features: tuple[str, ...] = FEATURES
) -> dict[str, Any]:
    """A branch's parameters from signals ``s`` ``[N, F]`` (columns ``features``) and ``right`` ``BoolTensor[N]``
    (both outcomes needed): penalised maximum likelihood (LBFGS) with the weights of :data:`NON_POSITIVE` kept <= 0
    and those of :data:`NON_NEGATIVE` >= 0."""
    x, y = s.detach().double().cpu(), right.detach().double().cpu()
    if len(x) < 2 or not (0 < float(y.sum()) < len(y)):
        raise ValueError(f"fitting a correctness estimate needs right and wrong answers, got {int(y.sum())}/{len(y)}")
    mean, scale = x.mean(0), x.std(0).clamp_min(1e-6)
    xs = (x - mean) / scale
    if x.shape[1] != len(features):
        raise ValueError(f"fitting a correctness estimate needs {len(features)} signals per row, got {x.shape[1]}")
    neg = torch.tensor([f in NON_POSITIVE for f in features])
    pos = torch.tensor([f in NON_NEGATIVE for f in features])
    v = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([v], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def weights(v: torch.Tensor) -> torch.Tensor:
        w, soft = v[:-1], torch.nn.functional.softplus(v[:-1])
        return torch.where(neg, -soft, torch.where(pos, soft, w))

    def closure() -> torch.Tensor:
        opt.zero_grad()
        w = weights(v)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xs @ w + v[-1], y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w = weights(v.detach())
    return {"mean": mean.tolist(), "scale": scale.tolist(), "weights": w.tolist(), "bias": float(v.detach()[-1])}


def check_config(data: Any, modalities: list[str] | None = None, reliable: list[str] | None = None) -> None:
    """Raise ``ValueError`` when ``ModelConfig.correctness`` is malformed; ``modalities``: the model's,
    ``reliable``: those with reliability fields (each covered branch needs them)."""
    known = [list(f) for f in FEATURE_SETS]
    if not isinstance(data, dict) or data.get("model") != MODEL or list(data.get("features", [])) not in known:
        raise ValueError(f"correctness needs model {MODEL!r} and features {' or '.join(map(str, known))}")
    features = list(data["features"])
    branches = data.get("branches")
    if not isinstance(branches, dict) or not branches:
        raise ValueError("correctness needs a 'branches' table: modality -> {mean, scale, weights, bias}")
    if "abstain" in data and not (isinstance(data["abstain"], (int, float)) and 0 <= data["abstain"] <= 1):
        raise ValueError(f"correctness 'abstain' is a probability in [0, 1], got {data['abstain']!r}")
    if "alpha" in data and not (isinstance(data["alpha"], (int, float)) and data["alpha"] >= 0):
        raise ValueError(f"correctness 'alpha' must be a number >= 0, got {data['alpha']!r}")
    for m, b in branches.items():
        if modalities is not None and m not in modalities:
            raise ValueError(f"correctness of {m!r}, which is not a modality of the model {modalities}")
        if reliable is not None and m not in reliable:
            raise ValueError(f"correctness of {m!r} needs that branch's reliability fields, which the model lacks")
        vectors = [b.get(k) for k in ("mean", "scale", "weights")]
        if not all(isinstance(v, list) and len(v) == len(features) for v in vectors):
            raise ValueError(f"correctness of {m!r}: mean, scale and weights need {len(features)} numbers each")
        numbers = [*vectors[0], *vectors[1], *vectors[2], b.get("bias")]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers) or min(vectors[1]) <= 0:
            raise ValueError(f"correctness of {m!r}: needs finite numbers and scales > 0")
        for f, w in zip(features, vectors[2]):
            if f in NON_POSITIVE and w > 0:
                raise ValueError(f"correctness of {m!r}: the weight of {f!r} must be <= 0, got {w}")
            if f in NON_NEGATIVE and w < 0:
                raise ValueError(f"correctness of {m!r}: the weight of {f!r} must be >= 0, got {w}")
