"""Text drift families (``str`` in, ``str`` out). Tokens are whitespace-separated words.

Every family draws one uniform number per character or token from the seed and acts where it falls below a
rate growing with the severity (and, for any severity > 0, on the one with the smallest draw), so a stronger
severity keeps every edit of a weaker one and adds more.
Fitting families: typos, dropped tokens. Held out: swapped tokens, case.
"""

from __future__ import annotations

import numpy as np

from ume_mma.drift.base import register_drift


def _hit(u: np.ndarray, rate: float, eligible: np.ndarray | None = None) -> np.ndarray:
    """``u < rate``, plus the eligible element with the smallest draw (severity > 0 always edits something)."""
    hit = u < rate
    ok = np.ones(len(u), bool) if eligible is None else eligible
    if ok.any():
        hit[np.flatnonzero(ok)[np.argmin(u[ok])]] = True
    return hit & ok


ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
NEIGHBOURS = {
    c: "".join(
        ROWS[r2][c2]
        for r2 in range(max(0, r - 1), min(3, r + 2))
        for c2 in range(max(0, i - 1), min(len(ROWS[r2]), i + 2))
        if ROWS[r2][c2] != c
    )
    for r, row in enumerate(ROWS)
    for i, c in enumerate(row)
}


def _keyboard_typo(c: str, rng: np.random.Generator) -> str:
    """One typo on letter ``c``: a neighbouring key (0.5), deleted (0.25) or doubled (0.25); case kept."""
    kind, pick = rng.random(), rng.random()
    near = NEIGHBOURS.get(c.lower(), "")
    if kind < 0.5 and near:
        new = near[int(pick * len(near))]
        return new.upper() if c.isupper() else new
    return "" if kind < 0.75 else c + c


@register_drift(
    "text.typos", "fit", "keyboard typos (neighbour key, deletion, doubling) on 30 s % of letters (one at least)"
)
def typos(text: str, s: float, rng: np.random.Generator) -> str:
    u = rng.random(len(text))
    edits = [_keyboard_typo(c, rng) for c in text]  # drawn for every letter: the same edits at any severity
    hit = _hit(u, 0.3 * s, np.array([c.isalpha() for c in text], bool))
    return "".join(e if h else c for c, e, h in zip(text, edits, hit))


@register_drift("text.drop", "fit", "each token dropped with probability 0.7 s (one at least)")
def drop(text: str, s: float, rng: np.random.Generator) -> str:
    tokens = text.split()
    hit = _hit(rng.random(len(tokens)), 0.7 * s)
    return " ".join(t for t, h in zip(tokens, hit) if not h)


@register_drift("text.swap", "heldout", "tokens shuffled locally: sorted by position + U(0, 1) * s * n_tokens")
def swap(text: str, s: float, rng: np.random.Generator) -> str:
    """A noisy sort (Lample et al., 2018): a token moves past another only if the noise of the spread outweighs
    their distance, so the pairs swapped at a weaker severity stay swapped at a stronger one."""
    tokens = text.split()
    keys = np.arange(len(tokens)) + rng.random(len(tokens)) * s * len(tokens)
    return " ".join(tokens[i] for i in np.argsort(keys, kind="stable"))


@register_drift(
    "text.case", "heldout", "each token's case changed (upper, lower or title) with probability s (one at least)"
)
def case(text: str, s: float, rng: np.random.Generator) -> str:
    tokens = text.split(" ")
    u, kinds = rng.random(len(tokens)), rng.integers(0, 3, len(tokens))
    flips = (str.upper, str.lower, str.title)

    def change(t: str, k: int) -> str:
        for j in range(3):  # the drawn change, or the next one that changes the token
            new = flips[(k + j) % 3](t)
            if new != t:
                return new
        return t

    hit = _hit(u, s, np.array([t.upper() != t.lower() for t in tokens], bool))
    return " ".join(change(t, int(k)) if h else t for t, h, k in zip(tokens, hit, kinds))
