"""nst.parameterize and the L-BFGS history: the synthesis is linear with a matching adjoint, the pyramid
round-trips, the wrapped step's gradient is the finite difference of the loss of the synthesised image,
``pixels`` with history 10 is exactly the optimisation of before, and a real laplacian run lowers the loss.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from scipy.optimize import fmin_l_bfgs_b

from nst import optimize
from nst.config import load_config
from nst.engine import run_plan
from nst.plan import Scale
from nst.events import Control
from nst.parameterize import COLOUR, NAMES, Linear, Pixels, level_shapes, make

from tests.test_engine import StubExtractor, _cfg, _images, _objective

LINEAR = [n for n in NAMES if n != "pixels"]


def _param(name, hw=(37, 50), levels=4, bounded=False):
    return make(name, hw, levels, bounded)


def test_level_shapes_halve_rounding_up():
    assert level_shapes((37, 50), 4) == [(37, 50), (19, 25), (10, 13), (5, 7)]
    assert level_shapes((2, 3), 4) == [(2, 3), (1, 2), (1, 1), (1, 1)]


@pytest.mark.parametrize("name", LINEAR)
def test_synthesis_is_linear(name):
    p = _param(name)
    rng = np.random.default_rng(0)
    a, b = (tf.constant(rng.normal(size=p.size), tf.float32) for _ in range(2))
    lhs = p.synthesize(2.0 * a - 3.0 * b).numpy()
    rhs = 2.0 * p.synthesize(a).numpy() - 3.0 * p.synthesize(b).numpy()
    np.testing.assert_allclose(lhs, rhs, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", LINEAR)
def test_adjoint_matches_the_synthesis(name):
    """<P z, g> == <z, P^T g> for random z and g (the dot-product test)."""
    p = _param(name)
    rng = np.random.default_rng(1)
    z = rng.normal(size=p.size).astype(np.float32)
    g = rng.normal(size=(1, 37, 50, 3)).astype(np.float32)
    lhs = float(np.sum(p.synthesize(tf.constant(z)).numpy().astype(np.float64) * g))
    rhs = float(np.sum(z.astype(np.float64) * p.adjoint(tf.constant(g)).numpy()))
    assert lhs == pytest.approx(rhs, rel=1e-4)
    assert abs(lhs) > 1.0  # not a trivial 0 == 0


def test_a_coarse_coefficient_moves_a_neighbourhood_and_the_finest_one_pixel():
    p = Linear((32, 32), levels=3)
    z = np.zeros(p.size, np.float32)
    z[5] = 1.0  # the finest level: one channel of one pixel
    assert np.count_nonzero(p.synthesize(tf.constant(z)).numpy()) == 1
    z[:] = 0.0
    z[p.sizes[0] + p.sizes[1] + 3 * (4 * 8 + 4)] = 1.0  # the coarsest (8x8): red of pixel (4, 4)
    moved = p.synthesize(tf.constant(z)).numpy()[0, ..., 0]
    assert np.count_nonzero(moved) >= 16 and moved.sum() == pytest.approx(16.0, rel=1e-4)  # 4x4 area, sum preserved


@pytest.mark.parametrize("name", LINEAR)
@pytest.mark.parametrize("hw", [(37, 50), (64, 48), (1, 5)])
def test_encode_then_decode_gives_the_image_back(name, hw):
    image = np.random.default_rng(2).uniform(0, 255, (*hw, 3)).astype(np.float32)
    p = make(name, hw, 5, bounded=True)
    z = p.encode(image)
    assert z.shape == (p.size,) and z.dtype == np.float32
    np.testing.assert_allclose(p.decode(z), image, atol=2e-3)


def test_a_smooth_image_lives_in_the_coarse_levels():
    yy, xx = np.mgrid[0:48, 0:64].astype(np.float32)
    image = np.stack([2 * xx, 3 * yy, xx + yy], -1) + 10.0  # a smooth ramp
    p = Linear((48, 64), 4)
    z = p.encode(image)
    finest, coarsest = np.abs(z[: p.sizes[0]]).mean(), np.abs(z[-p.sizes[-1]:]).mean()
    assert finest < 0.05 * coarsest  # the detail levels hold almost nothing


def test_colour_map_is_symmetric_with_a_dominant_luminance_axis():
    w = np.linalg.eigvalsh(COLOUR.astype(np.float64))
    np.testing.assert_allclose(COLOUR, COLOUR.T)
    assert w.min() > 0 and w.max() / w.min() > 5  # decorrelated: the axes are scaled very differently


def test_bounded_decode_clips_and_unbounded_does_not():
    p, q = Linear((8, 8), 2, bounded=True), Linear((8, 8), 2, bounded=False)
    z = p.encode(np.full((8, 8, 3), 200.0, np.float32))
    z[: p.sizes[0]] += 100.0  # push every pixel to 300
    assert p.decode(z).max() == 255.0 and q.decode(z).max() == pytest.approx(300.0, rel=1e-5)


@pytest.mark.parametrize("bounded", [False, True])
def test_wrapped_step_gradient_is_the_finite_difference(bounded):
    """d/dt f(clip(P (z + t d))) at t = 0 equals <P^T-masked gradient, d>; clipping pixels included."""
    ext = StubExtractor()
    content, style = _images(hw=(12, 16))
    step = _objective(ext, content, style, tv=0.5).step()
    p = Linear((12, 16), 3, bounded=bounded)
    start = 20.0 + 0.8 * content  # 20..224: away from the bounds ...
    start[:4, :5] = 320.0  # ... but for a block well over 255, clipped when bounded (no pixel near a kink)
    z = p.encode(start).astype(np.float64)
    wrapped = p.wrap(step)

    def f(v):
        terms, _ = wrapped(tf.constant(v[None], tf.float32))
        return float(terms["total"])

    _, gz = wrapped(tf.constant(z[None], tf.float32))
    d = np.random.default_rng(3).normal(size=z.size)
    h = 1e-2
    numeric = (f(z + h * d) - f(z - h * d)) / (2 * h)
    assert float(np.dot(gz.numpy().ravel(), d)) == pytest.approx(numeric, rel=2e-2)
    assert np.all(gz.numpy().reshape(-1)[: p.sizes[0]].reshape(12, 16, 3)[:4, :5] == 0) == bounded  # clipped: no pull


class Whole:
    """A task whose every scale runs whole on ``obj_for(hw)``."""

    def __init__(self, obj_for):
        self.obj_for = obj_for

    def whole(self, index, hw, extractor):
        return self.obj_for(tuple(hw))


def test_pixels_is_the_identity_and_keeps_box_bounds():
    p, opt = Pixels(), _cfg().optimizer
    x = np.ones((4, 4, 3), np.float32)
    step = lambda v: v  # noqa: E731
    assert p.encode(x) is x and p.decode(x) is x and p.wrap(step) is step and p.optimizer_config(opt) is opt
    assert Linear((4, 4), 2).optimizer_config(opt).bounds is False


def test_pixels_with_history_10_is_the_optimisation_of_before():
    """The engine's default path (pixels, optimizer.history 10) gives bit for bit what scipy's fmin_l_bfgs_b
    gave before either key existed (called without ``m``, bounds 0..255), iterate by iterate."""
    ext = StubExtractor()
    content, style = _images(hw=(12, 16))
    obj = _objective(ext, content, style, tv=0.1)
    x0 = np.random.default_rng(4).uniform(0, 255, content.shape).astype(np.float32)
    seen = []
    res = run_plan([Scale((12, 16), 15)], Whole(lambda hw: obj), extractors=lambda p="float32": ext, x0=x0,
                   opt=_cfg(**{"optimizer.iterations": 15}).optimizer, control=Control([lambda ev: seen.append(ev.total)]))
    step = obj.step()
    old, last = [], {}

    def func(x):
        terms, grad = step(tf.constant(x.reshape(1, 12, 16, 3), tf.float32))
        last["x"], last["t"] = x.copy(), float(terms["total"])
        return float(terms["total"]), grad.numpy().astype(np.float64).ravel()

    def callback(xk):
        if not np.array_equal(xk, last["x"]):
            func(xk)
        old.append(last["t"])

    x, _, _ = fmin_l_bfgs_b(func, x0.astype(np.float64).ravel(), bounds=[(0.0, 255.0)] * x0.size, maxiter=15,
                            maxfun=50, factr=0.0, pgtol=0.0, callback=callback)
    assert seen == old and len(seen) == 15
    np.testing.assert_array_equal(res.image, x.reshape(x0.shape).astype(np.float32))
    assert res.info["evaluations"] >= 15


def test_history_reaches_scipy(monkeypatch):
    got = {}

    def fake(func, x, **kw):
        got.update(kw)
        return x, 0.0, {"warnflag": 0, "task": b"", "nit": kw["maxiter"]}

    monkeypatch.setattr(optimize, "fmin_l_bfgs_b", fake)
    optimize.run_lbfgs(lambda x: ({"total": tf.constant(0.0)}, x), np.zeros((2, 2, 3), np.float32),
                       _cfg(**{"optimizer.history": 37}).optimizer, 1, lambda t, x: None)
    assert got["m"] == 37


def test_a_longer_history_changes_the_path():
    ext = StubExtractor()
    content, style = _images(hw=(12, 16))
    obj = _objective(ext, content, style)
    x0 = np.random.default_rng(5).uniform(0, 255, content.shape).astype(np.float32)
    out = {m: run_plan([Scale((12, 16), 30)], Whole(lambda hw: obj), extractors=lambda p="float32": ext, x0=x0,
                       opt=_cfg(**{"optimizer.iterations": 30, "optimizer.history": m}).optimizer,
                       control=Control()).image
           for m in (3, 30)}
    assert not np.array_equal(out[3], out[30])


@pytest.mark.parametrize("name", LINEAR)
def test_engine_runs_every_parameterisation_and_lowers_the_loss(name):
    ext = StubExtractor()
    objectives = {hw: _objective(ext, *_images(hw=hw)) for hw in ((8, 8), (16, 16))}
    x0 = np.random.default_rng(6).uniform(0, 255, (8, 8, 3)).astype(np.float32)
    totals, shapes = [], set()

    def on(ev):
        totals.append(ev.total)
        shapes.add(ev.image.shape)

    cfg = _cfg(**{"optimizer.iterations": 20, "optimizer.parameterization": name}).optimizer
    res = run_plan([Scale((8, 8), 10), Scale((16, 16), 10)], Whole(lambda hw: objectives[hw]),
                   extractors=lambda p="float32": ext, x0=x0, opt=cfg, control=Control([on]))
    assert shapes == {(8, 8, 3), (16, 16, 3)}  # events carry images, not parameter vectors
    assert res.image.shape == (16, 16, 3) and 0 <= res.image.min() and res.image.max() <= 255
    assert totals[9] < totals[0] and totals[-1] < 0.75 * totals[10]  # each scale lowers its loss


def test_adam_with_a_pyramid_runs_on_the_coefficients():
    ext = StubExtractor()
    content, style = _images(hw=(16, 16))
    obj = _objective(ext, content, style)
    cfg = _cfg(**{"optimizer.method": "adam", "optimizer.iterations": 30, "optimizer.parameterization": "laplacian",
                  "optimizer.learning_rate": 5.0}).optimizer
    totals = []
    res = run_plan([Scale((16, 16), 30)], Whole(lambda hw: obj), extractors=lambda p="float32": ext,
                   x0=np.full((16, 16, 3), 128.0, np.float32), opt=cfg, control=Control([lambda ev: totals.append(ev.total)]))
    assert totals[-1] < totals[0] and res.image.shape == (16, 16, 3)


def test_a_real_laplacian_run_lowers_the_loss(tmp_path, make_config, run_cli):
    """nst.run with the real VGG16 at 64 px: 25 L-BFGS iterations on a 3-level pyramid lower the paper's
    objective by at least 5x from its first iteration, and run.json counts the evaluations."""
    cfg = make_config("model:\n  network: vgg16\n")
    out = tmp_path / "out"
    res = run_cli([cfg, "--output", out, "--set", "image.size=64", "--set", "optimizer.iterations=25",
                   "--set", "snapshots=[]", "--set", "precision=float32", "--set", "optimizer.xla=false",
                   "--set", "optimizer.parameterization=laplacian", "--set", "optimizer.pyramid_levels=3",
                   "--set", "progress.quiet=true"], timeout=300)
    assert res.rc == 0, res.err
    rows = (out / "losses.csv").read_text().splitlines()[1:]
    totals = [float(r.split(",")[4]) for r in rows]
    assert len(totals) == 25 and totals[-1] < totals[0] / 5
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["optimizer"]["parameterization"] == "laplacian"
    assert run["evaluations"] >= 25
