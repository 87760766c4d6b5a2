"""Gradients of the objective (nst.objective.value_and_grad) against central finite differences.

1. A tiny stub encoder (two fixed random 3x3 convolutions with smooth softplus activations and an average
   pooling between them, float32) wired through the real losses of nst.losses, on a 6x6x3 image: the tape
   gradient matches central differences at a handful of pixels, term by term and all together.
2. The real objective (nst.transfer.make_objective, real ImageNet VGG16, 32 px): a small step along -grad lowers
   the total loss by what the gradient predicts, and a directional finite difference agrees with grad . d.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from nst.losses import content_loss, gram_matrix, style_loss, total_variation
from nst.objective import value_and_grad

TERMS = ("content", "style", "tv")

PIXELS = [(0, 0, 0, 0), (0, 2, 3, 1), (0, 5, 5, 2), (0, 3, 1, 0), (0, 1, 4, 2), (0, 4, 0, 1)]


class StubEncoder:
    """Two named 'layers': l1 = softplus(conv3x3(x)), l2 = softplus(conv3x3(avgpool(l1))); fixed random kernels."""

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.k1 = tf.constant(rng.standard_normal((3, 3, 3, 4)).astype(np.float32) * 0.3)
        self.k2 = tf.constant(rng.standard_normal((3, 3, 4, 5)).astype(np.float32) * 0.3)

    def __call__(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        x = image / 64.0 - 2.0
        a = tf.nn.softplus(tf.nn.conv2d(x, self.k1, 1, "SAME"))
        b = tf.nn.softplus(tf.nn.conv2d(tf.nn.avg_pool2d(a, 2, 2, "VALID"), self.k2, 1, "SAME"))
        return {"l1": a, "l2": b}


def stub_objective(weights: dict[str, float]):
    """alpha * content(l2) + beta * style(l1, l2) + tv * TV, targets from two other random images."""
    rng = np.random.default_rng(1)
    enc = StubEncoder()
    content_target = enc(tf.constant(rng.uniform(0, 255, (1, 6, 6, 3)).astype(np.float32)))["l2"]
    style_feats = enc(tf.constant(rng.uniform(0, 255, (1, 10, 8, 3)).astype(np.float32)))  # another size
    grams = {k: gram_matrix(v, normalize=True) for k, v in style_feats.items()}

    def objective(image: tf.Tensor) -> dict[str, tf.Tensor]:
        f = enc(image)
        return {"content": weights["content"] * content_loss(f["l2"], content_target),
                "style": weights["style"] * style_loss(f, grams, {"l1": 0.5, "l2": 1.0}),
                "tv": weights["tv"] * total_variation(image)}

    return objective


def total(objective, x: np.ndarray) -> float:
    terms = objective(tf.constant(x, tf.float32))
    return float(sum(float(terms[t]) for t in TERMS))


@pytest.mark.parametrize("weights", [
    {"content": 1.0, "style": 0.0, "tv": 0.0},
    {"content": 0.0, "style": 100.0, "tv": 0.0},
    {"content": 0.0, "style": 0.0, "tv": 1e-3},
    {"content": 1.0, "style": 100.0, "tv": 1e-4},
], ids=["content", "style", "tv", "all"])
def test_value_and_grad_matches_central_differences(weights):
    objective = stub_objective(weights)
    x0 = np.random.default_rng(2).uniform(0, 255, (1, 6, 6, 3)).astype(np.float32)
    terms, grad = value_and_grad(objective)(tf.constant(x0))
    grad = grad.numpy()
    assert grad.shape == x0.shape
    # the returned terms are the objective's, and total is their sum
    direct = objective(tf.constant(x0))
    for t in TERMS:
        np.testing.assert_allclose(float(terms[t]), float(direct[t]), rtol=1e-6)
    np.testing.assert_allclose(float(terms["total"]), sum(float(terms[t]) for t in TERMS), rtol=1e-6)
    assert float(terms["total"]) > 0

    # Central differences, h = 1 grey level: the terms are smooth (softplus, no ReLU kinks), so the
    # truncation error O(h^2) is tiny, and float32 rounding of a loss of O(1..1e3) adds < 1e-4 per step.
    # Tolerance: 1e-3 of the largest gradient component, plus 1e-3 relative.
    h = 1.0
    scale = np.abs(grad).max()
    assert scale > 0
    for idx in PIXELS:
        xp, xm = x0.copy(), x0.copy()
        xp[idx] += h
        xm[idx] -= h
        fd = (total(objective, xp) - total(objective, xm)) / (2 * h)
        assert abs(grad[idx] - fd) <= 1e-3 * scale + 1e-3 * abs(fd), (idx, grad[idx], fd)


def test_fd_check_catches_a_wrong_gradient():
    """The check above has teeth: a gradient scaled by 1.01 (or a pixel shifted) does not pass it."""
    objective = stub_objective({"content": 1.0, "style": 100.0, "tv": 1e-4})
    x0 = np.random.default_rng(2).uniform(0, 255, (1, 6, 6, 3)).astype(np.float32)
    _, grad = value_and_grad(objective)(tf.constant(x0))
    grad = grad.numpy()
    idx = (0, 2, 3, 1)
    xp, xm = x0.copy(), x0.copy()
    xp[idx] += 1.0
    xm[idx] -= 1.0
    fd = (total(objective, xp) - total(objective, xm)) / 2.0
    tol = 1e-3 * np.abs(grad).max() + 1e-3 * abs(fd)
    assert abs(grad[idx] - fd) <= tol
    assert abs(1.01 * grad[idx] - fd) > tol
    assert abs(grad[0, 2, 4, 1] - fd) > tol


# ---------------------------------------------------------------- the real objective


@pytest.fixture(scope="module")
def real_objective(vgg16_weights, content_path, style_path):
    from nst.config import load_config
    from nst.images import load_image
    from nst.recipe import TransferRecipe
    from nst.transfer import compute_targets, initial_image, make_extractors, make_objective

    cfg = load_config(None, [f"content={content_path}", f"style={style_path}", "model.network=vgg16",
                             "image.size=32", "snapshots=[]", "loss.tv_weight=1.0"])
    content, style = load_image(content_path, 32), load_image(style_path, 32)
    recipe = TransferRecipe.of(cfg, "vgg16")
    extractor = make_extractors(recipe, vgg16_weights)()
    objective = make_objective(extractor, compute_targets(extractor, content, [(style, 1.0)], recipe), recipe)
    return value_and_grad(objective), initial_image(cfg, content)[None]


def test_real_objective_step_along_minus_grad_lowers_loss(real_objective):
    step, x0 = real_objective
    terms, grad = step(tf.constant(x0))
    for t in TERMS:
        assert float(terms[t]) > 0, t
    g = grad.numpy().astype(np.float64)
    assert np.isfinite(g).all() and np.abs(g).max() > 0
    loss0 = float(terms["total"])
    # A step that moves no pixel by more than 0.5 grey levels: the loss must fall, and by about
    # t * |g|^2, the first-order prediction (measured within 0.5%; we allow 10%).
    t = 0.5 / np.abs(g).max()
    loss1 = float(step(tf.constant((x0 - t * g).astype(np.float32)))[0]["total"])
    predicted = t * float((g * g).sum())
    assert loss1 < loss0
    assert 0.9 < (loss0 - loss1) / predicted < 1.1
    # and a step the other way raises it
    loss_up = float(step(tf.constant((x0 + t * g).astype(np.float32)))[0]["total"])
    assert loss_up > loss0


def test_real_objective_directional_derivative(real_objective):
    """Central difference along a random direction d vs grad . d (ReLU kinks: allow 2%; measured ~0.1%)."""
    step, x0 = real_objective
    _, grad = step(tf.constant(x0))
    d = np.random.default_rng(3).standard_normal(x0.shape)
    eps = 0.01
    up = float(step(tf.constant((x0 + eps * d).astype(np.float32)))[0]["total"])
    down = float(step(tf.constant((x0 - eps * d).astype(np.float32)))[0]["total"])
    fd = (up - down) / (2 * eps)
    analytic = float((grad.numpy().astype(np.float64) * d).sum())
    assert abs(fd - analytic) <= 0.02 * abs(analytic), (fd, analytic)
