"""Doodle losses as small pure functions over tensors: the masked (regional) Gram loss and semantic patches.

* Masked Gram (the Keras 2 ``neural_doodle`` example, after Gatys et al. 2015): one Gram matrix per label,
  computed over that label's region only. With features F (M positions x C channels) and a mask m (M,):

  - ``area`` form (ours, the default): G = F^T diag(m) F / sum(m), the mask-weighted *mean* outer product,
    so a region's Gram does not depend on its size, and a soft mask edge counts linearly. Per label the
    loss is eq. 2.4 with Grams already divided by M: sum (G_t - G_s)^2 / (4 C^2).
  - ``original`` form (the Keras example exactly): G = (F * m)^T (F * m) / mean(m) / C and the loss
    mean((G_t - G_s)^2); the Gram is not divided by M, so its scale grows with the image.

  Labels are summed with equal weight (as the original); a label whose region covers under one feature
  position of the style or of the target at a layer is left out of that layer (its weight is 0).

* Semantic patches (Champandard 2016, arXiv:1603.01768; MRF loss of Li & Wand 2016, arXiv:1601.04589):
  features and the semantic map (its channels downsampled to the layer) are cut into size x size patches;
  each target patch is matched to the style patch with the highest normalised cross-correlation of the
  feature+map concatenation, each block normalised on its own and the map's weighted by semantic_weight:
  score = NCC(features) + semantic_weight * NCC(map). (Normalising the plain concatenation instead lets a
  strong map turn the score into a raw dot product, which favours the brightest, most contrasted style
  patches.) All scores come at once from convolutions of the target with the normalised style patches as
  filters (in chunks of style patches, never a loop over single patches). The loss is the mean over
  target patches of the squared distance to the matched style patch (the sum of Li & Wand divided by the
  number of target patches, so that one weight serves every image size and phase).
"""

from __future__ import annotations

import tensorflow as tf

EPS = 1e-8
# A label must cover at least this many feature positions (mask sum) of a layer to take part in it.
MIN_AREA = 1.0


# ---------------------------------------------------------------- masked Gram


def masked_grams(features: tf.Tensor, masks: tf.Tensor, form: str = "area") -> tf.Tensor:
    """(1, h, w, C) features and (h, w, K) masks -> (K, C, C) per-label Grams (see module doc for ``form``)."""
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


# ---------------------------------------------------------------- semantic patches


def with_semantics(features: tf.Tensor, channels: tf.Tensor, scale: float | tf.Tensor) -> tf.Tensor:
    """Append the map: (1, h, w, C) features, (h, w, K) channels -> (1, h, w, C + K)."""
    sem = tf.cast(channels, features.dtype)[None] * scale  # (1, h, w, K)
    return tf.concat([features, sem], axis=-1)


def mean_feature_norm(features: tf.Tensor) -> tf.Tensor:
    """Root mean square over positions of the L2 norm of the feature vector: (1, h, w, C) -> scalar."""
    return tf.sqrt(tf.reduce_mean(tf.reduce_sum(tf.square(features), axis=-1)))


def extract_patches(features: tf.Tensor, size: int = 3, stride: int = 1) -> tf.Tensor:
    """(1, h, w, C) -> (N, size * size * C): every valid patch, raster order, each flattened (row, col, chan)."""
    p = tf.image.extract_patches(features, [1, size, size, 1], [1, stride, stride, 1], [1, 1, 1, 1], "VALID")
    return tf.reshape(p, (-1, p.shape[-1]))  # (N, s*s*C)


def normalise_rows(patches: tf.Tensor) -> tf.Tensor:
    """(N, D) -> each row divided by its L2 norm (zero rows stay zero)."""
    return patches / (tf.norm(patches, axis=1, keepdims=True) + EPS)


def _as_filters(patches: tf.Tensor, size: int, channels: int) -> tf.Tensor:
    """(N, s*s*C) -> (s, s, C, N) convolution filters, filter n = patch n."""
    return tf.transpose(tf.reshape(patches, (-1, size, size, channels)), (1, 2, 3, 0))


def cross_correlation(target: tf.Tensor, style_patches: tf.Tensor, size: int = 3) -> tf.Tensor:
    """<target patch, style patch> for every pair: (1, h, w, C), (N, s*s*C) -> (h' * w', N) by one conv2d."""
    channels = target.shape[-1]
    scores = tf.nn.conv2d(target, _as_filters(style_patches, size, channels), 1, "VALID")  # (1, h', w', N)
    return tf.reshape(scores, (-1, tf.shape(style_patches)[0]))  # (h'*w', N)


def normalised_cross_correlation(target: tf.Tensor, style_patches: tf.Tensor, size: int = 3) -> tf.Tensor:
    """Cosine similarity of every target patch with every style patch: (h' * w', N), values in [-1, 1]."""
    return cross_correlation(target, normalise_rows(style_patches), size) / (patch_norms(target, size) + EPS)


def patch_norms(features: tf.Tensor, size: int = 3) -> tf.Tensor:
    """L2 norm of every valid size x size patch: (1, h, w, C) -> (h' * w', 1), by one convolution of the squares."""
    ones = tf.ones((size, size, features.shape[-1], 1), features.dtype)
    sums = tf.nn.conv2d(tf.square(features), ones, 1, "VALID")  # (1, h', w', 1)
    return tf.sqrt(tf.reshape(sums, (-1, 1)))  # (h'*w', 1)


def best_matches(target: tf.Tensor, style_patches: tf.Tensor, size: int = 3, chunk: int = 2048,
                 target_map: tf.Tensor | None = None, style_map_patches: tf.Tensor | None = None,
                 semantic_weight: float = 0.0) -> tf.Tensor:
    """Index of the best style patch for every target patch: (h' * w',) int32.

    score = NCC(feature patches) + semantic_weight * NCC(map patches), each NCC the cosine of the
    flattened patches — the normalised cross-correlation of the feature+map concatenation when each block
    is normalised on its own, so that the map weighs the same whatever the features' magnitude (and a
    strong map does not turn the match into a raw dot product that favours high-contrast patches).
    ``target`` (1, h, w, C) and ``style_patches`` (N, s*s*C); ``target_map`` (1, h, w, K) and
    ``style_map_patches`` (N, s*s*K) optional. Style patches go through the convolutions ``chunk`` at a
    time to bound memory.
    """
    use_map = target_map is not None and semantic_weight > 0
    feats = normalise_rows(style_patches)
    t_norm = patch_norms(target, size) + EPS  # (h'*w', 1)
    if use_map:
        maps = normalise_rows(style_map_patches)
        m_norm = patch_norms(target_map, size) + EPS
    best_score, best_index = None, None
    for start in range(0, int(feats.shape[0]), chunk):
        scores = cross_correlation(target, feats[start:start + chunk], size) / t_norm  # (h'*w', n)
        if use_map:
            scores += semantic_weight * cross_correlation(target_map, maps[start:start + chunk], size) / m_norm
        score = tf.reduce_max(scores, axis=1)
        index = tf.argmax(scores, axis=1, output_type=tf.int32) + start
        if best_score is None:
            best_score, best_index = score, index
        else:
            better = score > best_score
            best_score = tf.where(better, score, best_score)
            best_index = tf.where(better, index, best_index)
    return best_index


def mrf_loss(features: tf.Tensor, matched: tf.Tensor, size: int = 3) -> tf.Tensor:
    """Mean over target patches of ||patch - matched style patch||^2: (1, h, w, C), (h' * w', s*s*C) -> scalar."""
    patches = extract_patches(features, size)  # (h'*w', s*s*C)
    return tf.reduce_sum(tf.square(patches - matched)) / tf.cast(tf.shape(patches)[0], patches.dtype)


# ---------------------------------------------------------------- total variation


def total_variation_original(image: tf.Tensor) -> tf.Tensor:
    """The Keras doodle example's TV: sum over the (H-1, W-1) grid of (dy^2 + dx^2)^1.25, summed over channels."""
    a = tf.square(image[:, :-1, :-1, :] - image[:, 1:, :-1, :])
    b = tf.square(image[:, :-1, :-1, :] - image[:, :-1, 1:, :])
    return tf.reduce_sum(tf.pow(a + b, 1.25))
