"""Encoder adapters, one module per source (scratch, hf, open_clip, packaged, video).

Each module registers its specs and its builder with :mod:`ume_mma.registry` when imported; this package
imports none of them, so they can be imported in any order. :mod:`ume_mma.factory` imports every module
here: adding an adapter is one new module, no other edit.
"""

from ume_mma.encoders.base import Encoder

__all__ = ["Encoder"]
