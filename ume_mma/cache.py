"""A cache bounded in bytes (least recently used entries go first), and how many bytes a value holds."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = ["ByteLRU", "nbytes"]


def nbytes(value: Any) -> int:
    """Approximate memory held by a cached value: tensors and arrays by their buffers, PIL images by
    width x height x bands, containers by their items; anything else (None, str) counts 64 bytes."""
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, Image.Image):
        return value.width * value.height * len(value.getbands())
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, (list, tuple)):
        return 64 + sum(nbytes(v) for v in value)
    return 64


class ByteLRU:
    """A bounded map that forgets its least recently used entries when it holds more than ``max_bytes`` (as
    measured by :func:`nbytes`) or, when given, more than ``max_items`` entries. A value larger than
    ``max_bytes`` on its own is not kept."""

    def __init__(self, max_bytes: int, max_items: int | None = None) -> None:
        self.max_bytes, self.max_items = max_bytes, max_items
        self.nbytes = 0
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()

    def get(self, key: Any, default: Any = None) -> Any:
        if key not in self._items:
            return default
        self._items.move_to_end(key)
        return self._items[key][0]

    def put(self, key: Any, value: Any) -> None:
        self.pop(key)
        size = nbytes(value)
        if size > self.max_bytes:
            return
        self._items[key] = (value, size)
        self.nbytes += size
        while self.nbytes > self.max_bytes or (self.max_items is not None and len(self._items) > self.max_items):
            self.nbytes -= self._items.popitem(last=False)[1][1]

    def pop(self, key: Any) -> None:
        if key in self._items:
            self.nbytes -= self._items.pop(key)[1]

    def clear(self) -> None:
        self._items.clear()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._items)
