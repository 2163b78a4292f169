"""Encoder adapters. Importing this package registers every built-in encoder spec."""

from ume_mma.encoders import scratch  # noqa: F401
from ume_mma.encoders.base import Encoder

__all__ = ["Encoder"]
