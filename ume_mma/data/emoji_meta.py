"""Emoji text and grouping for emoji-vl: CLDR keywords minus name words, and variant groups."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from ume_mma.errors import MissingDependencyError

ZWJ, VS16 = "\u200d", "\ufe0f"
PERSON_CODEPOINTS = {"1F468", "1F469", "1F9D1", "1F466", "1F467", "1F9D2", "1F9D3", "1F474", "1F475"}
PERSON_WORDS = {
    "man",
    "woman",
    "person",
    "men",
    "women",
    "people",
    "boy",
    "girl",
    "child",
    "adult",
    "old",
    "older",
    "male",
    "female",
    "two",
    "and",
}
STOP_WORDS = {"a", "an", "the", "of", "with", "in", "on", "and", "for", "to", "at", "sign", "symbol"}


def cldr_dir() -> Path:
    return Path(os.environ.get("UME_MMA_CLDR_DIR", "/usr/share/unicode/cldr/common"))


def load_cldr(lang: str = "en") -> tuple[dict[str, list[str]], dict[str, str]]:
    """``(keywords, tts names)`` keyed by the emoji string without VS16 (annotations + derived)."""
    files = [cldr_dir() / sub / f"{lang}.xml" for sub in ("annotations", "annotationsDerived")]
    if not files[0].is_file():
        raise MissingDependencyError(
            f"CLDR emoji annotations not found ({files[0]}): run `sudo apt-get install -y unicode-cldr-core` "
            "(or set UME_MMA_CLDR_DIR to a CLDR 'common' folder)"
        )
    keywords: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for f in files:
        if not f.is_file():
            continue
        for node in ET.parse(f).getroot().iter("annotation"):
            cp, text = (node.get("cp") or "").replace(VS16, ""), (node.text or "").strip()
            if node.get("type") == "tts":
                names[cp] = text
            else:
                keywords[cp] = [k.strip() for k in text.split("|") if k.strip()]
    return keywords, names


def emoji_string(unified: str) -> str:
    return "".join(chr(int(h, 16)) for h in unified.split("-"))


def words(text: str) -> set[str]:
    out = set()
    for w in re.findall(r"[^\W_]+", text.lower()):
        out.add(w)
        if len(w) > 3 and w.endswith("s"):
            out.add(w[:-1])
    return out


def name_words(entry: dict[str, Any], tts: str | None) -> set[str]:
    """Words of every name the emoji goes by (CLDR name, Unicode name, short names), minus stop words."""
    text = " ".join([tts or "", entry.get("name") or "", *(entry.get("short_names") or [])])
    return words(text) - STOP_WORDS


def keywords_for(entry: dict[str, Any], cldr: dict[str, list[str]]) -> tuple[list[str], str]:
    """CLDR keywords of an emoji, or the union of its ZWJ components' keywords. Returns (tags, source)."""
    s = emoji_string(entry["unified"]).replace(VS16, "")
    if s in cldr:
        return cldr[s], "cldr"
    parts = [p for p in s.split(ZWJ) if p in cldr]
    if ZWJ in s and parts:
        return sorted({k for p in parts for k in cldr[p]}), "cldr-components"
    return [], "none"


def text_without_name(tags: list[str], banned: set[str]) -> str:
    """The tags with every word of the emoji's names removed, joined by ", " (may be empty: flags).

    ``["face", "grin", "grinning face"]`` for "grinning face" -> ``"grin"``.
    """
    kept = []
    for tag in tags:
        rest = " ".join(w for w in re.findall(r"[^\s]+", tag) if not (words(w) & (banned | STOP_WORDS)))
        if re.search(r"[^\W_]", rest):
            kept.append(rest)
    return ", ".join(dict.fromkeys(kept))


def group_key(name: str) -> str:
    """Name without gender/person words and 'facing right': 'man technologist' -> 'technologist'."""
    base = re.sub(r"\bfacing right\b", " ", name.lower())
    toks = [w for w in re.findall(r"[^\W_]+", base) if w not in PERSON_WORDS]
    return " ".join(toks) or "person"


def emoji_groups(entries: list[dict[str, Any]], names: dict[str, str]) -> dict[str, str]:
    """unified -> group id. One group: same name key (gender/ZWJ variants), obsoletes links,
    and a ZWJ sequence with its first (non-person) code point (e.g. black cat + cat)."""
    parent = {e["unified"]: e["unified"] for e in entries}

    def find(u: str) -> str:
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    def union(a: str, b: str) -> None:
        if a in parent and b in parent:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)

    by_key: dict[str, str] = {}
    by_first: dict[str, str] = {
        e["unified"].split("-")[0]: e["unified"] for e in entries if ZWJ not in emoji_string(e["unified"])
    }
    for e in entries:
        u = e["unified"]
        tts = names.get(emoji_string(u).replace(VS16, ""), e["name"])
        key = group_key(tts)
        union(u, by_key.setdefault(key, u))
        for other in (e.get("obsoletes"), e.get("obsoleted_by")):
            if other:
                union(u, other)
        first = u.split("-")[0]
        if "200D" in u.split("-") and first not in PERSON_CODEPOINTS and first in by_first:
            union(u, by_first[first])
    return {u: find(u) for u in parent}
