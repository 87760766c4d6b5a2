"""Spatial control's masks at the content's size, from each style entry's ``mask`` (Gatys et al. 2017).

A mask is an image (white = this style's region, grey = partly; or a label map and one ``color``) resized to
the content by area averaging, or a split of the content (``horizontal`` / ``vertical`` at a fraction, the
border ramped over ``feather``). Entries without a mask, when others have one, share what the masks leave:
``rest = clip(1 - sum of the masks, 0, 1)``. Every refusal is a one-line :class:`nst.errors.UserError`:
a mask not readable, of another aspect ratio than the content, or selecting nothing. The result is one
(H, W, K) float32 array in [0, 1], a channel per style entry, which :mod:`nst.masks` carries through the
network; a :class:`StyleSet` holds it with its styles. The masks are read here and nowhere else, without
TensorFlow (the CLI refuses bad input before that slow import).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from nst.config import MaskSpec, StyleImage
from nst.errors import UserError
from nst.images import read_image

Styles = list[tuple[np.ndarray, float]]

# A label map's pixel belongs to a colour within this many levels on every channel (JPEG maps are not flat).
COLOR_TOLERANCE = 24
# A mask's aspect ratio may differ from the content's by this fraction (each was rounded to whole pixels).
ASPECT_TOLERANCE = 0.02
# A region must cover at least this many content pixels (mask sum) to be a region.
MIN_PIXELS = 1.0


@dataclass(frozen=True)
class StyleSet:
    """The styles a scale matches, [(image, weight)], and with spatial control their (H, W, K) region masks at
    the content's size (one channel per style; None: every style everywhere, blended by weight)."""

    styles: Styles
    masks: np.ndarray | None = None


def area_resize(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(h, w) -> (H, W) float32 by area averaging (PIL's box filter): soft edges, values kept in [0, 1]."""
    if mask.shape == tuple(hw):
        return mask.astype(np.float32)
    img = Image.fromarray(mask.astype(np.float32), mode="F")
    return np.asarray(img.resize((hw[1], hw[0]), Image.BOX), dtype=np.float32)


def split_mask(spec: MaskSpec, hw: tuple[int, int]) -> np.ndarray:
    """(H, W) in [0, 1]: 1 on ``spec.side`` of the border at ``spec.at``, a linear ramp ``feather`` wide."""
    h, w = hw
    n = h if spec.split == "horizontal" else w
    pos = (np.arange(n, dtype=np.float64) + 0.5) / n  # pixel centres as fractions of the side
    ramp = spec.feather
    if ramp > 0:
        inside = np.clip((spec.at - pos) / ramp + 0.5, 0.0, 1.0)  # 1 before the border (top / left), 0 after
    else:
        inside = (pos < spec.at).astype(np.float64)
    if spec.side in ("bottom", "right"):
        inside = 1.0 - inside
    if spec.split == "horizontal":
        return np.broadcast_to(inside[:, None], (h, w)).astype(np.float32)
    return np.broadcast_to(inside[None, :], (h, w)).astype(np.float32)


def image_mask(spec: MaskSpec, hw: tuple[int, int], key: str, max_pixels: int) -> np.ndarray:
    """(H, W) in [0, 1] from a mask image (grey level) or a label map (the pixels of ``spec.color``)."""
    raw = read_image(spec.path, f"{key} image", max_pixels).astype(np.float32)  # (h, w, 3) 0..255
    mh, mw = raw.shape[:2]
    h, w = hw
    if abs((mw / mh) / (w / h) - 1.0) > ASPECT_TOLERANCE:
        raise UserError(f"{key} {Path(spec.path).name} is {mw}x{mh} px (aspect {mw / mh:.3f}), the content "
                        f"{w}x{h} px (aspect {w / h:.3f}): a mask must have the content's aspect ratio")
    if spec.color is not None:
        rgb = np.array([int(spec.color[i:i + 2], 16) for i in (1, 3, 5)], np.float32)
        m = (np.abs(raw - rgb).max(axis=-1) <= COLOR_TOLERANCE).astype(np.float32)
        if not m.any():
            raise UserError(f"{key}: no pixel of {Path(spec.path).name} has the colour {spec.color} "
                            f"(within {COLOR_TOLERANCE} levels)")
    else:
        m = raw.mean(axis=-1) / 255.0  # white = 1
    return area_resize(m, hw)


def region_mask(spec: MaskSpec, hw: tuple[int, int], key: str, max_pixels: int) -> np.ndarray:
    m = split_mask(spec, hw) if spec.split is not None else image_mask(spec, hw, key, max_pixels)
    if float(m.sum()) < MIN_PIXELS:
        raise UserError(f"{key} selects nothing of the {hw[1]}x{hw[0]} px content (an all-black mask?)")
    return np.clip(m, 0.0, 1.0)


def region_masks(styles: list[StyleImage], hw: tuple[int, int], key: str = "style",
                 max_pixels: int = 50_000_000) -> np.ndarray | None:
    """(H, W, K) masks of a style list at the content's size ``hw``, or None when no entry has a mask."""
    if not any(s.mask is not None for s in styles):
        return None
    masks = [None if s.mask is None else region_mask(s.mask, hw, f"{key}[{i}].mask", max_pixels)
             for i, s in enumerate(styles)]
    rest = np.clip(1.0 - sum(m for m in masks if m is not None), 0.0, 1.0).astype(np.float32)
    for i, m in enumerate(masks):
        if m is None:
            if float(rest.sum()) < MIN_PIXELS:
                raise UserError(f"{key}[{i}] has no mask and the other entries' masks cover the whole content: "
                                f"nothing is left for it; give it a mask or remove it")
            masks[i] = rest
    return np.stack(masks, axis=-1)
