"""doodle.losses against naive oracles written out as loops, on tiny synthetic features.

Masked (regional) Gram loss of the Keras neural_doodle example, in our ``area`` form and the example's
``original`` form; Champandard's (2016) semantic patch matching: patch extraction, normalised
cross-correlation by convolution, best match (with and without the map), MRF loss (Li & Wand 2016).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from doodle.losses import (
    MIN_AREA,
    best_matches,
    extract_patches,
    label_weights,
    masked_gram_loss,
    masked_gram_losses,
    masked_grams,
    mrf_loss,
    normalised_cross_correlation,
    total_variation_original,
)


def rand(shape, seed, low=0.0):
    return (np.random.default_rng(seed).uniform(low, 1.0, shape)).astype(np.float32)


def t(x):
    return tf.constant(x, tf.float32)


# ---------------------------------------------------------------- oracles (deliberately naive)


def naive_masked_gram(f: np.ndarray, m: np.ndarray, form: str) -> np.ndarray:
    """f (1, H, W, C), m (H, W): area: sum_p m_p f_p f_p^T / sum m; original: Gram(f*m) / mean(m) / C."""
    _, h, w, c = f.shape
    g = np.zeros((c, c))
    for i in range(c):
        for j in range(c):
            s = 0.0
            for y in range(h):
                for x in range(w):
                    a, b = float(f[0, y, x, i]), float(f[0, y, x, j])
                    mm = float(m[y, x])
                    s += mm * a * b if form == "area" else (mm * a) * (mm * b)
            g[i, j] = s
    if form == "area":
        return g / float(m.sum())
    return g / float(m.mean()) / c


def naive_region_loss(f, m, style_f, style_m, form) -> float:
    gt, gs = naive_masked_gram(f, m, form), naive_masked_gram(style_f, style_m, form)
    c = f.shape[-1]
    sq = [(gt[i, j] - gs[i, j]) ** 2 for i in range(c) for j in range(c)]
    return sum(sq) / (4.0 * c * c) if form == "area" else sum(sq) / (c * c)


def naive_patches(f: np.ndarray, s: int, stride: int = 1) -> list[np.ndarray]:
    """Every valid s x s patch in raster order, flattened (row, col, channel)."""
    _, h, w, _ = f.shape
    out = []
    for y in range(0, h - s + 1, stride):
        for x in range(0, w - s + 1, stride):
            out.append(f[0, y:y + s, x:x + s, :].reshape(-1).astype(np.float64))
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---------------------------------------------------------------- masked Gram


@pytest.mark.parametrize("form", ["area", "original"])
def test_masked_grams_match_the_loop(form):
    f = rand((1, 5, 6, 4), 0)
    masks = rand((5, 6, 3), 1)  # soft masks: the weighting must be linear (area) / squared (original)
    got = masked_grams(t(f), t(masks), form).numpy()
    assert got.shape == (3, 4, 4)
    for k in range(3):
        np.testing.assert_allclose(got[k], naive_masked_gram(f, masks[..., k], form), rtol=1e-5)


@pytest.mark.parametrize("form", ["area", "original"])
def test_per_label_loss_matches_the_loop(form):
    f, sf = rand((1, 4, 5, 3), 2), rand((1, 6, 4, 3), 3)  # style and target of different sizes
    lab_t = np.random.default_rng(4).integers(0, 2, (4, 5))
    lab_s = np.random.default_rng(5).integers(0, 2, (6, 4))
    mt = np.eye(2, dtype=np.float32)[lab_t]  # (4, 5, 2) one-hot
    ms = np.eye(2, dtype=np.float32)[lab_s]
    targets = masked_grams(t(sf), t(ms), form)
    got = masked_gram_losses(t(f), t(mt), targets, form).numpy()
    want = [naive_region_loss(f, mt[..., k], sf, ms[..., k], form) for k in range(2)]
    np.testing.assert_allclose(got, want, rtol=1e-4)
    total = masked_gram_loss(t(f), t(mt), targets, tf.constant([1.0, 0.0]), form).numpy()
    np.testing.assert_allclose(total, want[0], rtol=1e-4)


def test_area_form_does_not_depend_on_region_size():
    """The same texture tiled over a bigger region has the same area-normalised Gram."""
    tile = rand((1, 2, 2, 3), 6)
    small = np.tile(tile, (1, 2, 2, 1))
    big = np.tile(tile, (1, 4, 4, 1))
    g_small = masked_grams(t(small), t(np.ones((4, 4, 1))), "area").numpy()
    g_big = masked_grams(t(big), t(np.ones((8, 8, 1))), "area").numpy()
    np.testing.assert_allclose(g_small, g_big, rtol=1e-5)


def test_label_weights_leave_out_labels_missing_on_either_side():
    s = np.zeros((4, 4, 3), np.float32)
    s[..., 0] = 1.0
    s[0, 0] = [0.0, 1.0, 0.0]  # label 1 covers one position of the style
    tm = np.zeros((4, 4, 3), np.float32)
    tm[..., 1] = 1.0
    tm[:2, :2] = [1.0, 0.0, 0.0]
    tm[3, 3] = [0.0, 0.5, 0.5]  # label 2: half a position in the target, none in the style
    got = label_weights(t(s), t(tm)).numpy()
    assert MIN_AREA == 1.0
    np.testing.assert_array_equal(got, [1.0, 1.0, 0.0])


# ---------------------------------------------------------------- patches


@pytest.mark.parametrize("stride", [1, 2])
def test_extract_patches_order_and_content(stride):
    f = rand((1, 5, 6, 2), 7)
    got = extract_patches(t(f), 3, stride).numpy()
    want = np.stack(naive_patches(f, 3, stride))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_normalised_cross_correlation_equals_the_loop():
    target = rand((1, 5, 4, 3), 8)
    style = rand((1, 4, 5, 3), 9)
    style_patches = extract_patches(t(style), 3)
    got = normalised_cross_correlation(t(target), style_patches, 3).numpy()  # (6, 6)
    tp, sp = naive_patches(target, 3), naive_patches(style, 3)
    want = np.array([[cosine(a, b) for b in sp] for a in tp])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _hand_built():
    """Style: 6 distinct random patches laid side by side; target: copies of patches 4, 0, 5 (scaled)."""
    rng = np.random.default_rng(10)
    bank = rng.uniform(0.0, 1.0, (6, 3, 3, 4)).astype(np.float32)
    return bank, [4, 0, 5]


def test_best_match_finds_the_copied_patch_even_when_scaled():
    bank, picks = _hand_built()
    style_patches = t(bank.reshape(6, -1))
    for i, k in enumerate(picks):
        target = bank[k][None] * (1.0 + 2.0 * i)  # brightness must not matter to a normalised correlation
        index = best_matches(t(target), style_patches, 3).numpy()
        assert index.tolist() == [k]


def test_best_match_on_a_convolved_image_matches_the_argmax_of_the_loop():
    target, style = rand((1, 7, 6, 3), 11), rand((1, 6, 7, 3), 12)
    style_patches = extract_patches(t(style), 3)
    for chunk in (1, 4, 2048):  # chunking style patches must not change the answer
        got = best_matches(t(target), style_patches, 3, chunk=chunk).numpy()
        tp, sp = naive_patches(target, 3), naive_patches(style, 3)
        want = [int(np.argmax([cosine(a, b) for b in sp])) for a in tp]
        assert got.tolist() == want


def test_semantic_map_decides_between_equal_features():
    """Two identical style patches labelled 0 and 1: the target's map picks the right one."""
    bank, _ = _hand_built()
    feats = np.stack([bank[2], bank[2], bank[3]])  # patches 0 and 1 identical
    maps = np.zeros((3, 3, 3, 2), np.float32)
    maps[0, ..., 0] = 1.0
    maps[1, ..., 1] = 1.0
    maps[2, ..., 1] = 1.0
    target = bank[2][None]
    for label in (0, 1):
        target_map = np.zeros((1, 3, 3, 2), np.float32)
        target_map[..., label] = 1.0
        index = best_matches(t(target), t(feats.reshape(3, -1)), 3, target_map=t(target_map),
                             style_map_patches=t(maps.reshape(3, -1)), semantic_weight=1.0).numpy()
        assert index.tolist() == [label]


def test_semantic_weight_overrules_features():
    """A strong map sends the target to a worse feature match inside its own label."""
    bank, _ = _hand_built()
    feats = np.stack([bank[1], bank[2]])
    maps = np.zeros((2, 3, 3, 2), np.float32)
    maps[0, ..., 0] = 1.0
    maps[1, ..., 1] = 1.0
    target_map = np.zeros((1, 3, 3, 2), np.float32)
    target_map[..., 1] = 1.0
    kw = dict(target_map=t(target_map), style_map_patches=t(maps.reshape(2, -1)))
    target = t(bank[1][None])  # features say patch 0, the map says label 1 = patch 1
    assert best_matches(target, t(feats.reshape(2, -1)), 3, semantic_weight=0.0, **kw).numpy().tolist() == [0]
    assert best_matches(target, t(feats.reshape(2, -1)), 3, semantic_weight=10.0, **kw).numpy().tolist() == [1]


def test_mrf_loss_is_the_mean_squared_patch_distance():
    f = rand((1, 4, 5, 2), 13)
    matched = rand((6, 18), 14)
    got = mrf_loss(t(f), t(matched), 3).numpy()
    patches = naive_patches(f, 3)
    want = sum(float(np.sum((p - m) ** 2)) for p, m in zip(patches, matched.astype(np.float64))) / len(patches)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_mrf_loss_is_zero_on_its_own_patches_and_gradient_flows():
    f = t(rand((1, 4, 4, 2), 15))
    matched = extract_patches(f, 3)
    assert float(mrf_loss(f, matched, 3)) == pytest.approx(0.0, abs=1e-10)
    x = tf.Variable(rand((1, 4, 4, 2), 16))
    with tf.GradientTape() as tape:
        loss = mrf_loss(x, matched, 3)
    assert np.abs(tape.gradient(loss, x).numpy()).sum() > 0


def test_original_total_variation_matches_the_loop():
    img = rand((1, 4, 5, 3), 17) * 255
    _, h, w, c = img.shape
    want = 0.0
    for y in range(h - 1):
        for x in range(w - 1):
            for ch in range(c):
                a = (float(img[0, y, x, ch]) - float(img[0, y + 1, x, ch])) ** 2
                b = (float(img[0, y, x, ch]) - float(img[0, y, x + 1, ch])) ** 2
                want += (a + b) ** 1.25
    np.testing.assert_allclose(total_variation_original(t(img)).numpy(), want, rtol=1e-5)
