"""Doodle prints: the tiled targets and the tile term of neural doodles (``doodle.method: gram``).

Per label, the style targets are the masked Grams of the whole style image at the tiled phase's size,
summed tile by tile (:func:`nst.tiles.feature_tiles`; numerator and mask area are sums over positions)
— computed once and shared by every tile. Each tile gets its own crop of the doodle's label masks and
of the content photo (:class:`doodle.engine.DoodleTask` does the cropping). :class:`TileGramTerm` is :class:`doodle.terms.RegionalGramTerm` with its masks
and label weights in ``tf.Variable`` s, so one compiled step serves every tile.

The patch method is refused in tiles: its candidates are every style patch of the whole style image,
and matching a tile against them (a convolution with all of them as filters) grows with the print.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from doodle.losses import EPS, label_weights
from doodle.terms import RegionalGramTerm
from nst.features import FeatureExtractor
from nst.masks import layer_masks
from nst.tiled_targets import feature_tiles


class TileGramTerm(RegionalGramTerm):
    """The regional Gram term of one tile: shared style targets, the tile's masks refilled per tile."""

    def __init__(self, network: str, layer_weights: dict[str, float], targets: dict[str, tf.Tensor],
                 style_masks: dict[str, tf.Tensor], tile_masks: np.ndarray, weight: float, form: str,
                 smoothing: bool):
        self.layer_weights, self.weight, self.form = dict(layer_weights), weight, form
        self.layers, self.network, self.smoothing = list(layer_weights), network, smoothing
        self.style_masks = style_masks  # {layer: (h, w, K)} of the whole style: which labels it has
        self.targets = {n: tf.Variable(targets[n], trainable=False) for n in self.layers}  # (K, C, C)
        m = layer_masks(tile_masks, network, self.layers, smoothing)
        self.masks = {n: tf.Variable(m[n], trainable=False) for n in self.layers}
        self.label_weights = {n: tf.Variable(label_weights(style_masks[n], m[n]), trainable=False)
                              for n in self.layers}

    def set_masks(self, tile_masks: np.ndarray) -> None:
        m = layer_masks(tile_masks, self.network, self.layers, self.smoothing)
        for n in self.layers:
            self.masks[n].assign(m[n])
            self.label_weights[n].assign(label_weights(self.style_masks[n], m[n]))


def tiled_masked_grams(extractor: FeatureExtractor, style: np.ndarray, masks: dict[str, tf.Tensor],
                       layers: list[str], form: str, tile: int, margin: int) -> dict[str, tf.Tensor]:
    """:func:`doodle.losses.masked_grams` of the whole ``style`` image per layer, (K, C, C), tile by tile."""
    num = {n: 0.0 for n in layers}
    area = {n: 0.0 for n in layers}
    count = {n: 0 for n in layers}
    for cores, where in feature_tiles(extractor, style, layers, tile, margin):
        for n, f in cores.items():
            c = f.shape[-1]
            f2 = tf.reshape(tf.cast(f, tf.float32), (-1, c))  # (M, C)
            m = tf.reshape(masks[n][where[n]], (-1, masks[n].shape[-1]))  # (M, K)
            fm = f2[None] * tf.transpose(m)[:, :, None]  # (K, M, C)
            num[n] = num[n] + tf.matmul(fm, fm if form == "original" else f2[None], transpose_a=True)
            area[n] = area[n] + tf.reduce_sum(m, axis=0)  # (K,)
            count[n] += f2.shape[0]
    if form == "original":  # F_m^T F_m / (mean(m) + eps) / C
        return {n: num[n] / (area[n] / count[n] + EPS)[:, None, None] / num[n].shape[-1] for n in layers}
    return {n: num[n] / (area[n] + EPS)[:, None, None] for n in layers}
