"""The losses of Gatys, Ecker & Bethge 2015 (arXiv:1508.06576), each a small pure function.

Features are (1, H, W, C) tensors; N = C filters, M = H*W positions. Equation numbers are the paper's.
Grams used for style targets are divided by their own M (:func:`gram_matrix` with ``normalize=True``),
so that eq. 2.4 holds unchanged when style and result have equal size, and stays meaningful when the
style image has another size than the result.
"""

from __future__ import annotations

import tensorflow as tf


def gram_matrix(features: tf.Tensor, normalize: bool = False) -> tf.Tensor:
    """Eq. 2.1, G_ij = sum_k F_ik F_jk; divided by M when ``normalize``. (1,H,W,C) -> (C,C)."""
    f = tf.reshape(features, (-1, tf.shape(features)[-1]))  # (M, N)
    gram = tf.matmul(f, f, transpose_a=True)  # (N, N)
    if normalize:
        gram = gram / tf.cast(tf.shape(f)[0], gram.dtype)
    return gram


def content_loss(features: tf.Tensor, target: tf.Tensor, form: str = "paper") -> tf.Tensor:
    """Eq. 2.2, 1/2 sum (F - P)^2; ``form="original"``: sum (F - P)^2 / (4 N M), as the original code had it."""
    squared = tf.reduce_sum(tf.square(features - target))
    if form == "original":
        n_m = tf.cast(tf.size(features), squared.dtype)  # N * M (batch of one)
        return squared / (4.0 * n_m)
    return 0.5 * squared


def layer_style_loss(gram: tf.Tensor, target_gram: tf.Tensor, n_filters: int, n_positions: int = 1) -> tf.Tensor:
    """Eq. 2.4, E_l = 1/(4 N^2 M^2) sum (G - A)^2. Pass M = 1 for Grams already divided by M."""
    scale = 4.0 * float(n_filters) ** 2 * float(n_positions) ** 2
    return tf.reduce_sum(tf.square(gram - target_gram)) / scale


def style_loss(features: dict[str, tf.Tensor], target_grams: dict[str, tf.Tensor],
               layer_weights: dict[str, float]) -> tf.Tensor:
    """Eq. 2.5, sum_l w_l E_l, with the generated Grams divided by M like the targets."""
    total = tf.constant(0.0, tf.float32)
    for name, w in layer_weights.items():
        f = features[name]
        total += w * layer_style_loss(gram_matrix(f, normalize=True), target_grams[name], f.shape[-1])
    return total


def total_variation(image: tf.Tensor) -> tf.Tensor:
    """Sum of squared differences between neighbouring pixels, (1,H,W,3) -> scalar; smooths speckle."""
    dy = image[:, 1:, :, :] - image[:, :-1, :, :]
    dx = image[:, :, 1:, :] - image[:, :, :-1, :]
    return tf.reduce_sum(tf.square(dy)) + tf.reduce_sum(tf.square(dx))
