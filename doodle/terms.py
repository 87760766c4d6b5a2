"""Doodle style terms for an :class:`nst.objective.Objective`: the regional Gram loss and semantic patches.

Champandard 2016 (arXiv:1603.01768) and the Keras 2 ``neural_doodle`` example. Both are regions applied to
a style comparison, with the label masks carried through the network by :mod:`nst.masks`; the formulas
are :mod:`doodle.losses`. With a single label covering both images, :class:`RegionalGramTerm` (``area``
form) is exactly nst's :class:`nst.terms.GramTerm` (a test holds them equal).

* :class:`RegionalGramTerm`: per label, the output's masked Grams against the style's.
* :class:`PatchTerm`: each output patch of a layer matched to the style patch with the best normalised
  cross-correlation of features and map; MRF loss to the matches (Li & Wand 2016). Matches are refreshed by
  :meth:`PatchTerm.on_round` at the start of every optimiser round, so the objective is fixed within a round
  as L-BFGS needs; they live in tf.Variables (no retracing).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from doodle.losses import (best_matches, extract_patches, label_weights, masked_gram_loss, masked_gram_losses,
                           masked_grams, mrf_loss)
from doodle.scene import Scene
from nst.errors import UserError
from nst.features import FeatureExtractor
from nst.masks import layer_masks, semantic_channels

# Style patches within this many positions of the feature map's edge are no candidates: their features carry
# the convolutions' zero padding (and any frame of the scan), which border patches of the output would copy.
STYLE_MARGIN = 1


class RegionalGramTerm:
    """weight * sum_l w_l sum_k regional Gram loss of label k at layer l."""

    def __init__(self, network: str, scene: Scene, layer_weights: dict[str, float], style_feats: dict[str, tf.Tensor],
                 weight: float = 1.0, form: str = "area", smoothing: bool = False):
        self.layer_weights, self.weight, self.form = dict(layer_weights), weight, form
        self.layers = list(layer_weights)
        s_masks = layer_masks(scene.style_masks, network, self.layers, smoothing)
        self.masks = layer_masks(scene.target_masks, network, self.layers, smoothing)
        self.targets = {n: tf.Variable(masked_grams(style_feats[n], s_masks[n], form), trainable=False)
                        for n in self.layers}  # (K, C, C)
        self.label_weights = {n: label_weights(s_masks[n], self.masks[n]) for n in self.layers}  # (K,)

    def __call__(self, feats: dict[str, tf.Tensor], image: tf.Tensor) -> tf.Tensor:
        total = tf.constant(0.0)
        for n, w in self.layer_weights.items():
            total += w * masked_gram_loss(feats[n], self.masks[n], self.targets[n], self.label_weights[n], self.form)
        return self.weight * total

    def per_label(self, feats: dict[str, tf.Tensor]) -> tf.Tensor:
        """(K,) each label's regional style loss, summed over layers with their weights (unweighted by ``weight``)."""
        return tf.add_n([w * self.label_weights[n] * masked_gram_losses(feats[n], self.masks[n], self.targets[n],
                                                                        self.form)
                         for n, w in self.layer_weights.items()])


class PatchTerm:
    """weight * sum_l w_l MRF loss of layer l to each output patch's semantic nearest style patch."""

    def __init__(self, extractor: FeatureExtractor, scene: Scene, layer_weights: dict[str, float],
                 style_feats: dict[str, tf.Tensor], weight: float = 1.0, size: int = 3, stride: int = 2,
                 semantic_weight: float = 1.0):
        net = extractor.network
        self.extractor, self.size, self.weight, self.semantic_weight = extractor, size, weight, semantic_weight
        self.layer_weights = dict(layer_weights)
        self.layers = list(layer_weights)
        self.target_map, self.style_map, self.style_feat, self.matched = {}, {}, {}, {}
        for n in self.layers:
            f = style_feats[n]  # (1, hs, ws, C)
            style_map = semantic_channels(scene.style_masks, net, n)[None]  # (1, hs, ws, K)
            m = STYLE_MARGIN if min(f.shape[1:3]) >= size + 2 * STYLE_MARGIN else 0
            inner = (slice(None), slice(m, f.shape[1] - m), slice(m, f.shape[2] - m))
            self.style_map[n] = extract_patches(style_map[inner], size, stride)  # (N, s*s*K)
            self.style_feat[n] = extract_patches(f[inner], size, stride)  # (N, s*s*C)
            if self.style_feat[n].shape[0] == 0:
                raise UserError(f"the style image ({scene.style.shape[1]}x{scene.style.shape[0]} px in this phase) "
                                f"is too small for {size}x{size} patches at {n}; raise image.style_scale")
            self.target_map[n] = semantic_channels(scene.target_masks, net, n)[None]  # (1, h, w, K)
            h, w = self.target_map[n].shape[1:3]
            positions = (h - size + 1) * (w - size + 1)
            self.matched[n] = tf.Variable(tf.zeros((positions, self.style_feat[n].shape[1])), trainable=False)

    def on_round(self, image: np.ndarray) -> None:
        """Match every output patch to its nearest style patch, for the current ``image`` (H, W, 3)."""
        feats = self.extractor(image[None])
        for n in self.layers:
            index = best_matches(feats[n], self.style_feat[n], self.size, target_map=self.target_map[n],
                                 style_map_patches=self.style_map[n], semantic_weight=self.semantic_weight)
            self.matched[n].assign(tf.gather(self.style_feat[n], index))

    def __call__(self, feats: dict[str, tf.Tensor], image: tf.Tensor) -> tf.Tensor:
        total = tf.constant(0.0)
        for n, w in self.layer_weights.items():
            total += w * mrf_loss(feats[n], self.matched[n], self.size)
        return self.weight * total
