"""emoji-vl: an image + text benchmark; label = the Unicode emoji category (9, "Component" dropped).

Images: 64x64 emoji PNGs of npm ``emoji-datasource-twitter@16.0.0`` (train/val, and in-style
test) and ``emoji-datasource-google@16.0.0`` (cross-style test), composited on white.
Text: English CLDR keywords (Debian ``unicode-cldr-core``) minus every tag that shares a word
with the emoji's names (the name leaks the label). Flags and families get an EMPTY text: a
present, empty text. Skin-tone variants are not included (base emoji only). Gender / ZWJ /
obsoleted variants of one emoji share a ``group``; groups are split 70/10/20 per category.
``test`` rows come in two styles: ``meta.style == "google"`` (cross-style) and ``"twitter"``
(in-style); train and val are twitter only.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ume_mma.data.emoji_meta import (
    VS16,
    emoji_groups,
    emoji_string,
    group_key,
    keywords_for,
    load_cldr,
    name_words,
    text_without_name,
)
from ume_mma.data.format import SPLITS, Sample, write_dataset
from ume_mma.data.sources import npm_package, staged_output

STYLES = {"twitter": "emoji-datasource-twitter@16.0.0", "google": "emoji-datasource-google@16.0.0"}
TRAIN_STYLE, CROSS_STYLE = "twitter", "google"
FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}
IMAGE_SIZE = 64


def emoji_package(style: str, fetch: bool = True) -> Path:
    """``$UME_MMA_EMOJI_<STYLE>_DIR`` or ``~/.cache/ume_mma/emoji-<style>/package`` (npm pack if allowed)."""
    return npm_package(
        STYLES[style], f"UME_MMA_EMOJI_{style.upper()}_DIR", f"emoji-{style}", f"img/{style}/64", fetch=fetch
    )


def split_groups(groups: dict[str, str], categories: dict[str, str], seed: int) -> dict[str, str]:
    """group -> split, about 70/10/20 of the emoji of each category (category of the group's root)."""
    size = Counter(groups.values())
    per_cat: dict[str, list[str]] = defaultdict(list)
    for g in size:
        per_cat[categories[g]].append(g)
    rng = np.random.default_rng([seed, 11])
    out = {}
    for cat in sorted(per_cat):
        gs = sorted(per_cat[cat])
        gs = [gs[i] for i in rng.permutation(len(gs))]
        gs.sort(key=lambda g: -size[g])  # big groups first (stable: random among equals)
        total = sum(size[g] for g in gs)
        filled = dict.fromkeys(SPLITS, 0)
        for g in gs:
            s = max(SPLITS, key=lambda s: FRACTIONS[s] * total - filled[s])
            out[g] = s
            filled[s] += size[g]
    return out


def _image(path: Path) -> Image.Image:
    with Image.open(path) as im:
        rgba = im.convert("RGBA")
    if rgba.size != (IMAGE_SIZE, IMAGE_SIZE):
        rgba = rgba.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def build_emoji_vl(
    out_dir: str | os.PathLike[str], seed: int = 0, limit: int | None = None, progress: bool = True
) -> Path:
    """Build emoji-vl into ``out_dir``; ``limit`` keeps that many emoji (seeded, before splitting)."""
    t0 = time.time()
    packages = {style: emoji_package(style) for style in STYLES}
    keywords, tts = load_cldr("en")
    with (packages[TRAIN_STYLE] / "emoji.json").open(encoding="utf-8") as fh:
        entries = [e for e in json.load(fh) if e["category"] != "Component"]
    entries.sort(key=lambda e: e["sort_order"])
    groups = emoji_groups(entries, tts)
    by_unified = {e["unified"]: e for e in entries}
    group_names = {
        g: group_key(tts.get(emoji_string(g).replace(VS16, ""), by_unified[g]["name"])) for g in set(groups.values())
    }
    if limit is not None:
        keep = np.random.default_rng([seed, 10]).permutation(len(entries))[:limit]
        entries = [entries[i] for i in sorted(keep)]
    split_of_group = split_groups(
        {e["unified"]: groups[e["unified"]] for e in entries},
        {g: by_unified[g]["category"] for g in set(groups.values())},
        seed,
    )

    rows: list[Sample] = []
    with staged_output(out_dir) as tmp:
        for e in tqdm(entries, desc="emoji", disable=not progress):
            u = e["unified"]
            name = tts.get(emoji_string(u).replace(VS16, ""), e["name"].lower())
            tags, source = keywords_for(e, keywords)
            text = text_without_name(tags, name_words(e, name))
            split = split_of_group[groups[u]]
            styles = [TRAIN_STYLE, CROSS_STYLE] if split == "test" else [TRAIN_STYLE]
            for style in styles:
                src = packages[style] / "img" / style / "64" / e["image"]
                if not src.is_file():
                    continue  # this style has no drawing of this emoji
                rel = f"images/{style}/{u.lower()}.png"
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                _image(src).save(tmp / rel)
                meta: dict[str, Any] = {
                    "style": style,
                    "emoji": emoji_string(u),
                    "unified": u,
                    "name": name,
                    "subcategory": e["subcategory"],
                    "text_source": source,
                }
                rows.append(
                    Sample(
                        label=e["category"],
                        image=rel,
                        text=text,
                        split=split,
                        group=group_names[groups[u]],
                        id=f"{style}-{u.lower()}",
                        meta=meta,
                    )
                )
        write_dataset(tmp, rows)
        counts = Counter((r.split, r.meta["style"]) for r in rows)
        info = {
            "benchmark": "emoji-vl",
            "seed": seed,
            "limit": limit,
            "emoji": len(entries),
            "rows": {f"{s}/{st}": n for (s, st), n in sorted(counts.items())},
            "labels": sorted({r.label for r in rows}),
            "empty_texts": sum(r.text == "" for r in rows),
            "text": "CLDR en keywords minus tags sharing a word with the emoji's names",
            "sources": [*STYLES.values(), "unicode-cldr-core (annotations/en.xml)"],
            "build_seconds": round(time.time() - t0, 1),
        }
        (tmp / "build_info.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return Path(out_dir).expanduser().resolve()
