"""Style targets of a whole image at a tiled scale, computed tile by tile in bounded memory (prints).

``F^T F`` and the position count are sums over positions, so summing each style tile's Gram contributions
gives the whole image's Gram; each tile carries ``margin`` px of context so its features are the whole
image's there (:func:`feature_tiles`). Every image tile of the scale then shares that one style
(:func:`tiled_grams` for style transfer; :func:`doodle.tiles.tiled_masked_grams` per label).
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import tensorflow as tf

from nst.features import FeatureExtractor, pools_before

GRID_ALIGN = 16  # 4 poolings: style tiles start on multiples of 16 px so their feature grids are the image's


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
