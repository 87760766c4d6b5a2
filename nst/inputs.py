"""A style-transfer run's inputs from disk: the content photo, the style images, an optional init image.

Sizes follow the config: the content at ``image.size``; each style at ``image.style_scale`` x the content's
long side; an init image at the content's size. Gatys et al. 2017's controls (:func:`load_controls`): the
style entries' masks at the content's size, and each scale's own styles. Every refusal is a
:class:`nst.errors.UserError`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nst.cli import say
from nst.config import NSTConfig
from nst.images import load_image, read_image, resize, target_size
from nst.region_masks import StyleSet, region_masks


def load_inputs(cfg: NSTConfig, log=say) -> tuple[np.ndarray, list[tuple[np.ndarray, float]], np.ndarray | None]:
    """(content, [(style, weight)], init image or None), float32 RGB 0..255."""
    limit = cfg.image.max_input_pixels
    content = load_image(cfg.content, cfg.image.size, "content image", limit)
    styles = load_styles(cfg, max(content.shape[:2]), log)
    init = None
    if cfg.init.method == "file":
        init = resize(read_image(cfg.init.path, "init image", limit), (content.shape[1], content.shape[0]),
                      "init image")
    return content, styles, init


def load_styles(cfg: NSTConfig, content_long_side: int, log=say, entries=None,
                what: str = "style image") -> list[tuple[np.ndarray, float]]:
    """[(style, weight)], each resized to ``image.style_scale`` x the content's long side (video frames too);
    ``entries``: another style list than the run's (a scale's)."""
    long_side = max(1, round(content_long_side * cfg.image.style_scale))
    styles = []
    for s in cfg.style if entries is None else entries:
        raw = read_image(s.path, what, cfg.image.max_input_pixels)
        img = resize(raw, target_size(raw.shape[:2], long_side), f"style image {Path(s.path).name}")
        log(f"style {Path(s.path).name}: {raw.shape[1]}x{raw.shape[0]} -> {img.shape[1]}x{img.shape[0]}, "
            f"weight {s.weight:g}")
        styles.append((img, s.weight))
    return styles


def load_controls(cfg: NSTConfig, content: np.ndarray, log=say):
    """(masks of the run's styles (H, W, K) or None, [a StyleSet per scale, or None: the run's styles]).

    The masks are at the content's size (:mod:`nst.region_masks`); a scale's own styles are loaded like the
    run's, with their own masks.
    """
    hw, limit = content.shape[:2], cfg.image.max_input_pixels
    masks = region_masks(cfg.style, hw, "style", limit)
    sets = []
    for i, scale in enumerate(cfg.scales):
        if not scale.style:
            sets.append(None)
            continue
        styles = load_styles(cfg, max(hw), log, scale.style, f"scales[{i}].style image")
        sets.append(StyleSet(styles, region_masks(scale.style, hw, f"scales[{i}].style", limit)))
    return masks, sets
