"""Files for Chromium's fake camera and microphone (``--use-file-for-fake-video-capture=FILE.y4m``,
``--use-file-for-fake-audio-capture=FILE.wav``), made from the shipped examples in assets/. Chromium loops both.

A y4m is written by hand: the header, then per frame ``FRAME`` + the Y plane + the U and V planes at half size
(128 = no colour). The picture fills the frame's centre square; ``noise`` adds a camera's sensor noise (a real
camera is never pixel-identical from one frame to the next; without it the live tab calls the feed frozen).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
DIGIT_7 = ASSETS / "agree_7_image_7.png"
DIGIT_2 = ASSETS / "disagree_2_5_image_2.png"
SPEECH_7 = ASSETS / "agree_7_speech_7_en_US_f_Allison.wav"
SPEECH_5 = ASSETS / "disagree_2_5_speech_5_es_MX_f_Allison.wav"
W, H, FPS = 160, 120, 10


def frame(picture: Path | None, noise: int = 1, seed: int = 0, marker: bool = False) -> np.ndarray:
    """One ``[H, W]`` uint8 luma frame: ``picture`` in the centre square (None: black), plus noise; ``marker``
    lights a 10x10 block in the top-left corner (outside the centre square: the model never sees it)."""
    grey = np.zeros((H, W), np.int16)
    if picture is not None:
        left = (W - H) // 2
        grey[:, left : left + H] = np.asarray(Image.open(picture).convert("L").resize((H, H)), dtype=np.int16)
        if noise:
            grey += np.random.default_rng(seed).integers(-noise, noise + 1, grey.shape).astype(np.int16)
    if marker:
        grey[:10, :10] = 255
    return np.clip(grey, 0, 255).astype(np.uint8)


def write_y4m(path: Path, frames: list[np.ndarray]) -> Path:
    """``frames`` (``[H, W]`` luma each) as a grey 4:2:0 y4m at :data:`FPS` frames per second."""
    chroma = np.full((H // 2) * (W // 2), 128, np.uint8).tobytes()
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{W} H{H} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for y in frames:
            f.write(b"FRAME\n" + y.tobytes() + chroma + chroma)
    return Path(path)


def camera(path: Path, picture: Path | None, seconds: float = 1.0) -> Path:
    """A camera looking at ``picture`` (None: a covered lens, black) for ``seconds``, looped by Chromium."""
    return write_y4m(path, [frame(picture, seed=i) for i in range(int(seconds * FPS))])


def alternating(path: Path, first: Path, second: Path, seconds: float = 1.0) -> Path:
    """``first`` for ``seconds``, then ``second`` (with the corner marker lit) for ``seconds``, looped."""
    n = int(seconds * FPS)
    frames = [frame(first, seed=i) for i in range(n)] + [frame(second, seed=n + i, marker=True) for i in range(n)]
    return write_y4m(path, frames)


def microphone(path: Path, speech: Path | None, pause: float = 0.5) -> Path:
    """A microphone hearing ``speech`` then ``pause`` seconds of silence (None: a muted one, all zeros)."""
    samples, rate = sf.read(SPEECH_7 if speech is None else speech, dtype="float32")
    samples = np.concatenate([samples, np.zeros(int(pause * rate), np.float32)])
    if speech is None:
        samples[:] = 0.0
    sf.write(path, samples, rate, subtype="PCM_16")
    return Path(path)


def chromium_args(video: Path, audio: Path) -> list[str]:
    """Chromium's flags for a fake camera and microphone that play ``video`` and ``audio``."""
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
        f"--use-file-for-fake-audio-capture={audio}",
    ]
