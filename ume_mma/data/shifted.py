"""Shifted test sets: a benchmark's test split with **one** modality replaced by a source the models never saw.

``python -m ume_mma.data build shifted OUT --base DIR --shift image|audio|text [--source NAME] [--seed N]``

Every row of ``DIR``'s test split is kept with its label, its ``meta`` and its other modalities (files copied
byte for byte); only the shifted modality is replaced, by an input of the same label (av-digits) or of the same
emoji (emoji-vl) from another source (``--source``; the first one of each list is the default, :data:`SOURCES`):

- **av-digits** (``clean`` or ``hard``), ``image``:

  - ``opencv``: OpenCV's ``digits.png`` (other writers than MNIST), the held-out sheet blocks of
    av-digits-shift, captured at 8-11 px and brought to MNIST's format.
  - ``fonts``: printed digits, every face of 4 Debian font packages (DejaVu, Liberation, GNU FreeFont, URW
    base35: sans, serif, mono, chancery; regular to bold, upright and italic), 2 takes per font and digit, each
    turned by up to 10 degrees and moved by up to 1 px, in MNIST's format (:mod:`ume_mma.data.printed`).
    No model was fitted on type: av-digits trains on MNIST, av-digits-shift on OpenCV's handwriting.

  For ``hard`` both are then reconstructed from the same 4 principal components as the base (fitted on the
  base's train images).
- **av-digits**, ``audio``:

  - ``telephone``: av-digits-shift's held-out asterisk speakers over a telephone line (GSM or mu-law) with
    mains hum, crackle or traffic noise (:mod:`ume_mma.data.shift`).
  - ``festival``: clean speech of the Festival synthesizer's voices ``ked_diphone`` (American English male),
    ``lp_diphone`` / ``pc_diphone`` (Italian female / male) and ``msu_ru_nsh_clunits`` (Russian male), 4 takes
    per voice and digit at seeded speaking rates (:mod:`ume_mma.data.festival`). None is heard in any fitting:
    av-digits trains on espeak-ng (formant synthesis, 8 languages x 58 variants) and flite (kal, kal16, awb,
    rms, slt) and validates on asterisk speakers, av-digits-shift uses asterisk speakers only, and Festival's
    voices that share a speaker with flite (kal, slt) are not used.
- **emoji-vl**, ``image``: ``openmoji``, a third drawing style, OpenMoji (npm ``openmoji@17.0.0``, CC BY-SA
  4.0), rendered from its SVGs at 64x64 on white; rows whose emoji OpenMoji does not draw are left out.
- **emoji-vl**, ``text``: ``fr``, ``de`` or ``es``: the CLDR keywords in **French**, **German** or **Spanish**
  (``annotations/<lang>.xml``, Debian ``unicode-cldr-core``) minus the words of the emoji's names in that
  language and in English, instead of the English ones (emoji-vl is fitted on English keywords only).

The folder has a ``test`` split only: it is for measuring (``python -m ume_mma.results``, ``TrainConfig.shifted``),
never for training, calibrating or choosing. ``build_info.json`` records the base, the shift, the source
(``source_name`` and ``source``, its description) and what it drew on.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ume_mma.data.format import Sample, load_dataset, write_dataset
from ume_mma.data.sources import npm_package, staged_output
from ume_mma.errors import DatasetFormatError, MissingDependencyError

SHIFTS = {"av-digits": ("image", "audio"), "emoji-vl": ("image", "text")}
OPENMOJI = "openmoji@17.0.0"
IMAGE_SIZE = 64
# (benchmark, shift) -> {source name: description}; the first name is the default.
SOURCES = {
    ("av-digits", "image"): {
        "opencv": "OpenCV digits.png (Debian opencv-doc; BSD-3-Clause / Apache-2.0), held-out sheet blocks",
        "fonts": "font files (Debian fonts-dejavu-core, fonts-liberation2, fonts-freefont-ttf, fonts-urw-base35; "
        "free font licences), printed digits turned and moved a little",
    },
    ("av-digits", "audio"): {
        "telephone": "asterisk sound packages (CC-BY-SA-3.0 / BSD-style) over a telephone line (sox)",
        "festival": "Festival voices ked, lp, pc, msu_ru_nsh (Debian festival, festvox-kdlpc16k, festvox-italp16k, "
        "festvox-itapc16k, festvox-ru; free licences), clean speech",
    },
    ("emoji-vl", "image"): {
        "openmoji": "npm openmoji@17.0.0 (OpenMoji, CC BY-SA 4.0), color SVGs rendered with resvg",
    },
    ("emoji-vl", "text"): {
        lang: f"CLDR annotations {lang}.xml (Debian unicode-cldr-core, Unicode licence)" for lang in ("fr", "de", "es")
    },
}

Replacer = Callable[[Sample], Any]  # a row -> the new value of the shifted modality (None: no source, drop)
Finish = Callable[[], None] | None  # run once after every row is planned (renders what the rows need)


def _queues(keys: list[Any], seed: int) -> Callable[[Any], int | None]:
    """Round-robin over shuffled indices per key: ``take(key)`` -> the next index of an item with that key."""
    by_key: dict[Any, list[int]] = {}
    for i, k in enumerate(keys):
        by_key.setdefault(k, []).append(i)
    rng = np.random.default_rng([seed, 21])
    queues: dict[Any, list[int]] = {}

    def take(key: Any) -> int | None:
        if key not in by_key:
            return None
        if not queues.get(key):
            items = by_key[key]
            queues[key] = [items[j] for j in rng.permutation(len(items))]
        return queues[key].pop()

    return take


def _digit_images(info: dict[str, Any], seed: int, tmp: Path, source: str) -> tuple[Replacer, Finish]:
    if source == "fonts":
        from ume_mma.data.printed import printed_pool

        rows = printed_pool(seed)  # (image, digit, font stem)
        names = [f"{r[2]}_{r[1]}_{i:05d}" for i, r in enumerate(rows)]
    else:
        from ume_mma.data.shift import _sheet_images

        rows = _sheet_images(seed, True, None)["test"]  # held-out blocks, scanned at 8-11 px, MNIST format
        names = [f"{i:05d}" for i in range(len(rows))]
    pixels = np.stack([r[0] for r in rows])
    if info.get("setting") == "hard":
        from ume_mma.data.av_digits import PCA_K, train_images
        from ume_mma.data.mnist import pca_project

        pixels, _ = pca_project(train_images(int(info.get("seed", 0))), pixels, PCA_K)
    take = _queues([str(r[1]) for r in rows], seed)
    (tmp / "shifted" / "image").mkdir(parents=True, exist_ok=True)

    def replace_image(s: Sample) -> str | None:
        i = take(s.label)
        if i is None:
            return None
        rel = f"shifted/image/{names[i]}.png"
        if not (tmp / rel).is_file():
            Image.fromarray(np.round(pixels[i] * 255).astype(np.uint8), mode="L").save(tmp / rel)
        return rel

    return replace_image, None


def _festival_clips(seed: int, tmp: Path, workers: int | None) -> tuple[Replacer, Finish]:
    from ume_mma.data.audio import SR, write_wav
    from ume_mma.data.festival import clip_pool, render, require_voices

    require_voices()
    pool = clip_pool(seed)
    take = _queues([str(c.digit) for c in pool], seed)
    needed: set[int] = set()

    def replace_audio(s: Sample) -> str | None:
        i = take(s.label)
        if i is None:
            return None
        needed.add(i)
        return f"shifted/audio/{pool[i].relpath}"

    def render_all() -> None:
        def make(i: int) -> None:
            path = tmp / "shifted" / "audio" / pool[i].relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            write_wav(path, render(pool[i]), SR)

        with ThreadPoolExecutor(max_workers=workers or max(2, os.cpu_count() or 2)) as ex:
            list(ex.map(make, sorted(needed)))

    return replace_audio, render_all


def _digit_clips(seed: int, tmp: Path, workers: int | None) -> tuple[Replacer, Finish]:
    from ume_mma.data.audio import SR, write_wav
    from ume_mma.data.shift import _channel_plan, _clip_pool, _Plan, _render
    from ume_mma.data.sources import require_tool
    from ume_mma.data.speech import find_asterisk_speakers

    require_tool("sox", "sox libsox-fmt-all")
    pool = _clip_pool("audio", "test")  # held-out speakers, several noisy takes each
    plan = _Plan("audio", seed, channel={c: _channel_plan(seed, c) for c in pool})
    take = _queues([str(c.digit) for c in pool], seed)
    folders = find_asterisk_speakers()
    rendered: dict[int, str] = {}

    def replace_audio(s: Sample) -> str | None:
        i = take(s.label)
        if i is None:
            return None
        rendered.setdefault(i, f"shifted/audio/{pool[i].relpath}")
        return rendered[i]

    def render_all() -> None:  # after the rows are planned: each needed clip once, in parallel
        def make(i: int) -> None:
            write_wav(tmp / rendered[i], _render(plan, pool[i], folders), SR)

        with ThreadPoolExecutor(max_workers=workers or max(2, os.cpu_count() or 2)) as ex:
            list(ex.map(make, sorted(rendered)))

    return replace_audio, render_all


def openmoji_package(fetch: bool = True) -> Path:
    """``$UME_MMA_OPENMOJI_DIR`` or ``~/.cache/ume_mma/openmoji/package`` (npm pack if allowed)."""
    return npm_package(OPENMOJI, "UME_MMA_OPENMOJI_DIR", "openmoji", "color/svg", fetch=fetch)


def render_svg(path: Path, size: int = IMAGE_SIZE) -> Image.Image:
    """An SVG rendered at ``size`` x ``size`` on white, RGB."""
    try:
        import resvg_py
    except ImportError as exc:  # pragma: no cover - resvg-py is in requirements.txt
        raise MissingDependencyError("rendering OpenMoji needs resvg-py: pip install resvg-py") from exc
    png = resvg_py.svg_to_bytes(svg_path=str(path), width=size, height=size, background="#ffffff")
    with Image.open(io.BytesIO(bytes(png))) as im:
        return im.convert("RGB")


def _emoji_images(tmp: Path) -> tuple[Replacer, Finish]:
    svgs = openmoji_package() / "color" / "svg"
    (tmp / "shifted" / "image").mkdir(parents=True, exist_ok=True)

    def replace_image(s: Sample) -> str | None:
        u = str(s.meta.get("unified", "")).upper()
        for name in dict.fromkeys([u, u.replace("-FE0F", "")]):
            src = svgs / f"{name}.svg"
            if name and src.is_file():
                rel = f"shifted/image/{u.lower()}.png"
                if not (tmp / rel).is_file():
                    render_svg(src).save(tmp / rel)
                return rel
        return None

    return replace_image, None


def _emoji_texts(lang: str) -> tuple[Replacer, Finish]:
    from ume_mma.data.emoji_meta import VS16, keywords_for, load_cldr, text_without_name, words

    keywords, names = load_cldr(lang)

    def replace_text(s: Sample) -> str | None:
        u = s.meta.get("unified")
        if not u:
            return None
        tags, _ = keywords_for({"unified": u}, keywords)
        name = names.get(str(s.meta.get("emoji", "")).replace(VS16, ""), "")
        return text_without_name(tags, words(name) | words(str(s.meta.get("name", ""))))

    return replace_text, None


def build_shifted(
    base: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    shift: str,
    seed: int = 0,
    workers: int | None = None,
    source: str | None = None,
) -> Path:
    """Build the shifted copy of ``base``'s test split into ``out_dir`` from ``source`` (a name of
    :data:`SOURCES`; ``None``: the default); returns the folder."""
    t0 = time.time()
    base = Path(base).expanduser().resolve()
    info_file = base / "build_info.json"
    if not info_file.is_file():
        raise DatasetFormatError(f"{base}: no build_info.json (build the base with `python -m ume_mma.data build`)")
    info = json.loads(info_file.read_text())
    bench = info.get("benchmark")
    if bench not in SHIFTS:
        raise ValueError(f"{base}: shifted sets exist for {sorted(SHIFTS)}, not {bench!r}")
    if shift not in SHIFTS[bench]:
        raise ValueError(f"{bench} has shifted sets for {', '.join(SHIFTS[bench])}, not {shift!r}")
    choices = SOURCES[(bench, shift)]
    source = source or next(iter(choices))
    if source not in choices:
        raise ValueError(f"{bench} {shift} sources are {', '.join(choices)}, not {source!r}")
    rows = load_dataset(base, split="test").samples
    if not rows:
        raise DatasetFormatError(f"{base}: the test split is empty")
    with staged_output(out_dir) as tmp:
        if bench == "av-digits" and shift == "image":
            replacer, finish = _digit_images(info, seed, tmp, source)
        elif bench == "av-digits":
            clips = _festival_clips if source == "festival" else _digit_clips
            replacer, finish = clips(seed, tmp, workers)
        else:
            replacer, finish = _emoji_images(tmp) if shift == "image" else _emoji_texts(source)
        kept: list[Sample] = []
        for s in rows:
            value = replacer(s)
            if value is None:
                continue
            for m in ("image", "audio", "video"):  # the other modalities' files, byte for byte
                rel = getattr(s, m)
                if rel is not None and m != shift:
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    if not (tmp / rel).exists():
                        shutil.copyfile(base / rel, tmp / rel)
            meta = {**s.meta, "shifted": shift, "shift_source": choices[source].split(" (")[0]}
            kept.append(replace(s, root=None, meta=meta, split="test", **{shift: value}))
        if finish is not None:
            finish()
        if not kept:
            raise DatasetFormatError(f"{base}: no test row has a {shift} source for this shift")
        write_dataset(tmp, kept)
        record = {
            "benchmark": f"{bench}-shifted",
            "base": str(base),
            "base_build": {k: info.get(k) for k in ("benchmark", "setting", "seed")},
            "shift": shift,
            "seed": seed,
            "rows": len(kept),
            "base_rows": len(rows),
            "left_out": len(rows) - len(kept),
            "source_name": source,
            "source": choices[source],
            "labels": sorted({s.label for s in kept}),
            "build_seconds": round(time.time() - t0, 1),
        }
        if shift == "text":
            record["empty_texts"] = sum(s.text == "" for s in kept)
        (tmp / "build_info.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return Path(out_dir).expanduser().resolve()
