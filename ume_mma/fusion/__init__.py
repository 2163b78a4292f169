"""Fusion modes (TorchMultimodal style): small registered modules, one per mode.

Built-in modes: ``ume`` (:mod:`.ume`), ``mma`` and ``naive`` (:mod:`.late`). Every module of this package
is imported here, so adding a mode is one new module with one ``@register_fusion`` class and no other edit
(a mode defined outside the package registers when its module is imported).
"""

import importlib
import pkgutil

from ume_mma.fusion.base import FILLS, FUSIONS, Fusion, FusionInputs, get_fusion, list_fusions, register_fusion

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["FILLS", "FUSIONS", "Fusion", "FusionInputs", "get_fusion", "list_fusions", "register_fusion"]
