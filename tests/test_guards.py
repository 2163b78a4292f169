"""Promises that no other test guarded (issue 18's mutation probe): each test fails when its promise breaks."""

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.tiny import make_tiny_dataset
from ume_mma.annotate import media
from ume_mma.data.format import load_dataset
from ume_mma.features import prepare
from ume_mma.prediction import calibrated_result
from ume_mma.predictor import Predictor

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_checkpoint_v1"


@pytest.mark.parametrize("temperature", [2.0, 0.5])
def test_the_calibrated_confidence_divides_the_logits_by_the_temperature(temperature):
    """softmax([2, 0] / T)'s top probability is sigmoid(2 / T): 0.731059 at T = 2, 0.982014 at T = 0.5."""
    got = calibrated_result(torch.tensor([2.0, 0.0]), ["a", "b"], None, temperature=temperature, reliability=0.9)
    want = 1 / (1 + np.exp(-2.0 / temperature))
    assert got.calibrated_confidence == pytest.approx(want, abs=1e-6)
    assert got.label == "a" and got.confidences["a"] == pytest.approx(1 / (1 + np.exp(-2.0)), abs=1e-6)  # raw


def test_media_are_fsynced_before_the_rename_and_their_folder_after(tmp_path, monkeypatch):
    """A stored reference never points at a file the disk may not hold: the file's bytes are fsynced before it is
    renamed into place, then its folder (and the media root, for a new shard folder) are fsynced."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(media.os, "fsync", fsync)
    monkeypatch.setattr(media.os, "replace", replace)
    source = tmp_path / "clip.wav"
    source.write_bytes(b"RIFF" + os.urandom(1000))
    store = media.MediaStore(tmp_path / "media")
    ref, new = store.put(source)
    final = str((tmp_path / "media" / ref).resolve())
    shard, root = str(Path(final).parent), str((tmp_path / "media").resolve())
    assert new
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync", "replace", "fsync", "fsync"], events
    assert ".incoming-" in events[0][1]  # the file's own bytes, before the rename
    assert events[1] == ("replace", str(tmp_path / "media" / ref))
    assert events[2][1] == shard and events[3][1] == root  # the folders that now name it
    events.clear()
    other = tmp_path / "other.wav"
    other.write_bytes(b"RIFF" + os.urandom(1000))
    ref2, _ = store.put(other)
    if Path(store.path(ref2)).parent == Path(final).parent:  # same shard: the root needs no fsync
        assert [k for k, _ in events] == ["fsync", "replace", "fsync"]


def test_the_feature_cache_notices_a_rewritten_file(tmp_path):
    """A data file rewritten in place (same name) gets new features, not the cached ones of its old content."""
    root = make_tiny_dataset(tmp_path / "data", {"train": 2})
    samples = load_dataset(root).samples
    encoder = Predictor.from_pretrained(FIXTURE).model.encoders["audio"]
    cache = tmp_path / "cache"
    first = prepare(samples, "audio", encoder, cache_dir=cache)
    path = Path(samples[0].path("audio"))
    info = sf.info(path)
    t = np.arange(info.frames) / info.samplerate
    sf.write(path, (0.4 * np.sin(2 * np.pi * 1234 * t)).astype(np.float32), info.samplerate, subtype=info.subtype)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))  # a later write, whatever the clock
    again = prepare(samples, "audio", encoder, cache_dir=cache)
    fresh = prepare(samples, "audio", encoder, cache_dir=None)
    assert torch.equal(again.data, fresh.data)  # the new content's inputs
    assert not torch.equal(again.data, first.data)
    assert len(list(cache.glob("*.safetensors"))) == 2
