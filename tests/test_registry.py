"""The encoder registry and factory: import-order independence, typed options, registered specs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from ume_mma.encoders.base import EncoderOptions
from ume_mma.factory import BUILTIN_MODULES
from ume_mma.registry import ENCODERS, create_encoder, get_spec, list_encoders

# Imports the adapter modules in the order given on the command line, then prints the registry as it is
# *before* any lookup (a lookup would import the factory, which imports every module in its own order).
_DUMP = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(f"ume_mma.encoders.{name}")
from ume_mma import registry
assert "ume_mma.factory" not in sys.modules, "an adapter module looked something up at import time"
print(json.dumps({
    "specs": {n: s.to_dict() for n, s in sorted(registry.ENCODERS.items())},
    "adapters": sorted(registry._ADAPTERS),
}, sort_keys=True))
"""


def _registry_after_importing(order: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", _DUMP, *order], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_adapter_modules_register_the_same_registry_in_any_order():
    forward = _registry_after_importing(list(BUILTIN_MODULES))
    assert forward["specs"] == {n: ENCODERS[n].to_dict() for n in list_encoders()}
    assert forward["adapters"] == ["open_clip", "packaged", "scratch", "transformers", "video"]
    video_first = ["video", *reversed([m for m in BUILTIN_MODULES if m != "video"])]
    assert _registry_after_importing(video_first) == forward


def test_importing_the_registry_imports_no_implementation():
    code = "import sys, ume_mma.registry; print(sorted(m for m in sys.modules if m.startswith('ume_mma.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.replace("'", '"')) == ["ume_mma.errors", "ume_mma.registry"]


@pytest.mark.parametrize("name", ["video.frames-efficientnet-lite0", "video.frames-clip-vit-b-32"])
def test_video_specs_agree_with_their_image_encoder(name):
    video = get_spec(name)
    image = get_spec(video.options["image_encoder"])
    assert (video.embed_dim, video.pretrained, video.frozen, video.image_size) == (
        image.embed_dim,
        image.pretrained,
        image.frozen,
        image.image_size,
    )


@pytest.mark.parametrize("name", list_encoders())
def test_unknown_option_raises_naming_the_known_ones(name):
    spec = get_spec(name)
    bad = spec.replace(options={**spec.options, "bogus_option": 1})
    with torch.device("meta" if spec.source != "scratch" else "cpu"), pytest.raises(ValueError) as info:
        create_encoder(bad)
    assert "bogus_option" in str(info.value) and "known:" in str(info.value)


def test_typed_defaults_are_the_registered_values():
    """One place for defaults: the registered specs of the main scratch/packaged audio encoders spell out
    exactly the option defaults (they disagreed before: hop 80 in the class, 100 in the spec)."""
    from ume_mma.encoders.packaged import WhisperCT2Options
    from ume_mma.encoders.scratch import HashedTextOptions, ImageCNNOptions, LogMelOptions

    assert LogMelOptions.from_spec(get_spec("scratch.logmel-cnn")) == LogMelOptions()
    assert LogMelOptions().hop == 100
    assert WhisperCT2Options.from_spec(get_spec("packaged.whisper-tiny-en")) == WhisperCT2Options()
    assert ImageCNNOptions.from_spec(get_spec("scratch.image-cnn")) == ImageCNNOptions()
    assert HashedTextOptions.from_spec(get_spec("scratch.hashed-text")) == HashedTextOptions()


def test_options_are_frozen_and_lists_become_tuples():
    from ume_mma.encoders.scratch import LogMelOptions

    options = LogMelOptions.from_spec(get_spec("scratch.logmel-cnn"))
    assert options.widths == (16, 32, 64)
    with pytest.raises(AttributeError):
        options.hop = 1  # type: ignore[misc]
    assert issubclass(LogMelOptions, EncoderOptions)


def test_unknown_augment_option_raises():
    spec = get_spec("scratch.logmel-cnn")
    with pytest.raises(ValueError, match="stretch"):
        create_encoder(spec.replace(options={**spec.options, "augment": {"strech": [0.9, 1.1]}}))


def test_unknown_source_and_arch_list_the_known_ones():
    spec = get_spec("scratch.image-cnn")
    with pytest.raises(ValueError, match="scratch"):
        create_encoder(spec.replace(source="nowhere"))
    with pytest.raises(ValueError, match="image_cnn"):
        create_encoder(spec.replace(options={**spec.options, "arch": "nope"}))
