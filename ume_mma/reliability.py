"""Per-branch calibration and reliability: how much to believe a branch, and how far its input is from what it
was trained on.

- **Calibration**: one temperature ``T_m`` per branch, fitted on the validation split by minimising the negative
  log-likelihood of ``softmax(logits / T_m)`` (LBFGS on ``log T``). The calibrated confidence of a branch is the
  top-class probability of its temperature-scaled logits (its label is unchanged).
- **Reliability**: the squared Mahalanobis distance of the branch's encoder feature to the nearest class mean,
  under a tied within-class covariance (shrunk towards a multiple of the identity) kept as a rank-``k``
  probabilistic PCA: the top ``k`` eigen-directions keep their own variance, the rest share their mean variance.
  The score is ``u = log d^2`` (:meth:`BranchStats.distance`); with ``q50``/``q95`` its median and 95th percentile
  on held-out in-distribution (validation) data, the reliability is ``r = sigmoid((q95 - u) / tau)``, ``tau =
  (q95 - q50) / ln 19``: 0.95 at the validation median, 0.5 at the 95th percentile, towards 0 beyond.
  ``off_distribution`` is ``r < 0.5``.
- **Feature norm** (checkpoints that store ``norm``): inputs that land near the class means but with an atypical
  feature norm (uniform-noise images on a frozen ImageNet encoder: norm 10 where real emoji have 26) look typical
  to the distance. The second check is the deviation ``|log ||f|| - center|`` (``center``: median on train) with
  its validation median ``q50`` and 99th percentile ``q99`` (0.95 and 0.5 as above; at least
  :data:`NORM_MIN_WIDTH` apart, so L2-normalised encoders never trip it). The reliability is the smaller of the
  two: ``r = sigmoid(-z)``, ``z = max(z_distance, z_norm)`` (:meth:`Reliability.scores`).

What a checkpoint stores (``ModelConfig.reliability``, all small; absent in older checkpoints)::

    {"score": "ppca-mahalanobis+log-norm", "fitted_on": {...},
     "branches": {m: {"temperature": T, "rank": k, "q50": float, "q95": float,
                      "norm": {"center": float, "q50": float, "q99": float}}},   # "norm": absent before
     "base": "mma", "alpha": 2.0}          # read only by fusion="reliability"

plus, per modality, the buffers of :class:`BranchStats` in ``model.safetensors`` under ``reliability.<m>.``:
``center`` ``[D]``, ``means`` ``[C, D]``, ``basis`` ``[D, k]``, ``inv_var`` ``[k]``, ``inv_res`` ``[1]``. At
predict time a branch costs one ``[1, D] x [D, k + C]`` product and a few vector operations, in float64 numpy
(tens of microseconds): negligible next to its encoder.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from ume_mma.models import ModelConfig

SCORE = "ppca-mahalanobis+log-norm"
RANK = 32  # eigen-directions kept with their own variance
SHRINK = 0.1  # covariance shrinkage towards (mean variance) x identity: robust with few samples per dimension
R_MEDIAN = 0.95  # reliability at the median validation score (0.5 at the 95th percentile)
EPS = 1e-12
NORM_Q = 0.99  # the feature-norm check is at 0.5 reliability at this validation percentile (1% false flags)
NORM_MIN_WIDTH = 0.01  # q99 - q50 of the log-norm deviation is at least this (1% of the norm)


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, max_iter: int = 100) -> float:
    """The temperature ``T`` (clamped to [0.05, 20]) minimising the NLL of ``softmax(logits / T)``.

    ``logits``: ``Tensor[N, C]``; ``targets``: ``LongTensor[N]``. LBFGS on ``log T`` from ``T = 1``.
    """
    if len(logits) == 0:
        return 1.0
    z, y = logits.detach().double().cpu(), targets.detach().long().cpu()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    t = float(log_t.detach().exp())
    return min(max(t, 0.05), 20.0) if math.isfinite(t) else 1.0


def nll(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``softmax(logits / temperature)`` (``Tensor[N, C]``, ``LongTensor[N]``)."""
    return float(nn.functional.cross_entropy(logits.double() / temperature, targets.long()))


class BranchStats(nn.Module):
    """Class-conditional feature statistics of one branch (buffers, saved in checkpoints) -> distances.

    ``num_classes`` C, ``dim`` D, ``rank`` k (0 < k <= D; k = D means no shared residual variance).
    """

    def __init__(self, num_classes: int, dim: int, rank: int) -> None:
        super().__init__()
        self.register_buffer("center", torch.zeros(dim))  # [D] mean of the fitted features
        self.register_buffer("means", torch.zeros(num_classes, dim))  # [C, D] class means
        self.register_buffer("basis", torch.zeros(dim, rank))  # [D, k] top eigenvectors of the covariance
        self.register_buffer("inv_var", torch.ones(rank))  # [k] 1 / their variances
        self.register_buffer("inv_res", torch.zeros(1))  # [1] 1 / the mean variance of the other D - k directions

    @classmethod
    @torch.no_grad()
    def fit(
        cls, feats: torch.Tensor, targets: torch.Tensor, num_classes: int, rank: int = RANK, shrink: float = SHRINK
    ) -> BranchStats:
        """Statistics of ``feats`` (``Tensor[N, D]``, in-distribution rows only) with labels ``targets`` ``[N]``.
        A class without rows gets the global mean. Computed in float64, stored in float32."""
        x, y = feats.detach().double().cpu(), targets.detach().long().cpu()
        n, d = x.shape
        k = max(1, min(rank, d))
        center = x.mean(0)
        means = center.expand(num_classes, d).clone()
        for c in y.unique().tolist():
            means[c] = x[y == c].mean(0)
        resid = x - means[y]  # [N, D] within-class residuals
        cov = resid.T @ resid / max(1, n)
        avg = cov.diagonal().mean().clamp_min(EPS)
        cov = (1 - shrink) * cov + shrink * avg * torch.eye(d, dtype=cov.dtype)
        evals, evecs = torch.linalg.eigh(cov)  # ascending
        evals, evecs = evals.flip(0).clamp_min(float(avg) * 1e-6), evecs.flip(1)
        stats = cls(num_classes, d, k)
        stats.center.copy_(center)
        stats.means.copy_(means)
        stats.basis.copy_(evecs[:, :k])
        stats.inv_var.copy_(1 / evals[:k])
        stats.inv_res.fill_(float(1 / evals[k:].mean()) if k < d else 0.0)
        return stats

    def _fixed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
        """What every call shares, in float64 numpy, recomputed only when a buffer changes (a load, ``fit`` or
        ``.to()``). With ``m_c = means_c - center``, ``w = inv_var - inv_res`` ``[k]`` and ``z = x - center``, the
        distance to class c is ``sum_k w_k (z.b_k - m_c.b_k)^2 + inv_res |z - m_c|^2``; expanded, it is
        ``sum_k w_k (z.b_k)^2 + inv_res |z|^2 + const_c - 2 z.g_c`` with ``g_c = basis (w * (m_c @ basis)) +
        inv_res m_c`` and ``const_c = sum_k w_k (m_c.b_k)^2 + inv_res |m_c|^2``. Returns ``center [D]``,
        ``[basis | g] [D, k + C]``, ``const [C]``, ``w [k]`` and ``inv_res``."""
        key = [(t.data_ptr(), t._version) for t in (self.center, self.means, self.basis, self.inv_var, self.inv_res)]
        if getattr(self, "_fixed_key", None) != key:
            center, means, basis = (_np64(t) for t in (self.center, self.means, self.basis))
            m = means - center  # [C, D]
            inv_res = float(self.inv_res)
            w = _np64(self.inv_var) - inv_res  # [k]
            mb = m @ basis  # [C, k]
            g = basis @ (w[:, None] * mb.T) + inv_res * m.T  # [D, C]
            self._fixed_parts = (
                center,
                np.ascontiguousarray(np.concatenate([basis, g], axis=1)),
                (mb * mb) @ w + inv_res * (m * m).sum(1),
                w,
                inv_res,
            )
            self._fixed_key = key
        return self._fixed_parts

    def distance(self, feats: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance to the nearest class mean, ``Tensor[B]`` (float64, on the CPU), for
        ``feats`` ``[B, D]`` (any device). Float64 numpy on centred features, in blocks of :data:`BLOCK` rows:
        one ``[B, D] x [D, k + C]`` product gives the projections on the basis and the linear term of every class's
        distance (:meth:`_fixed`; a batch of one costs a few microseconds, not the dispatch of a dozen torch
        operations)."""
        return torch.from_numpy(self.distance_np(_np64(feats)))

    def distance_np(self, x: np.ndarray) -> np.ndarray:
        """:meth:`distance` of float64 features ``x`` ``[B, D]`` -> ``[B]`` float64."""
        center, proj_g, const, w, inv_res = self._fixed()
        k = len(w)
        out = np.empty(len(x))
        for i in range(0, len(x), BLOCK):
            z = x[i : i + BLOCK] - center  # [b, D]
            y = z @ proj_g  # [b, k + C]: projections on the basis, then z . g_c
            p = y[:, :k]
            own = (p * p) @ w + inv_res * np.einsum("ij,ij->i", z, z)  # [b]: the terms of z alone
            out[i : i + BLOCK] = (const - 2 * y[:, k:]).min(1) + own  # the nearest class: the smallest c-terms
        return np.maximum(out, EPS)


BLOCK = 1024  # rows per block of BranchStats.distance (bounds its temporaries: [BLOCK, C, k] and [BLOCK, D])


def _np64(t: torch.Tensor) -> np.ndarray:
    """``t`` as a float64 numpy array on the CPU (no copy when it already is one)."""
    return t.detach().to("cpu", torch.float64).numpy()


def log_score(stats: BranchStats, feats: torch.Tensor) -> torch.Tensor:
    """The reliability score ``u = log d^2`` (``Tensor[B]``, float64): larger = farther from the training data."""
    return torch.from_numpy(np.log(stats.distance_np(_np64(feats))))


def _tau(q50: float, q_hi: float) -> float:
    return max(q_hi - q50, 1e-6) / math.log(R_MEDIAN / (1 - R_MEDIAN))


def standardised(u: torch.Tensor, q50: float, q_hi: float) -> torch.Tensor:
    """``z = (u - q_hi) / tau`` (``Tensor[B]``, float64), ``tau = (q_hi - q50) / ln 19``: ``sigmoid(-z)`` is 0.95 at
    ``q50`` and 0.5 at ``q_hi``."""
    return (u.double() - q_hi) / _tau(q50, q_hi)


def reliability_of(u: torch.Tensor, q50: float, q95: float) -> torch.Tensor:
    """``r = sigmoid((q95 - u) / tau)`` in [0, 1] (``Tensor[B]``, float32): 0.95 at ``q50``, 0.5 at ``q95``."""
    return torch.sigmoid(-standardised(u, q50, q95)).float()


def log_norm(feats: torch.Tensor) -> torch.Tensor:
    """``log ||f||`` per row of ``feats`` ``[B, D]`` (``Tensor[B]``, float64, on the CPU)."""
    return torch.from_numpy(_log_norm_np(_np64(feats)))


def norm_deviation(feats: torch.Tensor, center: float) -> torch.Tensor:
    """``|log ||f|| - center|`` per row of ``feats`` ``[B, D]`` (``Tensor[B]``, float64, on the CPU)."""
    return torch.from_numpy(np.abs(_log_norm_np(_np64(feats)) - center))


def _log_norm_np(x: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(np.sqrt((x * x).sum(1)), EPS))


def fit_norm(train: torch.Tensor, val: torch.Tensor) -> dict[str, float]:
    """The feature-norm check of one branch: ``center`` = median log-norm of ``train`` ``[N, D]``, ``q50``/``q99`` of
    the deviation of ``val`` ``[M, D]`` (``q99 >= q50 + NORM_MIN_WIDTH``)."""
    center = float(log_norm(train).median())
    dev = norm_deviation(val, center)
    q50, q99 = (float(v) for v in torch.quantile(dev, torch.tensor([0.5, NORM_Q], dtype=torch.float64)))
    return {"center": center, "q50": q50, "q99": max(q99, q50 + NORM_MIN_WIDTH)}


def thresholds(u: torch.Tensor) -> dict[str, float]:
    """``{"q50", "q95"}`` of in-distribution scores ``u`` (``Tensor[N]``), with ``q95 > q50``."""
    q50, q95 = (float(v) for v in torch.quantile(u.double(), torch.tensor([0.5, 0.95], dtype=torch.float64)))
    return {"q50": q50, "q95": max(q95, q50 + 1e-3)}


class Reliability(nn.ModuleDict):
    """The model's per-branch :class:`BranchStats` (``model.reliability``) with the config's temperatures and
    thresholds. Built from a :class:`~ume_mma.models.ModelConfig` whose ``reliability`` is set."""

    def __init__(self, config: ModelConfig) -> None:
        branches = config.reliability["branches"]
        n = len(config.labels)
        super().__init__(
            {m: BranchStats(n, config.spec(m).embed_dim, int(b["rank"])) for m, b in sorted(branches.items())}
        )
        self.branches: dict[str, dict[str, Any]] = branches

    def temperature(self, modality: str) -> float | None:
        b = self.branches.get(modality)
        return float(b["temperature"]) if b else None

    def checks(self, feats: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        """Both checks' ``z`` per modality that has statistics and features: modality -> (distance ``Tensor[B]``,
        feature norm ``Tensor[B]`` or None where the branch stores no norm check), float64 on the CPU; 0 at the
        check's threshold, larger = farther from the training data. Numpy on each branch's features, converted
        once (the same arithmetic as :func:`log_score`, :func:`norm_deviation` and :func:`standardised`)."""
        out = {}
        for m, f in feats.items():
            if m not in self:
                continue
            b, x = self.branches[m], _np64(f)
            dz = (np.log(self[m].distance_np(x)) - b["q95"]) / _tau(b["q50"], b["q95"])
            nz = None
            if "norm" in b:
                n = b["norm"]
                nz = torch.from_numpy((np.abs(_log_norm_np(x) - n["center"]) - n["q99"]) / _tau(n["q50"], n["q99"]))
            out[m] = (torch.from_numpy(dz), nz)
        return out

    def scores(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``z`` per modality that has statistics and features (modality -> ``Tensor[B]``, float64): how far past
        its threshold the input is (0 at the threshold, larger = farther from the training data), the larger of
        the distance check and, when stored, the feature-norm check. The reliability is ``sigmoid(-z)``."""
        return {m: dz if nz is None else torch.maximum(dz, nz) for m, (dz, nz) in self.checks(feats).items()}

    @staticmethod
    def from_checks(
        checks: dict[str, tuple[torch.Tensor, torch.Tensor | None]], feats: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """:meth:`forward`'s reliabilities from :meth:`checks` computed already (the correctness estimate reads
        the same checks): ``sigmoid(-max(z_distance, z_norm))``, float32 on the features' device."""
        out = {}
        for m, (dz, nz) in checks.items():  # the max and negation in numpy: exact, and no torch dispatch
            z = dz.numpy() if nz is None else np.maximum(dz.numpy(), nz.numpy())
            out[m] = torch.sigmoid(torch.from_numpy(-z)).to(feats[m].device, torch.float32)
        return out

    def forward(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Reliability in [0, 1] per modality that has statistics and features: modality -> ``Tensor[B]`` (float32,
        on the features' device)."""
        return {m: torch.sigmoid(-z).float().to(feats[m].device) for m, z in self.scores(feats).items()}


def check_config(data: dict[str, Any], modalities: list[str]) -> None:
    """Raise ``ValueError`` when ``ModelConfig.reliability`` is malformed (unknown modality, bad temperature...)."""
    branches = data.get("branches") if isinstance(data, dict) else None
    if not isinstance(branches, dict):
        raise ValueError("reliability needs a 'branches' table: modality -> {temperature, rank, q50, q95}")
    for m, b in branches.items():
        if m not in modalities:
            raise ValueError(f"reliability of {m!r}, which is not a modality of the model {modalities}")
        missing = sorted({"temperature", "rank", "q50", "q95"} - set(b))
        if missing:
            raise ValueError(f"reliability of {m!r} lacks {missing}")
        if not (b["temperature"] > 0 and int(b["rank"]) > 0 and b["q95"] > b["q50"]):
            raise ValueError(f"reliability of {m!r}: needs temperature > 0, rank > 0 and q95 > q50, got {b}")
        n = b.get("norm")
        if n is not None and not (isinstance(n, dict) and {"center", "q50", "q99"} <= set(n) and n["q99"] > n["q50"]):
            raise ValueError(f"reliability of {m!r}: 'norm' needs center, q50 and q99 > q50, got {n}")


def auroc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """Probability that a random ``positive`` scores above a random ``negative`` (ties count half)."""
    p, n = positive.double().flatten(), negative.double().flatten()
    greater = (p.unsqueeze(1) > n.unsqueeze(0)).double().mean()
    ties = (p.unsqueeze(1) == n.unsqueeze(0)).double().mean()
    return float(greater + 0.5 * ties)
