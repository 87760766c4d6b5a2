"""Style statistics beyond the Gram matrix, as small pure functions of one layer's features.

Features are flattened to F (M positions x C channels). Every statistic may weight the positions: ``w``
(M,) non-negative and summing to 1 (None: uniform 1/M), so a region or a soft mask edge counts
linearly and a statistic does not depend on the size of what it is computed over. All functions work in
the dtype they are given (float64 in the tests, float32 in the step).

Normalisations (chosen so that one style weight serves every image size):

* covariance: S = sum_i w_i (f_i - mu)(f_i - mu)^T; loss ||S - S_t||_F^2 / (4 C^2) -- exactly the Gram
  term's eq. 2.4 with Grams divided by M (:mod:`nst.losses`), with the mean removed, so its weights are
  directly comparable with Gram's.
* wasserstein: the squared 2-Wasserstein distance between the Gaussians (mu, S) and (mu_t, S_t),
  ||mu - mu_t||^2 + tr(S + S_t - 2 (S_t^1/2 S S_t^1/2)^1/2), divided by C.
* sliced_wasserstein, histogram: squared 1-D optimal transport cost per direction (per channel for the
  histogram), sum_j w_(j) (p_(j) - Q(c_j))^2 over sorted projections, averaged over directions/channels.
  With unit directions this is on W2's scale (mean squared transport per dimension).

These three are in feature units squared, Gram and covariance in feature units to the fourth, so a style
weight tuned for Gram would hardly move them. The terms (:mod:`nst.style_terms`) therefore multiply each
layer's distance by :func:`gram_units` of the style's second moment A (the Gram target): the factor that
makes the two losses agree, to second order, for the same small change of the features -- a uniform
rescaling f -> (1 + e) f of the style's own features costs e^2 ||A||_F^2 / C^2 under eq. 2.4 and
e^2 tr(A) / C under each of these three (exactly for W2 and the histogram, in expectation over the
random directions for sliced W). The MRF term (:mod:`nst.patches`) sums over a patch's s^2 positions and
C channels, e^2 s^2 tr(A): its factor is gram_units(A) / (s^2 C).
Targets of several style images are the *mixture* of their feature distributions, image i's positions
weighted w_i / sum(w) over its own positions: the blended Gram of :func:`nst.terms.style_targets` is that
mixture's second moment, so blends mean the same thing under every form. A 1-D distribution is held as a
quantile table Q (L values at levels (l + 1/2) / L); the image's sorted values at levels c_j (the
cumulative weight up to the middle of position j: (j + 1/2) / M when uniform) read it by linear
interpolation, which resamples the style's count L to the image's M.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# Relative ridge of the matrix root in W2 (x the mean eigenvalue), per method (see :func:`trace_sqrt`): for
# eigh it only bounds sqrt's slope at ~0 eigenvalues; Newton-Schulz needs more, to converge in its iterations
# (VGG16 at 256 px, float32: after 25 iterations within 5e-5 of the exact root trace of the ridged matrix, but
# the ridge itself moves W2: -64 at the style image itself against 3.2e4 at the start image, with eigh ~0).
RIDGE = {"eigh": 1e-12, "newton_schulz": 1e-5}
NEWTON_SCHULZ_ITERATIONS = 25


def flatten(features: tf.Tensor) -> tf.Tensor:
    """(1, h, w, C) or (M, C) -> (M, C), static shapes kept where known."""
    c = features.shape[-1]
    return tf.reshape(features, (-1, c if c is not None else tf.shape(features)[-1]))


# ---------------------------------------------------------------- Gram units


def second_moment(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """(N, C) samples (weights summing to 1, None: uniform) -> their (C, C) second moment in float64: the
    Gram target of :mod:`nst.losses` (Gram / M) of the same features, blends and masks included."""
    f = np.asarray(values, np.float64)
    if weights is None:
        return f.T @ f / f.shape[0]
    return (f * np.asarray(weights, np.float64)[:, None]).T @ f


def gram_units(moment: np.ndarray) -> float:
    """||A||_F^2 / (C tr A): what a per-dimension squared distance (W2 / C, sliced W, histogram) is multiplied
    by to weigh what the Gram term weighs (module docstring). A layer whose style features are all zero
    (tr A = 0) has nothing to scale by: 0."""
    a = np.asarray(moment, np.float64)
    trace = float(np.trace(a))
    return float(np.sum(a * a) / (a.shape[0] * trace)) if trace > 0 else 0.0


# ---------------------------------------------------------------- mean and covariance


def mean_covariance(f: tf.Tensor, w: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """(M, C) features -> weighted mean (C,) and covariance (C, C) (the population one: weights sum to 1)."""
    if w is None:
        mu = tf.reduce_mean(f, axis=0)
        centred = f - mu
        return mu, tf.matmul(centred, centred, transpose_a=True) / tf.cast(tf.shape(f)[0], f.dtype)
    mu = tf.linalg.matvec(f, w, transpose_a=True)
    centred = f - mu
    return mu, tf.matmul(centred * w[:, None], centred, transpose_a=True)


def covariance_loss(cov: tf.Tensor, target_cov: tf.Tensor) -> tf.Tensor:
    """||S - S_t||_F^2 / (4 C^2): eq. 2.4 of the paper on covariances instead of Grams/M."""
    c = tf.cast(tf.shape(cov)[-1], cov.dtype)
    return tf.reduce_sum(tf.square(cov - target_cov)) / (4.0 * c * c)


def sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric PSD root of a constant matrix by eigendecomposition (float64, negative rounding clipped)."""
    a = np.asarray(a, np.float64)
    vals, vecs = np.linalg.eigh(0.5 * (a + a.T))
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def sqrtm_newton_schulz(a: tf.Tensor, iterations: int = NEWTON_SCHULZ_ITERATIONS) -> tf.Tensor:
    """A^1/2 of a symmetric positive definite matrix by coupled Newton-Schulz iterations (differentiable).

    A is scaled by its Frobenius norm first so its eigenvalues lie in (0, 1], where the iteration
    Y <- Y T, Z <- T Z, T = (3 I - Z Y) / 2 converges (Y -> A^1/2, Z -> A^-1/2); only matmuls, so the tape
    differentiates it and XLA compiles it. An eigenvalue x (scaled) needs about log(1/x) / log(2.25)
    iterations to converge: regularise A (:func:`trace_sqrt` adds a ridge).
    """
    eye = tf.eye(tf.shape(a)[-1], dtype=a.dtype)
    norm = tf.sqrt(tf.reduce_sum(tf.square(a)))
    y, z = a / norm, eye
    for _ in range(iterations):
        t = 0.5 * (3.0 * eye - tf.matmul(z, y))
        y, z = tf.matmul(y, t), tf.matmul(t, z)
    return y * tf.sqrt(norm)


def trace_sqrt(a: tf.Tensor, method: str = "eigh", ridge: float | None = None,
               iterations: int = NEWTON_SCHULZ_ITERATIONS) -> tf.Tensor:
    """tr A^1/2 of a symmetric PSD matrix, differentiable and finite at singular A.

    ``eigh`` (default): sum_i sqrt(max(lambda_i, eps)), eigenvalues by tf.linalg.eigvalsh, whose gradient
    V diag(g) V^T needs no eigenvalue gaps (repeated eigenvalues are safe); eigenvalues under eps =
    ridge x the mean eigenvalue (dead ReLU channels give exact zeros, rounding gives small negatives) are
    held at eps, which bounds sqrt's slope. ``newton_schulz``: the trace of :func:`sqrtm_newton_schulz`
    of A + eps I (matmuls only). ``ridge`` defaults to RIDGE[method].
    """
    if method not in RIDGE:
        raise ValueError(f"unknown matrix root method {method!r}: use one of {sorted(RIDGE)}")
    ridge = RIDGE[method] if ridge is None else ridge
    c = tf.shape(a)[-1]
    eps = ridge * tf.linalg.trace(a) / tf.cast(c, a.dtype) + tf.cast(1e-30, a.dtype)
    if method == "eigh":
        return tf.reduce_sum(tf.sqrt(tf.maximum(tf.linalg.eigvalsh(a), eps)))
    return tf.linalg.trace(sqrtm_newton_schulz(a + eps * tf.eye(c, dtype=a.dtype), iterations))


def wasserstein_loss(mu: tf.Tensor, cov: tf.Tensor, target_mu: tf.Tensor, target_cov: tf.Tensor,
                     target_cov_sqrt: tf.Tensor, method: str = "eigh", ridge: float | None = None,
                     iterations: int = NEWTON_SCHULZ_ITERATIONS) -> tf.Tensor:
    """W2^2 between Gaussians (mu, S) and (mu_t, S_t), divided by C; S_t^1/2 is given (a constant, rooted once).

    ||mu - mu_t||^2 + tr S + tr S_t - 2 tr (S_t^1/2 S S_t^1/2)^1/2 (:func:`trace_sqrt`). The sum cancels
    to ~0 for equal distributions, so rounding leaves about 1e-6 x tr(S_t) / C in float32 (callers that
    need less work in float64); it may fall a hair below 0.
    """
    inner = tf.matmul(target_cov_sqrt, tf.matmul(cov, target_cov_sqrt))
    inner = 0.5 * (inner + tf.transpose(inner))
    cross = trace_sqrt(inner, method, ridge, iterations)
    w2 = (tf.reduce_sum(tf.square(mu - target_mu)) + tf.linalg.trace(cov) + tf.linalg.trace(target_cov)
          - 2.0 * cross)
    return w2 / tf.cast(tf.shape(cov)[-1], cov.dtype)


def wasserstein_loss_positions(f: tf.Tensor, w: tf.Tensor | None, target_mu: tf.Tensor, target_cov: tf.Tensor,
                               method: str = "eigh", ridge: float | None = None,
                               iterations: int = NEWTON_SCHULZ_ITERATIONS) -> tf.Tensor:
    """:func:`wasserstein_loss` of the features ``f`` (M, C) themselves, its root taken on the M x M side.

    With A = diag(w)^1/2 (F - mu) S_t^1/2, S_t^1/2 S S_t^1/2 = A^T A and A A^T = diag(w)^1/2 (F - mu) S_t
    (F - mu)^T diag(w)^1/2 have the same non-zero eigenvalues: when the layer has fewer positions than
    channels (small images, deep layers) this roots an M x M matrix instead of a C x C one.
    """
    m = tf.shape(f)[0]
    scale = tf.sqrt(w) if w is not None else tf.fill((m,), tf.math.rsqrt(tf.cast(m, f.dtype)))
    mu = tf.linalg.matvec(f, scale * scale, transpose_a=True)
    a = (f - mu) * scale[:, None]  # (M, C)
    k = tf.matmul(a, tf.matmul(a, target_cov), transpose_b=True)  # (M, M)
    cross = trace_sqrt(0.5 * (k + tf.transpose(k)), method, ridge, iterations)
    w2 = tf.reduce_sum(tf.square(mu - target_mu)) + tf.reduce_sum(tf.square(a)) + tf.linalg.trace(target_cov) \
        - 2.0 * cross
    return w2 / tf.cast(tf.shape(f)[1], f.dtype)


# ---------------------------------------------------------------- 1-D distributions (sorted values)


def quantile_table(values: tf.Tensor, weights: tf.Tensor | None = None, levels: int | None = None) -> tf.Tensor:
    """Per column, the quantile function of the weighted samples ``values`` (N, K) at ``levels`` points.

    Row l is the quantile at (l + 1/2) / L. Uniform weights and L = N (the default): exactly the sorted
    columns. Otherwise the weighted CDF through (cumulative weight at each sample's middle, value) is
    inverted by linear interpolation, clamped to the extreme samples.
    """
    n = int(values.shape[0])
    levels = levels or n
    if weights is None and levels == n:
        return tf.sort(values, axis=0)
    if weights is None:
        weights = tf.fill((n,), tf.cast(1.0 / n, values.dtype))
    weights = tf.cast(weights, values.dtype)
    weights = weights / tf.reduce_sum(weights)
    order = tf.argsort(values, axis=0, stable=True)  # (N, K)
    v = tf.gather(tf.transpose(values), tf.transpose(order), batch_dims=1)  # (K, N) each column sorted
    w = tf.gather(weights, order)  # (N, K)
    c = tf.transpose(tf.cumsum(w, axis=0) - 0.5 * w)  # (K, N) ascending per column
    if n == 1:
        return tf.broadcast_to(values, (levels, tf.shape(values)[1]))
    q = (tf.range(levels, dtype=values.dtype) + 0.5) / levels
    q = tf.broadcast_to(q[None], (tf.shape(c)[0], levels))  # (K, L)
    hi = tf.clip_by_value(tf.searchsorted(c, q, side="right"), 1, n - 1)
    lo = hi - 1
    c0, c1 = tf.gather(c, lo, batch_dims=1), tf.gather(c, hi, batch_dims=1)
    v0, v1 = tf.gather(v, lo, batch_dims=1), tf.gather(v, hi, batch_dims=1)
    t = tf.clip_by_value(tf.math.divide_no_nan(q - c0, c1 - c0), 0.0, 1.0)
    return tf.transpose(v0 + t * (v1 - v0))  # (L, K)


def _lookup(cols: tf.Tensor, levels: tf.Tensor) -> tf.Tensor:
    """Quantile tables as rows ``cols`` (K, L) read at ``levels`` in [0, 1]: (1, M) shared by every row, or
    (K, M) -> (K, M), by linear interpolation between the table's levels (l + 1/2) / L, clamped at the ends."""
    size = tf.shape(cols)[1]
    pos = tf.clip_by_value(levels * tf.cast(size, cols.dtype) - 0.5, 0.0, tf.cast(size - 1, cols.dtype))
    lo = tf.cast(tf.floor(pos), tf.int32)
    hi = tf.minimum(lo + 1, size - 1)
    frac = pos - tf.cast(lo, cols.dtype)
    if levels.shape[0] == 1:  # the same levels for every row
        return tf.gather(cols, lo[0], axis=1) * (1.0 - frac) + tf.gather(cols, hi[0], axis=1) * frac
    return tf.gather(cols, lo, batch_dims=1) * (1.0 - frac) + tf.gather(cols, hi, batch_dims=1) * frac


def _sorted_rows(rows: tf.Tensor, w: tf.Tensor | None):
    """Rows of ``rows`` (K, M) sorted, their permutation, each sorted entry's level, and its weight (or None)."""
    order = tf.argsort(rows, axis=-1, stable=True)  # (K, M); TF's CPU sort is the cost of the 1-D forms
    ordered = tf.gather(rows, order, batch_dims=1)
    m = tf.shape(rows)[1]
    if w is None:
        levels = ((tf.cast(tf.range(m), rows.dtype) + 0.5) / tf.cast(m, rows.dtype))[None]  # (1, M)
        return ordered, order, levels, None
    ws = tf.gather(w, order)  # (K, M)
    return ordered, order, tf.cumsum(ws, axis=1) - 0.5 * ws, ws


def _sorted_transport(rows: tf.Tensor, table: tf.Tensor, w: tf.Tensor | None) -> tf.Tensor:
    ordered, _, levels, ws = _sorted_rows(rows, w)
    diff = tf.square(ordered - tf.stop_gradient(_lookup(tf.transpose(table), levels)))
    if ws is None:
        return tf.reduce_mean(diff)
    return tf.reduce_sum(ws * diff) / tf.cast(tf.shape(rows)[0], rows.dtype)


def sorted_transport_loss(values: tf.Tensor, table: tf.Tensor, w: tf.Tensor | None = None) -> tf.Tensor:
    """Mean over columns of the 1-D W2^2 between the (weighted) columns of ``values`` (M, K) and ``table`` (L, K).

    sum_j w_(j) (v_(j) - Q(c_j))^2 over each column's sorted values; the sort is piecewise constant, so the
    gradient flows through the sorted values only (exactly the gradient of the optimal transport cost).
    """
    return _sorted_transport(tf.transpose(values), table, w)


def random_directions(channels: int, count: int, seed: int, draw: int = 0, stream: int = 0) -> np.ndarray:
    """(C, K) unit columns, Gaussian then normalised: uniform on the sphere, reproducible from
    (seed, draw, stream) -- a stream per layer, a draw per optimiser round."""
    d = np.random.default_rng([seed, draw, stream]).standard_normal((channels, count))
    return d / np.linalg.norm(d, axis=0, keepdims=True)


def sliced_wasserstein_loss(f: tf.Tensor, directions: tf.Tensor, table: tf.Tensor,
                            w: tf.Tensor | None = None) -> tf.Tensor:
    """Heitz et al. 2021: features (M, C) projected on ``directions`` (C, K), against the style's sorted
    projections ``table`` (L, K) (:func:`quantile_table` of the style features times the same directions)."""
    return _sorted_transport(tf.matmul(directions, f, transpose_a=True, transpose_b=True), table, w)  # (K, M)


def histogram_remap(f: tf.Tensor, table: tf.Tensor, w: tf.Tensor | None = None) -> tf.Tensor:
    """Risser et al. 2017: each channel of ``f`` (M, C) remapped, rank for rank, onto the style's quantiles
    ``table`` (L, C): the result has the style's per-channel histogram and the image's per-channel order."""
    _, order, levels, _ = _sorted_rows(tf.transpose(f), w)
    matched = _lookup(tf.transpose(table), levels)  # (C, M) in sorted order
    inverse = tf.argsort(order, axis=-1)  # where each entry sits in its channel's sort
    return tf.transpose(tf.gather(matched, inverse, batch_dims=1))


def histogram_loss(f: tf.Tensor, table: tf.Tensor, w: tf.Tensor | None = None) -> tf.Tensor:
    """sum_i w_i sum_c (F_ic - R_ic)^2 / C with R = stop_gradient(:func:`histogram_remap`) (uniform w_i = 1/M).

    Summed in each channel's sorted order, where R is the style's quantile at each rank: the same value
    and the same gradient 2 w_i (F_ic - R_ic) / C as in the image's order, without inverting the sort.
    """
    return _sorted_transport(tf.transpose(f), table, w)
