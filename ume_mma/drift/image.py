"""Image drift families (``PIL.Image`` in, an image of the same size and mode out; RGB and L, as decoded).

Severity ``s`` in (0, 1] maps to each family's parameter as its description says; 0 is the identity.
Fitting families: blur, noise, contrast, JPEG. Held out: down-/up-sampling, gamma, stroke width, crops.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageFilter

from ume_mma.drift.base import register_drift


def _as_array(im: Image.Image) -> np.ndarray:
    """``float32 [H, W, C]`` in 0..255 (RGB or L; other modes are converted to RGB)."""
    im = im if im.mode in ("RGB", "L") else im.convert("RGB")
    a = np.asarray(im, dtype=np.float32)
    return a[:, :, None] if a.ndim == 2 else a


def _as_image(a: np.ndarray, like: Image.Image) -> Image.Image:
    """``a`` ``[H, W, C]`` clipped to 0..255 as an image of ``like``'s mode (L or RGB)."""
    a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    out = Image.fromarray(a[:, :, 0], mode="L") if a.shape[2] == 1 else Image.fromarray(a, mode="RGB")
    return out if out.mode == like.mode or like.mode not in ("RGB", "L") else out.convert(like.mode)


def _mode(im: Image.Image) -> Image.Image:
    return im if im.mode in ("RGB", "L") else im.convert("RGB")


@register_drift("image.downsample", "heldout", "down- then up-sampling (bilinear): the side shrinks to 1 - 0.85 s")
def downsample(im: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    im = _mode(im)
    w, h = im.size
    small = (max(2, min(w - 1, round(w * (1 - 0.85 * s)))), max(2, min(h - 1, round(h * (1 - 0.85 * s)))))
    return im.resize(small, Image.Resampling.BILINEAR).resize((w, h), Image.Resampling.BILINEAR)


@register_drift("image.blur", "fit", "Gaussian blur, radius 0.08 s times the shorter side")
def blur(im: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    return _mode(im).filter(ImageFilter.GaussianBlur(radius=0.08 * s * min(im.size)))


@register_drift("image.noise", "fit", "additive Gaussian pixel noise, standard deviation 100 s (of 255)")
def noise(im: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    a = _as_array(im)
    return _as_image(a + rng.standard_normal(a.shape).astype(np.float32) * 100.0 * s, im)


@register_drift("image.contrast", "fit", "contrast towards the mean grey: pixels x -> m + (x - m)(1 - 0.85 s)")
def contrast(im: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    a = _as_array(im)
    m = a.mean()
    return _as_image(m + (a - m) * (1 - 0.85 * s), im)


@register_drift("image.gamma", "heldout", "gamma curve 3 ** (+-s) (the sign drawn from the seed)")
def gamma(im: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    g = 3.0 ** (s if rng.random() < 0.5 else -s)
    return _as_image(255.0 * (_as_array(im) / 255.0) ** g, im)


@register_drift("image.jpeg", "fit", "JPEG at quality 90 - 85 s (5 at s = 1)")
def jpeg(im: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    im = _mode(im)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=max(1, round(90 - 85 * s)))
    with Image.open(io.BytesIO(buf.getvalue())) as out:
        return out.convert(im.mode)


def _stroke(im: Image.Image, s: float, thicker: bool, px_per_step: int) -> Image.Image:
    """``t = s * side / px_per_step`` 3x3 max/min filters: ``floor(t)`` of them, blended with one more by the
    fraction of ``t``. The strokes are the side away from the border's median (light strokes on dark, as MNIST,
    or dark on light, as emoji on white)."""
    im = _mode(im)
    a = _as_array(im).mean(2)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    light_strokes = float(np.median(border)) < float(a.mean())
    grow = ImageFilter.MaxFilter(3) if light_strokes == thicker else ImageFilter.MinFilter(3)
    t = s * max(1.0, min(im.size) / px_per_step)
    for _ in range(math.floor(t)):
        im = im.filter(grow)
    frac = t - math.floor(t)
    if frac > 0:
        im = Image.blend(im, im.filter(grow), frac)
    return im


@register_drift("image.stroke-thick", "heldout", "thicker strokes: s * side / 14 3x3 dilations (fractions blended)")
def stroke_thick(im: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    return _stroke(im, s, thicker=True, px_per_step=14)


@register_drift("image.stroke-thin", "heldout", "thinner strokes: s * side / 28 3x3 erosions (fractions blended)")
def stroke_thin(im: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    return _stroke(im, s, thicker=False, px_per_step=28)


@register_drift("image.crop", "heldout", "a crop keeping 1 - 0.5 s of each side (placed by the seed), resized back")
def crop(im: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    im = _mode(im)
    w, h = im.size
    cw, ch = min(w - 1, round(w * (1 - 0.5 * s))), min(h - 1, round(h * (1 - 0.5 * s)))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return im.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.Resampling.BILINEAR)
