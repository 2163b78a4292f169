"""Spoken-digit sources: real asterisk recordings and synthetic espeak-ng / flite voices."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ume_mma.data.audio import SR, fit_clip, read_audio, resample, trim_silence
from ume_mma.data.sources import require_tool
from ume_mma.errors import MissingDependencyError

AUDIO_EXTS = (".wav", ".gsm", ".ulaw", ".alaw", ".sln", ".g722")
# Held out for test (BENCHMARK_NOTES): both Allisons are one person, so both go to test.
TEST_SPEAKERS = ("en_US_f_Allison", "es_MX_f_Allison", "fr", "it_IT_m_Carlo")
ASTERISK_APT = (
    "asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav "
    "asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav asterisk-prompt-it-menardi-wav "
    "asterisk-prompt-es-co asterisk-prompt-fr-armelle"
)

DIGIT_WORDS = {
    "en": "zero one two three four five six seven eight nine",
    "es": "cero uno dos tres cuatro cinco seis siete ocho nueve",
    "fr": "zéro un deux trois quatre cinq six sept huit neuf",
    "it": "zero uno due tre quattro cinque sei sette otto nove",
    "de": "null eins zwei drei vier fünf sechs sieben acht neun",
    "ru": "ноль один два три четыре пять шесть семь восемь девять",
}
BABBLE_TEXT = {
    "en": "please leave a message after the tone. the person you are calling is not available.",
    "es": "por favor deje su mensaje después del tono. la persona que llama no está disponible.",
    "fr": "veuillez laisser un message après le bip. votre correspondant est absent pour le moment.",
    "it": "lasciate un messaggio dopo il segnale. la persona chiamata non è raggiungibile.",
    "de": "bitte hinterlassen sie eine nachricht nach dem signalton. der teilnehmer ist nicht erreichbar.",
    "ru": "пожалуйста оставьте сообщение после сигнала. абонент сейчас недоступен.",
}
ESPEAK_LANGS = ("en-us", "en-gb", "es", "es-419", "fr-fr", "it", "de", "ru")
ESPEAK_VARIANTS = (
    "m1 m2 m3 m4 m5 m6 m7 m8 f1 f2 f3 f4 f5 klatt klatt2 klatt3 klatt4 klatt5 croak whisper "
    "Alex Andy aunty benjamin boris david ed edward gustave iven john linda max michel miguel "
    "paul pedro quincy rob robert steph travis victor zac grandpa grandma norbert sandro shelby "
    "Annie Andrea antonio belinda Denis Hugo Marco Michael Mike Storm anika Lee pablo Jacky"
).split()
FLITE_VOICES = {"kal": 105.0, "kal16": 105.0, "awb": 110.0, "rms": 100.0, "slt": 170.0}  # mean F0


def asterisk_root() -> Path:
    return Path(os.environ.get("UME_MMA_ASTERISK_DIR", "/usr/share/asterisk/sounds"))


def _audio_file(folder: Path, stem: str) -> Path | None:
    for ext in AUDIO_EXTS:
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    return None


def find_asterisk_speakers(root: Path | None = None) -> dict[str, Path]:
    """Real speaker folders (symlinks resolved, deduplicated) holding ``digits/0..9``."""
    root = root or asterisk_root()
    found: dict[str, Path] = {}
    if root.is_dir():
        for sub in sorted(root.iterdir()):
            real = sub.resolve()
            if real.name in found or not real.is_dir():
                continue
            if all(_audio_file(real / "digits", str(d)) for d in range(10)):
                found[real.name] = real
    return found


def split_speakers(root: Path | None = None) -> dict[str, list[str]]:
    """``{"test": TEST_SPEAKERS, "val": the other real speakers}``; errors if a test speaker is absent."""
    speakers = find_asterisk_speakers(root)
    missing = [s for s in TEST_SPEAKERS if s not in speakers]
    if missing:
        raise MissingDependencyError(
            f"real digit speakers {missing} not found under {root or asterisk_root()}: run "
            f"`sudo apt-get install -y {ASTERISK_APT}` (or set UME_MMA_ASTERISK_DIR)"
        )
    return {"test": list(TEST_SPEAKERS), "val": [s for s in speakers if s not in TEST_SPEAKERS]}


@dataclass(frozen=True)
class ClipSpec:
    """One spoken digit to render. ``engine``: asterisk | espeak-ng | flite."""

    engine: str
    speaker: str  # asterisk folder name, espeak "lang+variant" or flite voice
    digit: int
    speed: float = 1.0  # espeak words/min, or flite duration stretch
    pitch: float = 0.0  # espeak pitch 0..99, or flite mean F0 (Hz)
    take: int = 0

    @property
    def group(self) -> str:
        return self.speaker if self.engine == "asterisk" else f"{self.engine}:{self.speaker}"

    @property
    def relpath(self) -> str:
        name = self.group.replace(":", "_").replace("+", "_")
        return f"{name}/{self.digit}_{self.take}.wav"


def synthetic_specs(rng: np.random.Generator, flite_takes: int = 16) -> list[ClipSpec]:
    """All training clips: every espeak voice once per digit, every flite voice ``flite_takes`` times."""
    specs = []
    for lang in ESPEAK_LANGS:
        for variant in ESPEAK_VARIANTS:
            for d in range(10):
                specs.append(
                    ClipSpec(
                        "espeak-ng", f"{lang}+{variant}", d, float(rng.integers(110, 231)), float(rng.integers(10, 91))
                    )
                )
    for voice, f0 in FLITE_VOICES.items():
        for take in range(flite_takes):
            for d in range(10):
                specs.append(
                    ClipSpec(
                        "flite",
                        voice,
                        d,
                        round(float(rng.uniform(0.75, 1.35)), 3),
                        round(f0 * float(rng.uniform(0.75, 1.35)), 1),
                        take,
                    )
                )
    return specs


def _word(lang: str, digit: int) -> str:
    return DIGIT_WORDS[lang.split("-")[0]].split()[digit]


def synthesize(engine: str, voice: str, text: str, speed: float, pitch: float) -> np.ndarray:
    """Raw speech at 8 kHz from espeak-ng or flite."""
    if engine == "espeak-ng":
        cmd = [require_tool("espeak-ng"), "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), "--stdout", text]
    else:
        cmd = [
            require_tool("flite"),
            "-voice",
            voice,
            "--setf",
            f"duration_stretch={speed}",
            "--setf",
            f"int_f0_target_mean={pitch}",
            "-t",
            text,
            "-o",
            "/dev/stdout",
        ]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 or len(proc.stdout) < 100:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.decode(errors='replace')[-300:]}")
    x, sr = read_audio(proc.stdout)
    return resample(x, sr, SR)


def render(spec: ClipSpec, speakers: dict[str, Path] | None = None) -> np.ndarray:
    """The processed 1 s, 8 kHz clip of ``spec`` (trimmed, centred, RMS-normalised)."""
    if spec.engine == "asterisk":
        folder = (speakers or find_asterisk_speakers())[spec.speaker]
        path = _audio_file(folder / "digits", str(spec.digit))
        assert path is not None
        x, sr = read_audio(path)
        x = resample(x, sr, SR)
    else:
        lang = spec.speaker.split("+")[0] if spec.engine == "espeak-ng" else "en"
        x = synthesize(spec.engine, spec.speaker, _word(lang, spec.digit), spec.speed, spec.pitch)
    return fit_clip(x)


def real_babble_pool(
    speakers: dict[str, Path], names: list[str], rng: np.random.Generator, per_speaker: int = 24
) -> list[np.ndarray]:
    """Non-digit prompts (top-level files of each speaker folder whose name has no digit or
    digit word, e.g. not ``press-1``), trimmed, at 8 kHz."""
    digit_words = set(DIGIT_WORDS["en"].split())
    pool = []
    for name in names:
        files = sorted(
            p
            for p in speakers[name].iterdir()
            if p.suffix in AUDIO_EXTS
            and p.is_file()
            and not re.search(r"\d", p.stem)
            and not set(re.split(r"[-_.]", p.stem)) & digit_words
        )
        for i in rng.permutation(len(files))[:per_speaker]:
            x, sr = read_audio(files[i])
            x = trim_silence(resample(x, sr, SR))
            if len(x) > SR // 4:
                pool.append(x)
    return pool


def synthetic_babble_pool(rng: np.random.Generator, n: int = 40) -> list[np.ndarray]:
    """Non-digit sentences spoken by random training voices (babble for the synthetic split)."""
    require_tool("espeak-ng")
    pool = []
    for _ in range(n):
        lang = str(rng.choice(ESPEAK_LANGS))
        voice = f"{lang}+{rng.choice(ESPEAK_VARIANTS)}"
        text = BABBLE_TEXT[lang.split("-")[0]]
        pool.append(
            trim_silence(
                synthesize("espeak-ng", voice, text, float(rng.integers(130, 200)), float(rng.integers(10, 91)))
            )
        )
    return pool


def babble(pool: list[np.ndarray], n: int, rng: np.random.Generator, talkers: tuple[int, int] = (3, 6)) -> np.ndarray:
    """Sum of 3-6 random ``n``-sample crops of different utterances, each at unit RMS."""
    out = np.zeros(n, np.float32)
    for i in rng.choice(len(pool), size=int(rng.integers(*talkers, endpoint=True)), replace=len(pool) < 6):
        x = pool[i]
        if len(x) < n:
            x = np.pad(x, (0, n - len(x)), mode="wrap")
        start = int(rng.integers(0, len(x) - n + 1))
        seg = x[start : start + n]
        rms = float(np.sqrt(np.mean(seg**2)))
        if rms > 1e-4:  # skip a crop that fell in a pause
            out += seg / rms
    return out
