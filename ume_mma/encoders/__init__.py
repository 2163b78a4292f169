"""Encoder adapters. Importing this package registers every built-in encoder spec."""

from ume_mma.encoders import scratch  # noqa: F401

# isort: split
# video wraps registered image encoders, so it is imported after them (alphabetical order keeps that).
from ume_mma.encoders import hf, open_clip, packaged, video  # noqa: F401
from ume_mma.encoders.base import Encoder

__all__ = ["Encoder"]
