"""Video drift families (:class:`~ume_mma.io.VideoClip` in and out: the same number of frames, of the same
size; the soundtrack is left alone: drift it with an ``audio.*`` family).

Fitting family: dropped frames. Held out: repeated (frozen) frames, compression (MPEG-4 Part 2 through PyAV).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from ume_mma import io
from ume_mma.drift.base import register_drift
from ume_mma.errors import MissingDependencyError


def _with_frames(clip: io.VideoClip, frames: list[Image.Image]) -> io.VideoClip:
    return dataclasses.replace(clip, frames=frames)


@register_drift(
    "video.drop-frames", "fit", "each frame lost with probability 0.8 s (one at least); survivors fill the slots"
)
def drop_frames(clip: io.VideoClip, s: float, rng: np.random.Generator) -> io.VideoClip:
    """Lost frames are removed and the K slots refilled evenly from the survivors (at least one survives): the
    clip keeps K frames but covers less of the motion."""
    k = len(clip.frames)
    u = rng.random(k)
    lost = {i for i in range(k) if u[i] < 0.8 * s} | {int(np.argmin(u))}  # at least one frame is lost
    keep = [i for i in range(k) if i not in lost] or [int(np.argmax(u))]
    picks = [keep[min(len(keep) - 1, j * len(keep) // k)] for j in range(k)]
    return _with_frames(clip, [clip.frames[i] for i in picks])


@register_drift("video.repeat-frames", "heldout", "a frozen stream: a run of ceil(s (K - 1)) frames repeats one")
def repeat_frames(clip: io.VideoClip, s: float, rng: np.random.Generator) -> io.VideoClip:
    k = len(clip.frames)
    run = int(np.ceil(s * (k - 1)))
    start = int(rng.integers(0, k - run)) if run < k else 0
    frames = [clip.frames[start] if start <= i <= start + run else f for i, f in enumerate(clip.frames)]
    return _with_frames(clip, frames)


@register_drift(
    "video.compress", "heldout", "MPEG-4 Part 2 (PyAV) at quantiser 2 + 29 s (31: the coarsest), a key frame every 4"
)
def compress(clip: io.VideoClip, s: float, rng: np.random.Generator) -> io.VideoClip:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is in requirements.txt
        raise MissingDependencyError("video compression drift needs PyAV: pip install av") from exc
    import io as _io

    w, h = clip.frames[0].size
    w2, h2 = w + w % 2, h + h % 2  # the codec wants even sides
    buf = _io.BytesIO()
    with av.open(buf, "w", format="avi") as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = w2, h2, "yuv420p"
        q = 2 + round(29 * s)  # the quantiser: 2 (near lossless) .. 31 (the coarsest MPEG-4 allows)
        stream.options = {"qmin": str(q), "qmax": str(q), "g": "4"}
        for f in clip.frames:
            rgb = f.convert("RGB").resize((w2, h2)) if (w2, h2) != (w, h) else f.convert("RGB")
            out.mux(stream.encode(av.VideoFrame.from_image(rgb)))
        out.mux(stream.encode(None))
    with av.open(_io.BytesIO(buf.getvalue()), "r") as inp:
        frames = [fr.to_image() for fr in inp.decode(video=0)]
    frames = [f.crop((0, 0, w, h)) if f.size != (w, h) else f for f in frames][: len(clip.frames)]
    frames += [frames[-1]] * (len(clip.frames) - len(frames))
    return _with_frames(clip, [f.convert(o.mode) for f, o in zip(frames, clip.frames)])
