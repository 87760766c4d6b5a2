"""Prints: the last scales of a coarse-to-fine plan optimised in overlapping tiles, in bounded memory.

A scale with more pixels than ``tiles.max_pixels`` is not optimised whole. Instead:

* its **style targets** are computed once, for the whole style image at that scale, by summing each
  style tile's Gram contributions (``F^T F`` and the position count are sums over positions, so a
  tiled sum is the whole image's Gram; each tile carries ``margin`` px of context so its features
  are the whole image's) — every image tile then shares that one style (:func:`tiled_grams`);
* the image is cut into tiles of one shape (``tiles.size``) overlapping by ``tiles.overlap``
  (:func:`grid`); each tile is optimised by the engine (:func:`nst.engine.run_plan`) on one
  objective whose content targets (and doodle masks) are refilled per tile, so the compiled step is
  traced once per scale and reused;
* tiles are done one after another and each is blended into the image over its overlap with the
  tiles before it by a raised-cosine ramp (:func:`window`): each pixel ends up a convex combination
  of tile results (weights sum to 1);
* the grid is passed over ``tiles.passes`` times, every other pass shifted by half a stride, so no
  seam stays where a previous pass left it.

Memory is bounded by the tile size: only the image, its content and its style at the final size
(numpy arrays) scale with the print. :func:`seam_ratio` measures what is left of the seams.
A *task* (:class:`TransferTiles` here, :class:`doodle.tiles.DoodleTiles`) says what a tile's
objective is; this module knows nothing of which terms exist. Nothing here reads or writes files.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np
import tensorflow as tf

from nst.config import OptimizerConfig, TilesConfig
from nst.engine import Build, Extractors, Result, Scale, as_extractors, choose_path, run_plan, upsample
from nst.events import Control, Progress
from nst.features import FeatureExtractor, all_layers
from nst.objective import Objective

Box = tuple[int, int]  # (y0, x0) of a tile; every tile of a scale has one shape (th, tw)

GRID_ALIGN = 16  # 4 poolings: style tiles start on multiples of 16 px so their feature grids are the image's


# ---------------------------------------------------------------- the plan


def is_tiled(hw: tuple[int, int], tiles: TilesConfig) -> bool:
    """Whether a scale of ``hw`` = (h, w) is optimised in tiles."""
    return hw[0] * hw[1] > tiles.max_pixels


def split_plan(plan: list[Scale], tiles: TilesConfig) -> tuple[list[Scale], list[Scale]]:
    """(scales run whole, scales run in tiles): once a scale is tiled, every finer one is too."""
    n = next((i for i, s in enumerate(plan) if is_tiled(s.hw, tiles)), len(plan))
    return plan[:n], plan[n:]


def plan_work(plan: list[Scale], tiles: TilesConfig) -> list[tuple[int, int]]:
    """Per scale (pixels an iteration works on, iterations incl. every tile's): for the progress ETA."""
    out = []
    for s in plan:
        if is_tiled(s.hw, tiles):
            th, tw = tile_shape(s.hw, tiles)
            out.append((th * tw, s.iterations * sum(len(grid(s.hw, tiles, p)) for p in range(tiles.passes))))
        else:
            out.append((s.hw[0] * s.hw[1], s.iterations))
    return out


def describe(plan: list[Scale], tiles: TilesConfig) -> str:
    """The plan for the log: ``512x384 (300 it) -> 4096x3072 (tiles 63+80 x 10 it)``."""
    parts = []
    for s, (_, n) in zip(plan, plan_work(plan, tiles)):
        if is_tiled(s.hw, tiles):
            counts = "+".join(str(len(grid(s.hw, tiles, p))) for p in range(tiles.passes))
            parts.append(f"{s.hw[1]}x{s.hw[0]} (in {tiles.size} px tiles: {counts} x {s.iterations} it)")
        else:
            parts.append(f"{s.hw[1]}x{s.hw[0]} ({s.iterations} it)")
    return " -> ".join(parts)


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


def window(box: Box, shape: tuple[int, int], overlap: int) -> np.ndarray:
    """(th, tw) blend weight of a tile: ramps on the sides facing tiles done before it (left, top).

    Tiles go in raster order, so the tiles left of and above a tile are already in the image; the
    tile takes ``w`` and the image keeps ``1 - w``. At the image's edges and on its right and bottom
    sides (done later by others, who ramp over it) a tile's weight is 1.
    """
    (y0, x0), (th, tw) = box, shape
    wy = ramp(th, overlap) if y0 > 0 else np.ones(th, np.float32)
    wx = ramp(tw, overlap) if x0 > 0 else np.ones(tw, np.float32)
    return wy[:, None] * wx[None, :]


def blend(canvas: np.ndarray, tile: np.ndarray, box: Box, overlap: int) -> None:
    """Blend ``tile`` (th, tw, C) into ``canvas`` at ``box`` in place (w * tile + (1 - w) * canvas)."""
    th, tw = tile.shape[:2]
    region = canvas[box[0]:box[0] + th, box[1]:box[1] + tw]
    w = window(box, (th, tw), overlap)[..., None]
    region += w * (tile - region)


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


# ---------------------------------------------------------------- style targets of a whole image, tile by tile


def pools_before(layer: str, network: str) -> int:
    """How many 2x2 poolings lie before ``layer`` (its features are 1/2^n of the image)."""
    order = all_layers(network)
    return sum(1 for n in order[: order.index(layer)] if n.endswith("pool"))


def feature_tiles(extractor: FeatureExtractor, image: np.ndarray, layers: list[str], tile: int,
                  margin: int) -> Iterator[tuple[dict[str, tf.Tensor], dict[str, tuple[slice, slice]]]]:
    """Yield ({layer: (h, w, C) features of one core}, {layer: (rows, cols) of the core in the whole map}).

    The cores cover the whole image's feature maps exactly once. Each core is computed from a crop with
    ``margin`` px of context (rounded up to 16) on every side, so at the margin's reach its features are
    the whole image's; crops start on multiples of 16 px so every layer's grid lines up.
    """
    h, w = image.shape[:2]
    margin = GRID_ALIGN * math.ceil(margin / GRID_ALIGN)
    step = max(GRID_ALIGN, (tile - 2 * margin) // GRID_ALIGN * GRID_ALIGN)  # core side
    pools = {n: pools_before(n, extractor.network) for n in layers}
    whole = {n: (h >> p, w >> p) for n, p in pools.items()}  # floor at each pooling = shift
    for y0 in range(0, h, step):
        for x0 in range(0, w, step):
            y1, x1 = min(h, y0 + step), min(w, x0 + step)
            cy0, cx0 = max(0, y0 - margin), max(0, x0 - margin)
            feats = extractor(image[None, cy0:min(h, y1 + margin), cx0:min(w, x1 + margin)])
            cores, where = {}, {}
            for n, p in pools.items():
                r0, c0 = y0 >> p, x0 >> p
                r1 = (y1 >> p) if y1 < h else whole[n][0]
                c1 = (x1 >> p) if x1 < w else whole[n][1]
                if r1 <= r0 or c1 <= c0:
                    continue
                a, b = cy0 >> p, cx0 >> p
                cores[n] = feats[n][0, r0 - a:r1 - a, c0 - b:c1 - b]  # (h, w, C)
                where[n] = (slice(r0, r1), slice(c0, c1))
            yield cores, where


def tiled_grams(extractor: FeatureExtractor, styles: list[tuple[np.ndarray, float]], layers: list[str],
                tile: int, margin: int) -> dict[str, tf.Tensor]:
    """nst's style targets (:func:`nst.terms.style_targets`: sum_i w_i G_i / M_i) computed tile by tile."""
    total = sum(w for _, w in styles)
    grams: dict[str, tf.Tensor] = {}
    for img, weight in styles:
        sums = {n: 0.0 for n in layers}
        counts = {n: 0 for n in layers}
        for cores, _ in feature_tiles(extractor, img, layers, tile, margin):
            for n, f in cores.items():
                f2 = tf.reshape(tf.cast(f, tf.float32), (-1, f.shape[-1]))  # (M, C)
                sums[n] = sums[n] + tf.matmul(f2, f2, transpose_a=True)
                counts[n] += f2.shape[0]
        for n in layers:
            g = (weight / total) * sums[n] / counts[n]
            grams[n] = grams[n] + g if n in grams else g
    return grams


# ---------------------------------------------------------------- what a tile optimises


class TileTask(Protocol):
    """What a tiled scale optimises; the driver owns the grid, blending, passes and progress."""

    def shared(self, index: int, hw: tuple[int, int], extractor: FeatureExtractor) -> object:
        """Style targets of the whole image at scale ``index`` (size ``hw``): called once per tiled scale."""

    def objective(self, extractor: FeatureExtractor, shared: object, hw: tuple[int, int], box: Box,
                  shape: tuple[int, int]) -> Objective:
        """A tile objective (built once per scale and precision) with the targets of the tile at ``box``."""

    def retarget(self, objective: Objective, hw: tuple[int, int], box: Box, shape: tuple[int, int]) -> None:
        """Refill the per-tile targets (content features, doodle masks) for the tile at ``box``."""


def crop(image: np.ndarray, box: Box, shape: tuple[int, int]) -> np.ndarray:
    return image[box[0]:box[0] + shape[0], box[1]:box[1] + shape[1]]


class TransferTiles:
    """Style transfer's tile task: shared Grams of the whole style, the content features of each tile."""

    def __init__(self, content: np.ndarray, styles: list[tuple[np.ndarray, float]], cfg):
        self.content, self.styles, self.cfg = content, styles, cfg
        self._content_at: dict[tuple[int, int], np.ndarray] = {}
        self.shared_calls = 0  # how often the style targets were computed (once per tiled scale)

    def _layers(self, network: str):
        from nst.transfer import layer_weights  # nst.transfer imports this module

        return layer_weights(self.cfg, network)

    def content_at(self, hw: tuple[int, int]) -> np.ndarray:
        if hw not in self._content_at:
            from nst.images import resize

            self._content_at = {hw: self.content if hw == self.content.shape[:2]
                                else resize(self.content, (hw[1], hw[0]), "content (tiled scale)")}
        return self._content_at[hw]

    def shared(self, index: int, hw: tuple[int, int], extractor: FeatureExtractor) -> dict[str, tf.Tensor]:
        from nst.transfer import _scaled

        self.shared_calls += 1
        f = max(hw) / max(self.content.shape[:2])
        styles = [(_scaled(img, f, "style image (tiled scale)"), w) for img, w in self.styles]
        tiles = self.cfg.tiles
        return tiled_grams(extractor, styles, list(self._layers(extractor.network)[1]), tiles.size, tiles.overlap)

    def _content_targets(self, extractor: FeatureExtractor, hw, box, shape) -> dict[str, tf.Tensor]:
        from nst.terms import content_targets

        layers = list(self._layers(extractor.network)[0])
        return content_targets(extractor, np.ascontiguousarray(crop(self.content_at(hw), box, shape)), layers)

    def objective(self, extractor, shared, hw, box, shape) -> Objective:
        from nst.transfer import Targets, make_objective

        return make_objective(extractor, Targets(self._content_targets(extractor, hw, box, shape), shared), self.cfg)

    def retarget(self, objective: Objective, hw, box, shape) -> None:
        objective.terms["content"].set_target(self._content_targets(objective.extractor, hw, box, shape))


# ---------------------------------------------------------------- the driver


@dataclass
class _Counter:
    """Iterations numbered over the whole run, whole scales and tiles alike."""

    control: Control
    phases: int
    total: int
    passes: int
    start: float
    done: int = 0

    def relay(self, **fields) -> Control:
        """A Control for one engine call whose events re-emerge numbered over the whole run."""
        base = self.done

        def emit(ev: Progress) -> None:
            self.done = base + ev.iteration
            image = fields.get("canvas", ev.image)
            extra = {k: v for k, v in fields.items() if k != "canvas"}
            self.control.emit(dataclasses.replace(
                ev, iteration=self.done, seconds=time.perf_counter() - self.start, image=image,
                total_iterations=self.total, phases=self.phases, tile_passes=self.passes, **extra))

        return Control([emit])


def run_tiled_plan(plan: list[Scale], build: Build, task: TileTask, extractors: Extractors | FeatureExtractor,
                   x0: np.ndarray, opt: OptimizerConfig, tiles: TilesConfig, control: Control,
                   precision: str = "float32", xla=False, log: Callable[[str], None] | None = None,
                   cache_dir: Path | None = None, choice=None) -> Result:
    """:func:`nst.engine.run_plan`, with the scales over ``tiles.max_pixels`` optimised in tiles.

    Without such scales this *is* run_plan. Otherwise the whole scales run as usual, then each tiled
    scale starts from the previous result upsampled and is optimised tile by tile, ``tiles.passes``
    times; a tiled scale's ``iterations`` are done by every tile in every pass.
    """
    whole, tiled = split_plan(plan, tiles)
    if not tiled:
        return run_plan(plan, build, extractors, x0, opt, control, precision, xla, log, cache_dir, choice)
    log = log or (lambda _s: None)
    extractors, precision = as_extractors(extractors, precision)
    grids = [[grid(s.hw, tiles, p) for p in range(tiles.passes)] for s in tiled]
    total = sum(s.iterations for s in whole) + sum(s.iterations * len(g) for s, gs in zip(tiled, grids) for g in gs)
    counter = _Counter(control, len(plan), total, tiles.passes, time.perf_counter())
    image, info, stops = x0, {"precision": None, "precision_fallbacks": [], "scales": []}, []

    def tile_builder(index: int, scale: Scale):
        """(build, current box holder, tile shape) for one tiled scale: its style targets computed once, one
        objective per numeric path whose content target is refilled for each tile (one compiled step)."""
        shared = task.shared(index, scale.hw, extractors("float32"))
        objectives: dict[str, Objective] = {}
        shape = tile_shape(scale.hw, tiles)
        current: list[Box] = [grids[index - len(whole)][0][0]]

        def build_tile(_i: int, _hw, extractor: FeatureExtractor) -> Objective:
            obj = objectives.get(extractor.precision)
            if obj is None:
                obj = objectives[extractor.precision] = task.objective(extractor, shared, scale.hw, current[0], shape)
            else:
                task.retarget(obj, scale.hw, current[0], shape)
            return obj

        return build_tile, current, shape

    builders, probed = {}, choice is None
    if probed:
        # One numeric path for the whole print, probed on the tile shape (the scale it spends most time on).
        # Probing every path at the largest whole scale as well took twice that scale's memory (a 2048 px
        # doodle print peaked at 10 GB against 4.8 GB for its float32 run).
        builders[0] = build_tile, current, shape = tile_builder(len(whole), tiled[0])
        # x0 resized to the tile shape is enough to time a step (choose_path resizes it)
        choice = choose_path([Scale(shape, tiled[0].iterations * sum(map(len, grids[0])))], build_tile,
                             extractors, x0, precision, xla, cache_dir, log)
        log(f"precision (tiles, and the whole scales before them): {choice.name} ({choice.why})")
    if whole:
        res = run_plan(whole, build, extractors, x0, opt, counter.relay(), precision, xla, log, cache_dir, choice)
        image, info = res.image, res.info
        if res.stop != "iterations done":
            stops.append(res.stop)
    if probed:
        info["precision_tiles"] = choice.record()
    if info.get("precision") is None:
        info["precision"] = choice.record()
    for k, scale in enumerate(tiled):
        index = len(whole) + k
        control.check()
        image = np.array(upsample(image, scale.hw, opt.bounds), np.float32)  # the canvas, blended in place
        build_tile, current, shape = builders.pop(k, None) or tile_builder(index, scale)
        log(f"scale {index + 1}/{len(plan)}: {scale.hw[1]}x{scale.hw[0]} px in {shape[1]}x{shape[0]} px tiles, "
            f"overlap {tiles.overlap} px, {' + '.join(str(len(g)) for g in grids[k])} tiles in {tiles.passes} "
            f"pass(es), {scale.iterations} iterations each; style targets of the whole image computed once")
        done_before, stalled = counter.done, 0
        for p, boxes in enumerate(grids[k]):
            for i, box in enumerate(boxes):
                control.check()
                current[0] = box
                start = np.ascontiguousarray(crop(image, box, shape))
                res = run_plan([Scale(shape, scale.iterations)], build_tile, extractors, start, opt,
                               counter.relay(canvas=image, phase=index, tile=i + 1, tiles=len(boxes),
                                             tile_pass=p + 1),
                               choice=choice)
                stalled += res.stop != "iterations done"
                info["precision_fallbacks"] += res.info["precision_fallbacks"]
                blend(image, res.image, box, tiles.overlap)
        if stalled:
            stops.append(f"scale {index + 1}: {stalled} tile run(s) stopped early (no further decrease)")
        info["scales"].append({"width": scale.hw[1], "height": scale.hw[0], "iterations": scale.iterations,
                               "done": counter.done - done_before, "precision": choice.name,
                               "tiles": [len(g) for g in grids[k]], "tile": [shape[1], shape[0]],
                               "overlap": tiles.overlap, "passes": tiles.passes})
    stop = "iterations done" if not stops else "; ".join(stops)
    return Result(image, stop, counter.done, info)
