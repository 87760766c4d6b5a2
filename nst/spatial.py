"""Spatial control (Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style Transfer", sec. 4):
each style entry paints its own region of the content.

The content-side masks (H, W, K), one channel per style entry (:mod:`nst.region_masks`), go through the
network by :func:`nst.masks.layer_masks` (2x2 average at every pooling, as the doodle's label masks). At a
layer with features F (M x C) and region k's mask m_k (M,), the region's Gram is the mask-weighted *mean*
outer product G_k = F^T diag(m_k) F / sum(m_k) (:func:`nst.masks.masked_grams`, ``area`` form), so it does
not depend on the region's size, a position on a soft border counts in both regions with its share, and
G_k of a mask of ones is the paper's G / M. It is compared with the whole style image k's Gram A_k / M_k:

    L_style = sum_l w_l sum_k r_k sum (G_k - A_k)^2 / (4 C^2),   r_k = the entry's ``weight``

(weights are not normalised over the entries: each region gets the paper's full style weight; entries over
one region add up like a blend, sum_k r_k |G - A_k|^2 = (sum r_k) |G - blend|^2 + const). A region covering
under :data:`nst.masks.MIN_AREA` feature positions of a layer is left out of that layer. The other forms that
take a mask (:data:`nst.config.MASKABLE_FORMS`) use :mod:`nst.style_terms`' own position weights: per
region a term with that style's targets and the region's mask, summed by :class:`RegionsTerm`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from nst.features import FeatureExtractor
from nst.masks import MIN_AREA, layer_masks, masked_gram_losses
from nst.recipe import TransferRecipe
from nst.style_terms import (CovarianceTerm, HistogramTerm, SlicedWassersteinTerm, WassersteinTerm,
                             gaussian_targets, sample_targets)
from nst.terms import style_targets as gram_targets

Styles = list[tuple[np.ndarray, float]]


class MaskedGramTerm:
    """beta * sum_l w_l sum_k r_k E_l^k: each region's masked Gram against its own style's Gram."""

    def __init__(self, layer_weights: dict[str, float], masks: dict[str, tf.Tensor], targets: dict[str, tf.Tensor],
                 region_weights: list[float], weight: float = 1.0):
        self.layer_weights, self.weight = dict(layer_weights), weight
        self.layers = list(layer_weights)
        self.masks = {n: tf.constant(masks[n], tf.float32) for n in self.layers}  # (h, w, K)
        self.targets = {n: tf.Variable(tf.cast(targets[n], tf.float32), trainable=False)
                        for n in self.layers}  # (K, C, C)
        r = tf.constant(region_weights, tf.float32)
        self.region_weights = {n: r * region_present(self.masks[n]) for n in self.layers}  # (K,)

    def per_region(self, feats: dict[str, tf.Tensor]) -> tf.Tensor:
        """(K,) each region's style loss over the layers with their weights (unweighted by ``weight``)."""
        return tf.add_n([w * self.region_weights[n] * masked_gram_losses(feats[n], self.masks[n], self.targets[n])
                         for n, w in self.layer_weights.items()])

    def __call__(self, feats: dict[str, tf.Tensor], image: tf.Tensor) -> tf.Tensor:
        return self.weight * tf.reduce_sum(self.per_region(feats))


class RegionsTerm:
    """The sum of one term per region (the non-Gram forms); rounds reach every region's term."""

    def __init__(self, terms: list):
        self.terms = terms
        self.layers = sorted({n for t in terms for n in t.layers})

    def __call__(self, feats: dict[str, tf.Tensor], image: tf.Tensor) -> tf.Tensor:
        if not self.terms:  # every region too small for every layer at this scale
            return tf.constant(0.0)
        return tf.add_n([tf.cast(t(feats, image), tf.float32) for t in self.terms])

    def on_round(self, image: np.ndarray) -> None:
        for t in self.terms:
            hook = getattr(t, "on_round", None)
            if hook is not None:
                hook(image)


def region_present(masks: tf.Tensor) -> tf.Tensor:
    """(K,) 1.0 where region k covers at least MIN_AREA positions of the (h, w, K) masks."""
    return tf.cast(tf.reduce_sum(masks, axis=(0, 1)) >= MIN_AREA, tf.float32)


def spatial_targets(extractor: FeatureExtractor, styles: Styles, recipe: TransferRecipe) -> dict[str, list]:
    """{term name: [style k's targets for k in entries]}: every entry's statistics on its own, unblended."""
    layers, form = list(recipe.style_layers), recipe.style_form
    one = [[(img, 1.0)] for img, _ in styles]
    if form == "gram":
        return {"style": [gram_targets(extractor, s, layers) for s in one]}
    if form in ("covariance", "wasserstein"):
        return {"style": [gaussian_targets(extractor, s, layers) for s in one]}
    if form == "sliced_wasserstein":
        return {"style": [sample_targets(extractor, s, layers) for s in one]}
    if form == "histogram":
        return {"style.gram": [gram_targets(extractor, s, layers) for s in one],
                "style.histogram": [sample_targets(extractor, s, layers) for s in one]}
    raise ValueError(f"loss.style_form {form} takes no masks")  # refused by the config check already


def spatial_terms(targets: dict[str, list], recipe: TransferRecipe, masks: np.ndarray,
                  region_weights: list[float], network: str) -> dict:
    """The style term(s) of ``recipe.style_form`` for the (H, W, K) content-side ``masks`` at this scale."""
    r, w, form = recipe, recipe.style_weight, recipe.style_form
    at = layer_masks(masks, network, list(r.style_layers))  # {layer: (h, w, K)}

    def gram(name: str, weight: float) -> MaskedGramTerm:
        stacked = {n: tf.stack([t[n] for t in targets[name]]) for n in r.style_layers}  # (K, C, C)
        return MaskedGramTerm(r.style_layers, at, stacked, region_weights, weight)

    def regions(make, name: str, weight: float) -> RegionsTerm:
        terms = []
        for k, rw in enumerate(region_weights):
            layers = {n: lw for n, lw in r.style_layers.items() if float(tf.reduce_sum(at[n][..., k])) >= MIN_AREA}
            if layers and rw > 0:
                region = {n: at[n][..., k].numpy() for n in layers}
                terms.append(make(layers, targets[name][k], weight * rw, region))
        return RegionsTerm(terms)

    if form == "gram":
        return {"style": gram("style", w)}
    if form == "covariance":
        return {"style": regions(lambda lw, t, wt, m: CovarianceTerm(lw, t, wt, masks=m), "style", w)}
    if form == "wasserstein":
        return {"style": regions(lambda lw, t, wt, m: WassersteinTerm(lw, t, wt, masks=m), "style", w)}
    if form == "sliced_wasserstein":
        return {"style": regions(lambda lw, t, wt, m: SlicedWassersteinTerm(lw, t, wt, r.projections, r.seed, masks=m),
                                 "style", w)}
    if form == "histogram":
        return {"style.gram": gram("style.gram", w),
                "style.histogram": regions(lambda lw, t, wt, m: HistogramTerm(lw, t, wt, masks=m), "style.histogram",
                                           w * r.histogram_weight)}
    raise ValueError(f"loss.style_form {form} takes no masks")
