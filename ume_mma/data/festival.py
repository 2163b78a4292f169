"""Spoken digits from the Festival speech synthesizer (Debian ``festival`` + four ``festvox-*`` voices).

:data:`VOICES` are the four Festival voices of Debian bookworm that speak a language of av-digits' digit words
and are no speaker of any build here: ``ked_diphone`` (``festvox-kdlpc16k``, American English male),
``lp_diphone`` and ``pc_diphone`` (``festvox-italp16k`` / ``festvox-itapc16k``, Italian female and male) and
``msu_ru_nsh_clunits`` (``festvox-ru``, Russian male, unit selection). av-digits trains on espeak-ng (its formant
synthesizer, 8 languages x 58 variants) and flite (kal, kal16, awb, rms, slt) and validates and tests on the 8
asterisk speakers; av-digits-shift uses the asterisk speakers only. Festival's ``kal_diphone``
(``festvox-kallpc16k``, the recordings behind flite's kal) and ``cmu_us_slt_arctic_hts`` (``festvox-us-slt-hts``,
the speaker of flite's slt) are left out for that reason. Each take varies the speaking rate (Festival's
``Duration_Stretch``, 0.85-1.25); the clip is then processed like every other source (:func:`fit_clip`: 1 s,
8 kHz, trimmed, centred, RMS-normalised). The speech is clean: the new voice is the shift.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ume_mma.data.audio import SR, fit_clip, read_audio, resample
from ume_mma.data.sources import require_tool
from ume_mma.data.speech import DIGIT_WORDS
from ume_mma.errors import MissingDependencyError

FESTIVAL_APT = "festival festvox-kdlpc16k festvox-italp16k festvox-itapc16k festvox-ru"
VOICES = {"ked_diphone": "en", "lp_diphone": "it", "pc_diphone": "it", "msu_ru_nsh_clunits": "ru"}
VOICE_DIR = Path("/usr/share/festival/voices")


@dataclass(frozen=True)
class FestivalClip:
    """One take of a digit by a Festival voice; ``stretch`` is the duration factor (> 1 speaks slower)."""

    voice: str
    digit: int
    stretch: float
    take: int

    @property
    def relpath(self) -> str:
        return f"festival_{self.voice}/{self.digit}_{self.take}.wav"


def require_voices() -> None:
    """A readable error when ``text2wave`` or one of :data:`VOICES` is not installed."""
    require_tool("text2wave", FESTIVAL_APT)
    missing = [v for v in VOICES if not any(VOICE_DIR.glob(f"*/{v}"))]
    if missing:
        raise MissingDependencyError(
            f"Festival voices {missing} not found under {VOICE_DIR}: run `sudo apt-get install -y {FESTIVAL_APT}`"
        )


def clip_pool(seed: int, takes: int = 4) -> list[FestivalClip]:
    """Every voice x digit x ``takes``, each take with a seeded speaking rate."""
    rng = np.random.default_rng([seed, 17])
    return [
        FestivalClip(voice, d, round(float(rng.uniform(0.85, 1.25)), 3), t)
        for voice in VOICES
        for d in range(10)
        for t in range(takes)
    ]


def render(clip: FestivalClip, word: str | None = None) -> np.ndarray:
    """The processed 1 s, 8 kHz clip (float32 ``[8000]``) of ``clip``, synthesised by ``text2wave``; ``word``:
    another word to say than the clip's digit (the voice and speaking rate as given)."""
    word = word or DIGIT_WORDS[VOICES[clip.voice]].split()[clip.digit]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "say.wav"
        cmd = [
            require_tool("text2wave", FESTIVAL_APT),
            "-eval",
            f"(voice_{clip.voice})",
            "-eval",
            f"(Parameter.set 'Duration_Stretch {clip.stretch})",
            "-o",
            str(out),
        ]
        proc = subprocess.run(cmd, input=word.encode(), capture_output=True, check=False)
        if proc.returncode != 0 or not out.is_file() or out.stat().st_size < 1000:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.decode(errors='replace')[-300:]}")
        x, sr = read_audio(out)
    return fit_clip(resample(x, sr, SR))
