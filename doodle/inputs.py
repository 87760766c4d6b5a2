"""A doodle run's inputs from disk: style image, content photo, semantic maps -> a :class:`Scene` and its labels.

Champandard 2016 (arXiv:1603.01768). Maps pair with their image by the ``_sem.png`` suffix when not given
(``Monet.jpg`` <-> ``Monet_sem.png``). The output's layout map is ``doodle.target_map`` (the doodle) or,
with a content photo, ``doodle.content_map`` / the photo's paired map. A map is fitted to its image at the
image's own resolution (scale-only differences: nearest-neighbour resize, noted; other aspect ratios: an
error). ``auto`` for the style or content map makes it (doodle/automap.py) in the other map's colours,
regions paired by VGG feature similarity (doodle/automatch.py); both ``auto``: both made, then matched.
Labels are found on the maps as painted, then turned into one-hot masks and area-resized to the working
sizes. Every refusal is a :class:`UserError`, raised before any output is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from doodle.automatch import auto_pair
from doodle.config import AUTO, DoodleConfig
from doodle.engine import Scene
from doodle.maps import LabelSet, find_labels, label_masks, load_map, match_map_to_image, pair_map_path
from nst.errors import UserError
from nst.images import read_image, resize, target_size
from nst.masks import resize_masks


@dataclass
class Inputs:
    scene: Scene
    labels: LabelSet | None  # None: no maps, texture synthesis / plain style transfer
    map_names: list[str] = field(default_factory=list)  # the LabelSet's map names, style first
    notes: list[str] = field(default_factory=list)  # log lines: pairing, resizing, palette warnings
    init_file: np.ndarray | None = None


def _given(value: str) -> Path | str:
    """A configured map: a file, or the literal AUTO (made by doodle/automap.py)."""
    return AUTO if value == AUTO else Path(value)


def _map_paths(cfg: DoodleConfig, notes: list[str]) -> tuple[Path | None, Path | None, str]:
    """(style map, layout map, the layout map's role name); pairs by ``_sem.png``; drops a lone paired map."""
    d = cfg.doodle
    style_map = _given(d.style_map) if d.style_map else pair_map_path(cfg.style)
    if d.target_map:
        layout, role, explicit = Path(d.target_map), "target_map", True
    elif cfg.content:
        layout, role, explicit = (_given(d.content_map) if d.content_map else pair_map_path(cfg.content),
                                  "content_map", bool(d.content_map))
    else:
        layout, role, explicit = None, "target_map", False
    if (style_map is None) == (layout is None):
        return style_map, layout, role
    if style_map is None:
        if explicit:
            raise UserError(f"doodle.{role} is set but the style image has no map: set doodle.style_map or put "
                            f"{Path(cfg.style).stem}_sem.png beside {Path(cfg.style).name}")
        notes.append(f"note: {layout.name} found but the style image has no map; running without maps")
        return None, None, role
    if d.style_map:
        raise UserError("doodle.style_map is set but the output has no map: set doodle.target_map (the doodle)"
                        + (" or doodle.content_map" if cfg.content else ""))
    notes.append(f"note: {style_map.name} found but there is no target map (doodle.target_map); running "
                 f"without maps: {'plain style transfer' if cfg.content else 'texture synthesis'}")
    return None, None, role


def _load(path: Path, role: str) -> np.ndarray:
    """Read a map; errors name the config key it came from."""
    try:
        return load_map(path)
    except UserError as exc:
        raise UserError(f"doodle.{role}: {exc}") from None


def _fit(map_rgb: np.ndarray, image_hw: tuple[int, int], name: str, path: Path, notes: list[str]) -> np.ndarray:
    fitted, note = match_map_to_image(map_rgb, image_hw, f"{name} ({path.name})")
    if note:
        notes.append(f"note: {note}")
    return fitted


def load_inputs(cfg: DoodleConfig) -> Inputs:
    """Read, check and size everything a run needs; raises UserError on anything unusable."""
    limit, notes = cfg.image.max_input_pixels, []
    raw_style = read_image(cfg.style, "style image", limit)
    raw_content = read_image(cfg.content, "content image", limit) if cfg.content else None
    style_path, layout_path, role = _map_paths(cfg, notes)
    maps: dict[str, np.ndarray] = {}
    if AUTO in (style_path, layout_path):
        hand_style = None if style_path == AUTO else _fit(_load(style_path, "style_map"), raw_style.shape[:2],
                                                         "style_map", style_path, notes)
        hand_content = None if layout_path == AUTO else _fit(_load(layout_path, role), raw_content.shape[:2], role,
                                                           layout_path, notes)
        maps["style_map"], maps[role], auto_notes = auto_pair(raw_style.astype(np.float32), hand_style,
                                                               raw_content.astype(np.float32), hand_content,
                                                               seed=cfg.seed)
        notes += auto_notes
    elif style_path is not None:
        maps["style_map"] = _fit(_load(style_path, "style_map"), raw_style.shape[:2], "style_map", style_path, notes)
        layout = _load(layout_path, role)
        if raw_content is not None:
            layout = _fit(layout, raw_content.shape[:2], role, layout_path, notes)
        elif isinstance(cfg.image.size, list):
            w, h = cfg.image.size
            layout = _fit(layout, (h, w), role, layout_path, notes)
        maps[role] = layout

    # output size: the content's aspect, else the layout map's, else the style's
    shape = (raw_content if raw_content is not None else maps.get(role, raw_style)).shape[:2]
    out_w, out_h = target_size(shape, cfg.image.size)
    content = None if raw_content is None else resize(raw_content, (out_w, out_h), f"content image "
                                                                                   f"{Path(cfg.content).name}")
    long_side = max(1, round(max(out_w, out_h) * cfg.image.style_scale))
    sw, sh = target_size(raw_style.shape[:2], long_side)
    style = resize(raw_style, (sw, sh), f"style image {Path(cfg.style).name}")
    notes.append(f"style {Path(cfg.style).name}: {raw_style.shape[1]}x{raw_style.shape[0]} -> {sw}x{sh}")
    init = None
    if cfg.init.method == "file":
        init = resize(read_image(cfg.init.path, "init image", limit), (out_w, out_h), "init image")

    if not maps:
        return Inputs(Scene.without_maps(style, (out_h, out_w), content), None, [], notes, init)
    paths = {"style_map": style_path, role: layout_path}
    lab = cfg.doodle.labels
    label_set, warnings = find_labels(maps, lab.mode, lab.count, min_share=lab.min_share,
                                      close_distance=lab.close_distance, paths=paths)
    notes += [f"warning: {w}" for w in warnings]
    k = len(label_set.palette)
    style_masks = resize_masks(label_masks(label_set.maps["style_map"], k), (sh, sw))  # (sh, sw, K)
    target_masks = resize_masks(label_masks(label_set.maps[role], k), (out_h, out_w))  # (H, W, K)
    return Inputs(Scene(style, style_masks, target_masks, content), label_set, ["style_map", role], notes, init)
