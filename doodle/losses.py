"""Doodle losses as small pure functions over tensors: the masked (regional) Gram loss and semantic patches.

* Masked Gram (the Keras 2 ``neural_doodle`` example, after Gatys et al. 2015): one Gram matrix per label,
  computed over that label's region only. With features F (M positions x C channels) and a mask m (M,):

  - ``area`` form (ours, the default): G = F^T diag(m) F / sum(m), the mask-weighted *mean* outer product,
    so a region's Gram does not depend on its size, and a soft mask edge counts linearly. Per label the
    loss is eq. 2.4 with Grams already divided by M: sum (G_t - G_s)^2 / (4 C^2).
  - ``original`` form (the Keras example exactly): G = (F * m)^T (F * m) / mean(m) / C and the loss
    mean((G_t - G_s)^2); the Gram is not divided by M, so its scale grows with the image.

  Labels are summed with equal weight (as the original); a label whose region covers under one feature
  position of the style or of the target at a layer is left out of that layer (its weight is 0). These
  functions live in :mod:`nst.masks` (style transfer's spatial control shares them) and are re-exported here.

* Semantic patches (Champandard 2016, arXiv:1603.01768; MRF loss of Li & Wand 2016, arXiv:1601.04589):
  features and the semantic map (its channels downsampled to the layer) are cut into size x size patches;
  each target patch is matched to the style patch with the highest normalised cross-correlation of the
  feature+map concatenation, each block normalised on its own and the map's weighted by semantic_weight:
  score = NCC(features) + semantic_weight * NCC(map). (Normalising the plain concatenation instead lets a
  strong map turn the score into a raw dot product, which favours the brightest, most contrasted style
  patches.) All scores come at once from convolutions of the target with the normalised style patches as
  filters (in chunks of style patches, never a loop over single patches). The loss is the mean over
  target patches of the squared distance to the matched style patch (the sum of Li & Wand divided by the
  number of target patches, so that one weight serves every image size and phase). The patch math is
  :mod:`nst.patches` (shared with plain style transfer), re-exported here.
"""

from __future__ import annotations

import tensorflow as tf

# the patch math (matching, MRF loss) lives in nst, which plain style transfer shares; re-exported here
from nst.patches import (EPS, best_matches, cross_correlation, extract_patches, mrf_loss,  # noqa: F401
                         normalise_rows, normalised_cross_correlation, patch_norms)
# the masked Gram and its label rule live beside the mask propagation in nst (spatial control shares them)
from nst.masks import MIN_AREA, label_weights, masked_gram_loss, masked_gram_losses, masked_grams  # noqa: F401


# ---------------------------------------------------------------- semantic patches


def with_semantics(features: tf.Tensor, channels: tf.Tensor, scale: float | tf.Tensor) -> tf.Tensor:
    """Append the map: (1, h, w, C) features, (h, w, K) channels -> (1, h, w, C + K)."""
    sem = tf.cast(channels, features.dtype)[None] * scale  # (1, h, w, K)
    return tf.concat([features, sem], axis=-1)


def mean_feature_norm(features: tf.Tensor) -> tf.Tensor:
    """Root mean square over positions of the L2 norm of the feature vector: (1, h, w, C) -> scalar."""
    return tf.sqrt(tf.reduce_mean(tf.reduce_sum(tf.square(features), axis=-1)))


# ---------------------------------------------------------------- total variation


def total_variation_original(image: tf.Tensor) -> tf.Tensor:
    """The Keras doodle example's TV: sum over the (H-1, W-1) grid of (dy^2 + dx^2)^1.25, summed over channels."""
    a = tf.square(image[:, :-1, :-1, :] - image[:, 1:, :-1, :])
    b = tf.square(image[:, :-1, :-1, :] - image[:, :-1, 1:, :])
    return tf.reduce_sum(tf.pow(a + b, 1.25))
