"""Loss terms of Gatys, Ecker & Bethge 2015 as objects an :class:`nst.objective.Objective` sums.

Each term is ``term(features, image) -> weighted scalar`` and names the layers it reads. Targets are
computed separately (:func:`content_targets`, :func:`style_targets`) and handed in, so a caller can
compute them once and reuse them (video frames, print tiles); they are held in ``tf.Variable`` s that
:meth:`set_target` refills without retracing the compiled step. The formulas are :mod:`nst.losses`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

from nst.features import FeatureExtractor
from nst.losses import content_loss, gram_matrix, layer_style_loss, total_variation


def _variables(values: dict[str, tf.Tensor]) -> dict[str, tf.Variable]:
    return {k: tf.Variable(tf.cast(v, tf.float32), trainable=False) for k, v in values.items()}


def _assign(variables: dict[str, tf.Variable], values: dict[str, tf.Tensor]) -> None:
    for k, var in variables.items():
        value = tf.cast(values[k], tf.float32)
        if value.shape != var.shape:
            raise ValueError(f"target {k} changed shape {var.shape} -> {value.shape}: build a new objective")
        var.assign(value)


def content_targets(extractor: FeatureExtractor, image: np.ndarray, layers: list[str]) -> dict[str, tf.Tensor]:
    """(H, W, 3) photo -> {layer: (1, h, w, C) features}."""
    feats = extractor(image[None])
    return {n: feats[n] for n in layers}


def style_targets(extractor: FeatureExtractor, styles: list[tuple[np.ndarray, float]],
                  layers: list[str]) -> dict[str, tf.Tensor]:
    """Per layer, sum_i w_i G_i / M_i over the style images (weights normalised to sum 1): (C, C) each."""
    total = sum(w for _, w in styles)
    grams: dict[str, tf.Tensor] = {}
    for img, w in styles:
        feats = extractor(img[None])
        for name in layers:
            g = (w / total) * gram_matrix(feats[name], normalize=True)
            grams[name] = grams[name] + g if name in grams else g
    return grams


class ContentTerm:
    """alpha * sum_l w_l L_content (eq. 2.2 per layer) against target features."""

    def __init__(self, layer_weights: dict[str, float], targets: dict[str, tf.Tensor], weight: float = 1.0,
                 form: str = "paper"):
        self.layer_weights, self.weight, self.form = dict(layer_weights), weight, form
        self.layers = list(layer_weights)
        self.targets = _variables({n: targets[n] for n in self.layers})

    def set_target(self, targets: dict[str, tf.Tensor]) -> None:
        _assign(self.targets, targets)

    def __call__(self, feats: dict[str, tf.Tensor], image: tf.Tensor) -> tf.Tensor:
        total = tf.constant(0.0)
        for n, w in self.layer_weights.items():
            total += w * content_loss(feats[n], self.targets[n], self.form)
        return self.weight * total


class GramTerm:
    """beta * sum_l w_l E_l (eq. 2.4, 2.5) with Grams divided by M on both sides."""

    def __init__(self, layer_weights: dict[str, float], target_grams: dict[str, tf.Tensor], weight: float = 1.0):
        self.layer_weights, self.weight = dict(layer_weights), weight
        self.layers = list(layer_weights)
        self.targets = _variables({n: target_grams[n] for n in self.layers})

    def set_target(self, target_grams: dict[str, tf.Tensor]) -> None:
        _assign(self.targets, target_grams)

    def __call__(self, feats: dict[str, tf.Tensor], image: tf.Tensor) -> tf.Tensor:
        total = tf.constant(0.0)
        for n, w in self.layer_weights.items():
            f = feats[n]
            total += w * layer_style_loss(gram_matrix(f, normalize=True), self.targets[n], f.shape[-1])
        return self.weight * total


class TVTerm:
    """weight * total variation of the image (no features)."""

    layers: list[str] = []

    def __init__(self, weight: float, fn: Callable[[tf.Tensor], tf.Tensor] = total_variation):
        self.weight, self.fn = weight, fn

    def __call__(self, feats: dict[str, tf.Tensor], image: tf.Tensor) -> tf.Tensor:
        return self.weight * self.fn(image)
