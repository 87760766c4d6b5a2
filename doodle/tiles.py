"""Doodle prints: the tile task of :mod:`nst.tiles` for neural doodles (``doodle.method: gram``).

Per label, the style targets are the masked Grams of the whole style image at the tiled phase's size,
summed tile by tile (:func:`nst.tiles.feature_tiles`; numerator and mask area are sums over positions)
— computed once and shared by every tile. Each tile gets its own crop of the doodle's label masks and
of the content photo. :class:`TileGramTerm` is :class:`doodle.terms.RegionalGramTerm` with its masks
and label weights in ``tf.Variable`` s, so one compiled step serves every tile.

The patch method is refused in tiles: its candidates are every style patch of the whole style image,
and matching a tile against them (a convolution with all of them as filters) grows with the print.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from doodle.losses import EPS, label_weights
from doodle.masks import layer_masks
from doodle.scene import Scene
from doodle.terms import RegionalGramTerm
from nst.engine import Scale
from nst.errors import UserError
from nst.features import FeatureExtractor, canonical_layer
from nst.objective import Objective
from nst.terms import ContentTerm, TVTerm, content_targets
from nst.tiles import crop, feature_tiles, split_plan


def check_tiles(cfg, plan: list[Scale]) -> None:
    """A UserError when a phase would be tiled with a method that cannot be."""
    tiled = split_plan(plan, cfg.tiles)[1]
    if tiled and cfg.doodle.method != "gram":
        s = tiled[0].hw
        raise UserError(f"doodle.method '{cfg.doodle.method}' cannot run in tiles (phase {s[1]}x{s[0]} px is over "
                        f"tiles.max_pixels {cfg.tiles.max_pixels:,}): use doodle.method gram for prints, or a "
                        f"smaller image.size")


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


class DoodleTiles:
    """The doodle's tile task (method gram): per-label style targets once, masks and content per tile."""

    def __init__(self, scene: Scene, cfg):
        self.scene, self.cfg = scene, cfg
        self._scaled: dict[tuple[int, int], Scene] = {}
        self.shared_calls = 0

    def scene_at(self, hw: tuple[int, int]) -> Scene:
        if hw not in self._scaled:
            self._scaled = {hw: self.scene.scaled(tuple(hw))}
        return self._scaled[hw]

    def _style_layers(self, network: str) -> dict[str, float]:
        return {canonical_layer(k, network): v for k, v in self.cfg.layers.style.items()}

    def shared(self, index: int, hw: tuple[int, int], extractor: FeatureExtractor) -> dict:
        if self.cfg.doodle.method != "gram":
            raise UserError(f"doodle.method '{self.cfg.doodle.method}' cannot run in tiles; use gram for prints")
        self.shared_calls += 1
        s, d, t = self.scene_at(hw), self.cfg.doodle, self.cfg.tiles
        layers = list(self._style_layers(extractor.network))
        masks = layer_masks(s.style_masks, extractor.network, layers, d.mask_smoothing)
        grams = tiled_masked_grams(extractor, s.style, masks, layers, d.gram_form, t.size, t.overlap)
        return {"grams": grams, "style_masks": masks}

    def _content(self, extractor, hw, box, shape) -> dict[str, tf.Tensor] | None:
        from doodle.engine import content_layers

        s = self.scene_at(hw)
        layers = content_layers(self.cfg, extractor.network, s.content is not None)
        if not layers:
            return None
        return content_targets(extractor, np.ascontiguousarray(crop(s.content, box, shape)), list(layers))

    def objective(self, extractor: FeatureExtractor, shared: dict, hw, box, shape) -> Objective:
        from doodle.engine import TV_FORMS, content_layers

        net, d, loss = extractor.network, self.cfg.doodle, self.cfg.loss
        s, terms = self.scene_at(hw), {}
        targets = self._content(extractor, hw, box, shape)
        if targets is not None:
            terms["content"] = ContentTerm(content_layers(self.cfg, net, True), targets, loss.content_weight,
                                           loss.content_form)
        terms["style"] = TileGramTerm(net, self._style_layers(net), shared["grams"], shared["style_masks"],
                                      crop(s.target_masks, box, shape), loss.style_weight, d.gram_form,
                                      d.mask_smoothing)
        terms["tv"] = TVTerm(loss.tv_weight, TV_FORMS[d.tv_form])
        return Objective(extractor, terms)

    def retarget(self, objective: Objective, hw, box, shape) -> None:
        targets = self._content(objective.extractor, hw, box, shape)
        if targets is not None:
            objective.terms["content"].set_target(targets)
        objective.terms["style"].set_masks(crop(self.scene_at(hw).target_masks, box, shape))
