"""Choosing the compute device: ``auto`` (the GPU when there is one), ``cpu`` or ``cuda[:N]``."""

from __future__ import annotations

import torch

from ume_mma.errors import UmeMmaError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto``/None -> ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU raises a readable error."""
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UmeMmaError(f"device {name!r} was asked for, but no CUDA GPU is available here (use 'auto' or 'cpu')")
        return torch.device(name)
    raise UmeMmaError(f"unknown device {name!r}; give one of {', '.join(DEVICE_CHOICES)} (or cuda:N)")


def on_cpu(name: str | torch.device | None = "auto") -> bool:
    """Whether models asked to run on ``name`` run on the CPU (``cpu``, or ``auto`` without a GPU); False for a
    device that would raise (:func:`resolve_device` says why when it is used)."""
    try:
        return resolve_device(name).type == "cpu"
    except UmeMmaError:
        return False
