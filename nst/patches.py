"""Patch matching for MRF style losses (Li & Wand 2016, arXiv:1601.04589) as small pure functions.

Features are cut into size x size patches (:func:`extract_patches`); each target patch is matched to the
style patch with the highest normalised cross-correlation (cosine of the flattened patches), optionally
plus ``semantic_weight`` times the NCC of map patches (Champandard 2016's semantic doodles: each block
normalised on its own, so that a strong map does not turn the match into a raw dot product that favours
high-contrast patches). All scores come from convolutions of the target with the normalised style patches
as filters, in chunks of style patches (never a loop over single patches). :func:`mrf_loss` is the mean
over target patches of the squared distance to the matched style patch (Li & Wand's sum divided by the
number of target patches, so one weight serves every image size).

Used by plain style transfer (:mod:`nst.style_terms`) and by the doodle (:mod:`doodle.losses` re-exports
these names); it lives in nst because nst never imports doodle.
"""

from __future__ import annotations

import tensorflow as tf

EPS = 1e-8


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
