"""Prints: the geometry of a tiled scale, how tiles are blended, what is left of the seams, tiled targets.

A scale with more pixels than ``tiles.max_pixels`` is not optimised whole (:mod:`nst.plan` marks it;
:func:`nst.engine.run_plan` drives it). For such a scale:

* its **style targets** are computed once, for the whole style image at that scale, tile by tile
  (:mod:`nst.tiled_targets`) — every image tile then shares that one style;
* the image is cut into tiles of one shape (``tiles.size``) overlapping by ``tiles.overlap``
  (:func:`grid`); each tile is optimised on one objective whose content targets (and doodle masks)
  are refilled per tile, so the compiled step is traced once per scale and reused;
* tiles are done one after another and each is blended into the image over its overlap with the
  tiles before it by a raised-cosine ramp (:func:`window`): each pixel ends up a convex combination
  of tile results (weights sum to 1);
* the grid is passed over ``tiles.passes`` times, every other pass shifted by half a stride, so no
  seam stays where a previous pass left it;
* to run a pass's tiles in parallel (:mod:`nst.tile_pool`), :func:`colour_phases` splits it into phases
  of tiles that do not overlap, each tile ramping on the sides facing tiles of earlier phases.

Memory is bounded by the tile size: only the image, its content and its style at the final size
(numpy arrays) scale with the print. :func:`seam_ratio` measures what is left of the seams. This
module is geometry on numpy arrays: it knows nothing of terms or TensorFlow and imports nothing that imports it. Nothing here reads or
writes files.
"""

from __future__ import annotations

import numpy as np

from nst.config import TilesConfig

Box = tuple[int, int]  # (y0, x0) of a tile; every tile of a scale has one shape (th, tw)

def tile_shape(hw: tuple[int, int], tiles: TilesConfig) -> tuple[int, int]:
    return min(tiles.size, hw[0]), min(tiles.size, hw[1])


# ---------------------------------------------------------------- geometry


def starts(length: int, tile: int, overlap: int, offset: int = 0) -> list[int]:
    """Tile starts along one axis covering [0, length): neighbours overlap by at least ``overlap``.

    ``offset`` (0 <= offset < stride) shifts the inner tiles; the first starts at 0 and the last ends
    at ``length`` whatever the offset, so every pass covers every pixel with tiles of one size.
    """
    if tile >= length:
        return [0]
    stride = tile - overlap
    out, s = [0], (offset or stride)
    while s + tile < length:
        out.append(s)
        s += stride
    out.append(length - tile)
    return sorted(set(out))


def grid(hw: tuple[int, int], tiles: TilesConfig, pass_index: int = 0) -> list[Box]:
    """Tile origins (y0, x0) in raster order for one pass; odd passes shift by half a stride."""
    th, tw = tile_shape(hw, tiles)
    stride = tiles.size - tiles.overlap
    offset = stride // 2 if pass_index % 2 else 0
    return [(y, x) for y in starts(hw[0], th, tiles.overlap, offset)
            for x in starts(hw[1], tw, tiles.overlap, offset)]


def ramp(n: int, overlap: int) -> np.ndarray:
    """(n,) raised cosine rising from ~0 to 1 over the first ``overlap`` px, then 1."""
    r = np.ones(n, np.float32)
    k = min(overlap, n)
    r[:k] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(k) + 0.5) / overlap)
    return r


Sides = tuple[bool, bool, bool, bool]  # ramp on the (top, bottom, left, right) side of a tile


def window(box: Box, shape: tuple[int, int], overlap: int, sides: Sides | None = None) -> np.ndarray:
    """(th, tw) blend weight of a tile: ramps on the sides facing tiles already in the image.

    ``sides`` = (top, bottom, left, right): which sides ramp (from ~0 at that edge to 1 ``overlap`` px in).
    By default, raster order's: the tiles left of and above a tile are already in the image, so it ramps
    on its left and top sides (inside the image); the tile takes ``w`` and the image keeps ``1 - w``. A
    side facing a tile done later (or the image's edge) keeps weight 1: the later tile ramps over it.
    A parallel pass (:func:`colour_sides`) ramps on whichever sides face tiles of earlier colours.
    """
    (y0, x0), (th, tw) = box, shape
    top, bottom, left, right = sides if sides is not None else (y0 > 0, False, x0 > 0, False)
    return _axis(th, overlap, top, bottom)[:, None] * _axis(tw, overlap, left, right)[None, :]


def _axis(n: int, overlap: int, first: bool, last: bool) -> np.ndarray:
    w = ramp(n, overlap) if first else np.ones(n, np.float32)
    return w * ramp(n, overlap)[::-1] if last else w


def blend(canvas: np.ndarray, tile: np.ndarray, box: Box, overlap: int, sides: Sides | None = None) -> None:
    """Blend ``tile`` (th, tw, C) into ``canvas`` at ``box`` in place (w * tile + (1 - w) * canvas)."""
    th, tw = tile.shape[:2]
    region = canvas[box[0]:box[0] + th, box[1]:box[1] + tw]
    w = window(box, (th, tw), overlap, sides)[..., None]
    region += w * (tile - region)


# ---------------------------------------------------------------- colours: tiles of one pass run in parallel


def axis_colours(origins: list[int], tile: int) -> list[int]:
    """Colour sorted 1-D tile starts so that tiles of one colour never overlap (greedy: the fewest colours).

    Inner tiles are a stride apart, so two colours (parity) usually do; but the end tiles sit closer (the
    last tile ends at the image's edge, an odd pass's second starts half a stride in), and where three
    tiles share a pixel a third colour is needed: parity alone would let overlapping tiles run together.
    """
    colours: list[int] = []
    for i, s in enumerate(origins):
        taken = {colours[j] for j in range(i) if origins[j] + tile > s}
        colours.append(next(c for c in range(len(origins)) if c not in taken))
    return colours


def colour_phases(hw: tuple[int, int], tiles: TilesConfig, pass_index: int) -> list[list[tuple[int, Box, Sides]]]:
    """One pass's tiles as phases of mutually non-overlapping tiles, run one phase after another.

    Each entry is (index in :func:`grid`'s raster order, box, sides to ramp). A tile's colour is the pair
    (row colour, column colour), phases in lexicographic order; a tile ramps on a side when the adjacent
    tile on that side (same column above/below, same row left/right) is of an earlier phase. A diagonal
    neighbour of an earlier phase implies the one above or below is too, so its corner lies in a ramp.
    """
    th, tw = tile_shape(hw, tiles)
    boxes = grid(hw, tiles, pass_index)
    ys, xs = sorted({y for y, _ in boxes}), sorted({x for _, x in boxes})
    cy, cx = axis_colours(ys, th), axis_colours(xs, tw)
    nx = max(cx) + 1
    row, col = {y: i for i, y in enumerate(ys)}, {x: j for j, x in enumerate(xs)}

    def colour(i: int, j: int) -> int:
        return cy[i] * nx + cx[j]

    phases: dict[int, list] = {}
    for k, (y, x) in enumerate(boxes):
        i, j = row[y], col[x]
        c = colour(i, j)
        sides = (i > 0 and colour(i - 1, j) < c, i + 1 < len(ys) and colour(i + 1, j) < c,
                 j > 0 and colour(i, j - 1) < c, j + 1 < len(xs) and colour(i, j + 1) < c)
        phases.setdefault(c, []).append((k, (y, x), sides))
    return [phases[c] for c in sorted(phases)]


# ---------------------------------------------------------------- the seam check


def gradient_magnitude(image: np.ndarray) -> np.ndarray:
    """(H-1, W-1) |grad| of the luma of an (H, W, 3) image, forward differences."""
    y = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    dx, dy = np.diff(y, axis=1)[:-1], np.diff(y, axis=0)[:, :-1]
    return np.sqrt(dx * dx + dy * dy)


def border_lines(hw: tuple[int, int], tiles: TilesConfig, passes: int) -> tuple[list[int], list[int]]:
    """(rows, cols) where tile edges lie inside the image, over all passes."""
    th, tw = tile_shape(hw, tiles)
    rows, cols = set(), set()
    for p in range(passes):
        for y, x in grid(hw, tiles, p):
            rows |= {e for e in (y, y + th) if 0 < e < hw[0]}
            cols |= {e for e in (x, x + tw) if 0 < e < hw[1]}
    return sorted(rows), sorted(cols)


def seam_ratio(image: np.ndarray, rows: list[int], cols: list[int], width: int = 2) -> float:
    """Mean gradient magnitude on the tile borders (``width`` px either side) / the image-wide mean.

    A hard seam raises it (a step along the line); a cross-fade of mismatched tiles lowers it (blur).
    1.0 = the borders look like the rest of the image.
    """
    g = gradient_magnitude(image)
    on = np.zeros(g.shape, bool)
    for r in rows:
        on[max(0, r - width):r + width] = True
    for c in cols:
        on[:, max(0, c - width):c + width] = True
    if not on.any():
        return 1.0
    return float(g[on].mean() / max(g.mean(), 1e-12))


def crop(image: np.ndarray, box: Box, shape: tuple[int, int]) -> np.ndarray:
    return image[box[0]:box[0] + shape[0], box[1]:box[1] + shape[1]]
