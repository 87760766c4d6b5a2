"""nst.losses against naive oracles: the paper's equations written out as explicit Python loops.

Gatys, Ecker & Bethge 2015: eq. 2.1 (Gram), 2.2 (content), 2.4 (layer style), 2.5 (weighted sum over layers);
plus total variation. Features are (1, H, W, C): N = C filters, M = H*W positions.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from nst.losses import content_loss, gram_matrix, layer_style_loss, style_loss, total_variation


def rand(shape, seed, dtype=np.float64, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


# ---------------------------------------------------------------- oracles (deliberately naive)


def naive_gram(f: np.ndarray) -> np.ndarray:
    """G_ij = sum_k F_ik F_jk, k over every position (y, x) of the (1, H, W, C) feature map."""
    _, h, w, c = f.shape
    g = np.zeros((c, c))
    for i in range(c):
        for j in range(c):
            s = 0.0
            for y in range(h):
                for x in range(w):
                    s += float(f[0, y, x, i]) * float(f[0, y, x, j])
            g[i, j] = s
    return g


def naive_content(f: np.ndarray, p: np.ndarray) -> float:
    s = 0.0
    for v, t in zip(f.ravel().tolist(), p.ravel().tolist()):
        s += (v - t) ** 2
    return 0.5 * s


def naive_layer_style(g: np.ndarray, a: np.ndarray, n: int, m: int) -> float:
    """Eq. 2.4: E = 1 / (4 N^2 M^2) sum_ij (G_ij - A_ij)^2."""
    s = 0.0
    for i in range(g.shape[0]):
        for j in range(g.shape[1]):
            s += (g[i, j] - a[i, j]) ** 2
    return s / (4.0 * n * n * m * m)


def naive_tv(img: np.ndarray) -> float:
    _, h, w, c = img.shape
    s = 0.0
    for y in range(h):
        for x in range(w):
            for ch in range(c):
                if y + 1 < h:
                    s += (float(img[0, y + 1, x, ch]) - float(img[0, y, x, ch])) ** 2
                if x + 1 < w:
                    s += (float(img[0, y, x + 1, ch]) - float(img[0, y, x, ch])) ** 2
    return s


# ---------------------------------------------------------------- eq. 2.1


@pytest.mark.parametrize("shape", [(1, 3, 4, 5), (1, 1, 7, 2), (1, 6, 2, 8)])
def test_gram_matches_triple_loop(shape):
    f = rand(shape, seed=sum(shape))
    got = gram_matrix(tf.constant(f)).numpy()
    want = naive_gram(f)
    assert got.shape == (shape[-1], shape[-1])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got, got.T)  # a Gram matrix is symmetric


def test_gram_normalize_divides_by_positions():
    f = rand((1, 3, 5, 4), seed=1)
    m = 3 * 5
    got = gram_matrix(tf.constant(f), normalize=True).numpy()
    np.testing.assert_allclose(got, naive_gram(f) / m, rtol=1e-12)


def test_gram_float32_close_to_float64_oracle():
    f = rand((1, 4, 4, 6), seed=2, dtype=np.float32, scale=10.0)
    got = gram_matrix(tf.constant(f)).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, naive_gram(f), rtol=1e-5, atol=1e-3)


# ---------------------------------------------------------------- eq. 2.2


def test_content_loss_matches_loop():
    f, p = rand((1, 3, 4, 5), 3), rand((1, 3, 4, 5), 4)
    np.testing.assert_allclose(content_loss(tf.constant(f), tf.constant(p)).numpy(), naive_content(f, p), rtol=1e-12)


def test_content_loss_original_form_matches_loop():
    """The original code's form: sum (F - P)^2 / (4 N M)."""
    f, p = rand((1, 3, 4, 5), 5), rand((1, 3, 4, 5), 6)
    n, m = 5, 3 * 4
    want = 2.0 * naive_content(f, p) / (4.0 * n * m)
    got = content_loss(tf.constant(f), tf.constant(p), "original").numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)


# ---------------------------------------------------------------- eq. 2.4


def test_layer_style_loss_matches_eq_2_4_with_raw_grams():
    shape = (1, 4, 3, 6)
    f, s = rand(shape, 7), rand(shape, 8)
    n, m = shape[-1], shape[1] * shape[2]
    g, a = naive_gram(f), naive_gram(s)
    got = layer_style_loss(tf.constant(g), tf.constant(a), n, m).numpy()
    np.testing.assert_allclose(got, naive_layer_style(g, a, n, m), rtol=1e-12)


def test_layer_style_loss_normalised_form_equals_raw_form():
    """E(G/M, A/M, N, M=1) == E(G, A, N, M): the normalised Grams the engine uses give eq. 2.4 unchanged."""
    shape = (1, 5, 4, 3)
    f, s = rand(shape, 9), rand(shape, 10)
    n, m = shape[-1], shape[1] * shape[2]
    g, a = tf.constant(naive_gram(f)), tf.constant(naive_gram(s))
    raw = layer_style_loss(g, a, n, m).numpy()
    normalised = layer_style_loss(g / m, a / m, n, 1).numpy()
    np.testing.assert_allclose(normalised, raw, rtol=1e-12)
    assert raw > 0


# ---------------------------------------------------------------- eq. 2.5


def test_style_loss_weighted_sum_over_layers_vs_oracle():
    """Layers of different sizes and channel counts; style targets from an image of ANOTHER size (its own M)."""
    shapes = {"a": ((1, 6, 5, 3), (1, 9, 7, 3)), "b": ((1, 3, 2, 4), (1, 5, 3, 4)), "c": ((1, 2, 2, 2), (1, 1, 3, 2))}
    weights = {"a": 0.2, "b": 1.5, "c": 0.7}
    feats, targets, want = {}, {}, 0.0
    for i, (name, (gen_shape, sty_shape)) in enumerate(shapes.items()):
        f = rand(gen_shape, 20 + i, np.float32)
        s = rand(sty_shape, 40 + i, np.float32)
        m_gen, m_sty, n = gen_shape[1] * gen_shape[2], sty_shape[1] * sty_shape[2], gen_shape[-1]
        g_norm, a_norm = naive_gram(f) / m_gen, naive_gram(s) / m_sty
        feats[name] = tf.constant(f)
        targets[name] = tf.constant(a_norm.astype(np.float32))
        want += weights[name] * naive_layer_style(g_norm, a_norm, n, 1)
    got = style_loss(feats, targets, weights).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_style_loss_equals_eq_2_5_with_raw_grams_when_sizes_match():
    shapes = {"a": (1, 4, 4, 3), "b": (1, 2, 3, 5)}
    weights = {"a": 0.5, "b": 2.0}
    feats, targets, want = {}, {}, 0.0
    for i, (name, shape) in enumerate(shapes.items()):
        f, s = rand(shape, 60 + i, np.float32), rand(shape, 70 + i, np.float32)
        n, m = shape[-1], shape[1] * shape[2]
        feats[name] = tf.constant(f)
        targets[name] = gram_matrix(tf.constant(s), normalize=True)
        want += weights[name] * naive_layer_style(naive_gram(f), naive_gram(s), n, m)
    np.testing.assert_allclose(style_loss(feats, targets, weights).numpy(), want, rtol=1e-5)


def test_style_loss_only_uses_weighted_layers():
    f = {"a": tf.constant(rand((1, 3, 3, 2), 80, np.float32)), "b": tf.constant(rand((1, 3, 3, 2), 81, np.float32))}
    t = {k: tf.zeros((2, 2)) for k in f}
    only_a = style_loss(f, t, {"a": 1.0}).numpy()
    both = style_loss(f, t, {"a": 1.0, "b": 1.0}).numpy()
    assert 0 < only_a < both


# ---------------------------------------------------------------- total variation


@pytest.mark.parametrize("shape", [(1, 5, 4, 3), (1, 1, 6, 3), (1, 7, 1, 3)])
def test_total_variation_matches_loop(shape):
    img = rand(shape, 90, scale=50.0)
    np.testing.assert_allclose(total_variation(tf.constant(img)).numpy(), naive_tv(img), rtol=1e-12)


# ---------------------------------------------------------------- minima


def test_losses_are_zero_at_their_targets():
    f = tf.constant(rand((1, 4, 5, 6), 100, np.float32, scale=3.0))
    assert content_loss(f, f).numpy() == 0.0
    assert content_loss(f, f, "original").numpy() == 0.0
    target = {"x": gram_matrix(f, normalize=True)}
    assert style_loss({"x": f}, target, {"x": 1.0}).numpy() == 0.0
    flat = tf.fill((1, 8, 8, 3), 117.0)
    assert total_variation(flat).numpy() == 0.0
    # ... and strictly positive away from them
    g = f + 0.01
    assert content_loss(g, f).numpy() > 0
    assert style_loss({"x": g}, target, {"x": 1.0}).numpy() > 0
