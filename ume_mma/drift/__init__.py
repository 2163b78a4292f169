"""Simulated drift, per modality: seeded, composable functions on decoded inputs (:mod:`.base`).

Families: :mod:`.image`, :mod:`.audio` (codecs through PyAV), :mod:`.text`, :mod:`.video`. Every module of this
package is imported here, so adding a family is one decorated function in one module and no other edit.
"""

import importlib
import pkgutil

from ume_mma.drift.base import (
    DRIFTS,
    MODALITIES,
    SPLITS,
    Drift,
    DriftFamily,
    apply_drift,
    check_severity,
    compose,
    get_drift,
    list_drifts,
    register_drift,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base" and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "DRIFTS",
    "MODALITIES",
    "SPLITS",
    "Drift",
    "DriftFamily",
    "apply_drift",
    "check_severity",
    "compose",
    "get_drift",
    "list_drifts",
    "register_drift",
]
