"""Masks through the network, and the Gram of a masked region: shared by the doodle and spatial control.

Champandard 2016 (arXiv:1603.01768) and the Keras 2 ``neural_doodle`` example: a mask must cover the same
positions as the feature map it weighs, so it goes through the network's own resizing — a 2x2 average
pooling (stride 2, valid) at every pooling layer, and, as the original code did, optionally a 3x3 average
(stride 1, same padding, padding not counted) at every convolution, which widens the mask edge like a
receptive field. Masks of a pixel sum to 1 over the labels before and after. The doodle's label masks
(:mod:`doodle.terms`) and style transfer's spatial control (:mod:`nst.spatial`, Gatys et al. 2017) both
bring their masks to the layers here and take their regions' Grams with :func:`masked_grams`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from nst.features import all_layers
from nst.patches import EPS

# A label (region) must cover at least this many feature positions (mask sum) of a layer to take part in it.
MIN_AREA = 1.0


def layer_masks(masks: np.ndarray | tf.Tensor, network: str, layers: list[str],
                smoothing: bool = False) -> dict[str, tf.Tensor]:
    """(H, W, K) masks -> {layer: (h, w, K) float32} at the resolution of each canonical layer in ``layers``.

    Follows ``network``'s layers in order: every ``*_pool`` halves the mask by 2x2 averaging, and with
    ``smoothing`` every ``*_conv*`` averages it over 3x3 neighbours.
    """
    if not layers:
        return {}
    order = all_layers(network)
    last = max(order.index(n) for n in layers)
    x = tf.convert_to_tensor(masks, tf.float32)[None]  # (1, H, W, K)
    out = {}
    for name in order[: last + 1]:
        if name.endswith("pool"):
            x = tf.nn.avg_pool2d(x, 2, 2, "VALID")  # (1, H/2, W/2, K), floor like Keras' pooling
        elif smoothing:
            x = tf.nn.avg_pool2d(x, 3, 1, "SAME")  # TF averages over the in-image neighbours only
        if name in layers:
            out[name] = x[0]
    return out


def semantic_channels(masks: np.ndarray | tf.Tensor, network: str, layer: str) -> tf.Tensor:
    """The masks downsampled to ``layer`` by the network's pooling alone: (H, W, K) -> (h, w, K)."""
    return layer_masks(masks, network, [layer], smoothing=False)[layer]


def resize_masks(masks: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(H, W, K) masks -> (h, w, K) by area averaging (soft edges, still summing to 1 per pixel)."""
    if tuple(masks.shape[:2]) == tuple(hw):
        return masks.astype(np.float32)
    return tf.image.resize(tf.convert_to_tensor(masks, tf.float32), hw, method="area").numpy()


def masked_grams(features: tf.Tensor, masks: tf.Tensor, form: str = "area") -> tf.Tensor:
    """(1, h, w, C) features and (h, w, K) masks -> (K, C, C) per-label Grams.

    With F (M positions x C channels) and a mask m (M,): ``area`` (the default) G = F^T diag(m) F / sum(m),
    the mask-weighted *mean* outer product, so a region's Gram does not depend on its size and a soft mask
    edge counts linearly; ``original`` (the Keras doodle example) G = (F m)^T (F m) / mean(m) / C.
    """
    c = tf.shape(features)[-1]
    f = tf.reshape(features, (-1, c))  # (M, C)
    m = tf.reshape(tf.cast(masks, f.dtype), (-1, masks.shape[-1]))  # (M, K)
    grams = []
    for k in range(masks.shape[-1]):
        mk = m[:, k:k + 1]  # (M, 1)
        if form == "original":
            fm = f * mk  # (M, C)
            g = tf.matmul(fm, fm, transpose_a=True) / (tf.reduce_mean(mk) + EPS) / tf.cast(c, f.dtype)
        else:
            g = tf.matmul(f * mk, f, transpose_a=True) / (tf.reduce_sum(mk) + EPS)
        grams.append(g)
    return tf.stack(grams)  # (K, C, C)


def label_weights(style_masks: tf.Tensor, target_masks: tf.Tensor) -> tf.Tensor:
    """(K,) 1.0 for labels covering >= MIN_AREA feature positions in both masks (h, w, K), else 0.0."""
    s = tf.reduce_sum(tf.cast(style_masks, tf.float32), axis=(0, 1))
    t = tf.reduce_sum(tf.cast(target_masks, tf.float32), axis=(0, 1))
    return tf.cast((s >= MIN_AREA) & (t >= MIN_AREA), tf.float32)


def masked_gram_losses(features: tf.Tensor, masks: tf.Tensor, target_grams: tf.Tensor,
                       form: str = "area") -> tf.Tensor:
    """Per-label style loss of one layer: (1, h, w, C), (h, w, K), (K, C, C) -> (K,)."""
    diff = tf.square(masked_grams(features, masks, form) - target_grams)  # (K, C, C)
    if form == "original":
        return tf.reduce_mean(diff, axis=(1, 2))
    c = tf.cast(tf.shape(features)[-1], diff.dtype)
    return tf.reduce_sum(diff, axis=(1, 2)) / (4.0 * c * c)


def masked_gram_loss(features: tf.Tensor, masks: tf.Tensor, target_grams: tf.Tensor, weights: tf.Tensor,
                     form: str = "area") -> tf.Tensor:
    """Sum over labels of ``weights`` (K,) x the per-label loss: the regional style loss of one layer."""
    return tf.reduce_sum(weights * masked_gram_losses(features, masks, target_grams, form))
