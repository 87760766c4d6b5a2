"""Prints on Ray (nst.tile_pool, nst.tiles' colour phases): a pass's tiles coloured so that tiles of one colour
never overlap, the generalised blend window (ramps on every side facing a tile already blended, a convex
combination, no hard edge), and the pool on a local Ray: the same image whatever the worker count, the
iterations reported as the run's progress, a worker killed mid-tile and its tile redone, cancel stopping
every worker. The pool tests use nst's own TransferTask on a stub network (a fixed 1x1 conv, as
tests/test_engine.py) at 96x128 px with 64 px tiles; one slow test runs the real VGG16 print end to end."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from nst.config import TilesConfig, load_config
from nst.engine import Numerics, TileSolver, run_plan
from nst.events import Cancelled, Control
from nst.plan import Scale
from nst.precision import Path_
from nst.recipe import TransferRecipe
from nst.tiles import axis_colours, blend, colour_phases, crop, grid, ramp, starts, tile_shape, window
from nst.transfer import TransferImages, TransferTask

REPO = Path(__file__).resolve().parents[1]
LAYER = "block1_conv1"


# ---------------------------------------------------------------- colours and windows (no Ray)


def _geometries():
    for size in (64, 96, 128):
        for overlap in (0, 8, 16, size // 4, size // 3, size // 2):
            for h in range(size, 4 * size + 40, 23):
                for w in (size, 2 * size + 5, 3 * size - 7, 5 * size + 1):
                    for p in range(2):
                        yield (h, w), TilesConfig(max_pixels=size * size, size=size, overlap=overlap, passes=2), p


def test_tiles_of_one_colour_never_overlap_over_many_geometries():
    parity_would_overlap = 0
    for hw, tiles, p in _geometries():
        th, tw = tile_shape(hw, tiles)
        boxes = grid(hw, tiles, p)
        phases = colour_phases(hw, tiles, p)
        assert sorted(k for ph in phases for k, _, _ in ph) == list(range(len(boxes)))  # every tile once
        assert all(boxes[k] == box for ph in phases for k, box, _ in ph)
        for phase in phases:
            for (_, (y1, x1), _), (_, (y2, x2), _) in itertools.combinations(phase, 2):
                assert abs(y1 - y2) >= th or abs(x1 - x2) >= tw, (hw, tiles, p, (y1, x1), (y2, x2))
        ys = sorted({y for y, _ in boxes})
        parity_would_overlap += any(b - a < th for a, b in zip(ys, ys[2:]))
    # the end tiles crowd in (last tile flush with the edge, odd passes' half stride): parity alone is not enough
    assert parity_would_overlap > 0


def test_colours_are_parity_where_it_suffices_and_a_print_has_four_phases():
    assert axis_colours([0, 448, 896, 1344], 512) == [0, 1, 0, 1]
    assert axis_colours([0, 40, 90], 96) == [0, 1, 2]  # three tiles share pixels 90..96
    assert axis_colours([0, 40, 96], 96) == [0, 1, 0]  # touching is not overlapping
    hw, tiles = (3072, 4096), TilesConfig()  # print_4k's last scale: 512 px tiles, 64 px overlap
    for p in range(2):
        assert len(colour_phases(hw, tiles, p)) == 4


def test_default_window_is_the_serial_one_and_sides_ramp_where_asked():
    r = ramp(64, 16)
    ones = np.ones(64, np.float32)
    for box in ((0, 0), (0, 30), (30, 0), (30, 30)):  # raster order: left and top inside the image
        wy, wx = (r if box[0] > 0 else ones), (r if box[1] > 0 else ones)
        np.testing.assert_array_equal(window(box, (64, 64), 16), wy[:, None] * wx[None, :])
    w = window((30, 30), (64, 64), 16, (False, True, True, True))
    np.testing.assert_array_equal(w[:, 0], np.full(64, r[0]) * r[::-1])  # left column: bottom ramp x left edge
    assert np.all(w[0, 16:48] == 1) and w[-1, 32] == r[0] and w[32, -1] == r[0] and w[32, 0] == r[0]
    np.testing.assert_allclose(w[32, :16] + w[32, -16:][::-1], 2 * r[:16], atol=0)  # mirror images


def _blend_pass(hw, tiles, p, values, mode):
    th, tw = tile_shape(hw, tiles)
    canvas = np.zeros((*hw, 1), np.float32)
    if mode == "serial":
        order = [(k, b, None) for k, b in enumerate(grid(hw, tiles, p))]
    else:
        order = [(k, b, s if mode == "colour" else (False,) * 4) for ph in colour_phases(hw, tiles, p)
                 for k, b, s in ph]
    for k, box, sides in order:
        blend(canvas, np.full((th, tw, 1), values[k], np.float32), box, tiles.overlap, sides)
    return canvas


def test_coloured_blend_is_a_convex_combination_without_hard_edges():
    """All-ones tiles onto a zero canvas end at 1 everywhere (the weights of the tiles over a pixel sum to 1 and
    nothing of the canvas before the pass is left); tiles of random constants meet in ramps: no step between
    neighbouring pixels is over 0.3 of the tiles' range, as in the serial order, where blending without ramps
    (every side weight 1) leaves steps of most of the range."""
    rng = np.random.default_rng(0)
    steps = {"serial": [], "colour": [], "flat": []}
    for hw, tiles, p in _geometries():
        n = len(grid(hw, tiles, p))
        np.testing.assert_allclose(_blend_pass(hw, tiles, p, np.ones(n), "colour"), 1.0, atol=1e-5)
        if n < 2 or tiles.overlap == 0:
            continue
        values = rng.uniform(0, 100, n)
        for mode in steps:
            c = _blend_pass(hw, tiles, p, values, mode)
            steps[mode].append(max(np.abs(np.diff(c, axis=0)).max(), np.abs(np.diff(c, axis=1)).max()) / 100)
    assert max(steps["colour"]) < 0.3 and max(steps["serial"]) < 0.3
    assert np.median(steps["flat"]) > 0.5  # the check sees a hard edge


# ---------------------------------------------------------------- the pool on Ray (stub network)


class StubExtractor:
    """A fixed random 1x1 conv + relu as the only layer; ``die`` names a file: the first call in any process
    that finds it missing creates it and kills its process (a worker dying mid-tile, exactly once)."""

    network, pooling, layers = "vgg16", "avg", [LAYER]

    def __init__(self, precision="float32", die: str | None = None, always_die: bool = False):
        self.precision, self.die, self.always_die = precision, die, always_die
        self.kernel = tf.constant(np.random.default_rng(0).normal(size=(1, 1, 3, 6)) / 100, tf.float32)

    def __call__(self, image):
        if self.always_die or (self.die and not os.path.exists(self.die)):
            if self.die:
                Path(self.die).touch()
            os._exit(1)
        return {LAYER: tf.nn.relu(tf.nn.conv2d(tf.convert_to_tensor(image, tf.float32), self.kernel, 1, "SAME"))}


class StubSource:
    """A worker's network: the stub (a WeightsSource stand-in)."""

    def __init__(self, die: str | None = None, always_die: bool = False):
        self.die, self.always_die = die, always_die

    def extractors(self, network, pooling, layers):
        return lambda precision="float32": StubExtractor(precision, self.die, self.always_die)


class StubExtractors:
    network, pooling, layers = "vgg16", "avg", [LAYER]

    def __call__(self, precision="float32"):
        return StubExtractor(precision)


HW = (96, 128)
TILES = TilesConfig(max_pixels=64 * 64, size=64, overlap=16, passes=2)
OPT = load_config(None, ["content=x.jpg", "style=y.jpg", "optimizer.iterations=4"]).optimizer


def _task():
    rng = np.random.default_rng(1)
    content = rng.uniform(0, 255, (*HW, 3)).astype(np.float32)
    style = rng.uniform(0, 255, (80, 80, 3)).astype(np.float32)
    recipe = TransferRecipe("vgg16", "avg", {LAYER: 1.0}, {LAYER: 1.0}, 1.0, 1e3, 0.0, "paper")
    return TransferTask(TransferImages(content, [(style, 1.0)]), recipe), content


def _print(runner, control=None, log=None):
    task, content = _task()
    x0 = np.clip(content + 40 * np.random.default_rng(2).standard_normal(content.shape), 0, 255).astype(np.float32)
    return run_plan([Scale(HW, 3, TILES)], task, extractors=StubExtractors(), x0=x0, opt=OPT,
                    control=control or Control(), numerics=Numerics("float32", False), log=log,
                     tile_runner=runner), x0


def _oracle(x0):
    """The coloured passes done here, naively: each phase's tiles from the canvas before the phase."""
    task, _ = _task()
    scale = Scale(HW, 3, TILES)
    shared = task.tile_targets(0, HW, TILES, StubExtractor())
    solver = TileSolver(task, StubExtractors(), 0, scale, shared, OPT)
    canvas = x0.copy()
    for p in range(TILES.passes):
        for phase in colour_phases(HW, TILES, p):
            before = canvas.copy()
            for k, box, sides in phase:
                out = solver.solve(box, crop(before, box, scale.shape), Path_("float32", False))
                blend(canvas, out.image, box, TILES.overlap, sides)
    return canvas


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    import sys

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the stubs go to the workers by value
    # Ray starts workers 15 nice levels below the driver: on a loaded machine they would get only the leftovers
    os.environ.setdefault("RAY_worker_niceness", "0")
    for attempt in range(3):
        try:  # a Ray of our own with 2 CPUs; the workers import this checkout (the driver's sys.path)
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            break
        except Exception as exc:  # noqa: BLE001 - the raylet's fixed 30 s to register can pass on a loaded machine
            if "timed out during startup" not in str(exc) or attempt == 2:
                raise
            ray.shutdown()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def pooled(ray_local):
    """The stub print on 2 workers and on 1: (results, events of the 2-worker run, x0)."""
    from nst.tile_pool import TilePool

    out = {}
    events = []
    for n in (2, 1):
        with TilePool(StubSource(), max_parallel=n) as pool:
            control = Control([events.append]) if n == 2 else Control()
            out[n], x0 = _print(pool, control)
    return out, events, x0


@pytest.mark.ray
def test_pool_image_does_not_depend_on_the_worker_count_and_matches_the_naive_passes(pooled):
    out, _, x0 = pooled
    np.testing.assert_array_equal(out[2].image, out[1].image)  # each tile starts from the canvas before its phase
    # the naive passes run here (TensorFlow's threads here may sum in another order than a 1-thread worker)
    np.testing.assert_allclose(out[2].image, _oracle(x0), atol=1e-3)
    assert np.abs(out[2].image - x0).mean() > 1  # the tiles did move the image
    assert out[2].info["scales"][0]["tile_runner"].startswith("ray: up to 2 worker(s)")


@pytest.mark.ray
def test_pool_reports_every_iteration_of_every_tile_numbered_over_the_run(pooled):
    out, events, _ = pooled
    n_tiles = [len(grid(HW, TILES, p)) for p in range(2)]
    assert [e.iteration for e in events] == list(range(1, 3 * sum(n_tiles) + 1)) and out[2].iterations == len(events)
    seen = {(e.tile_pass, e.tile) for e in events}
    assert seen == {(p + 1, t + 1) for p in range(2) for t in range(n_tiles[p])}
    assert all(e.tiles == n_tiles[e.tile_pass - 1] and e.tile_passes == 2 and e.image.shape == (*HW, 3) for e in events)
    assert all(e.total_iterations == len(events) for e in events)
    assert {e.precision for e in events} == {"float32"}


@pytest.mark.ray
def test_a_worker_killed_mid_tile_is_replaced_and_its_tile_redone(pooled, tmp_path):
    from nst.tile_pool import TilePool

    flag = tmp_path / "died"
    notes = []
    with TilePool(StubSource(die=str(flag)), max_parallel=2) as pool:
        res, _ = _print(pool, log=notes.append)
        assert pool.retried == 1
    assert flag.exists()  # one worker did die (os._exit inside its first extractor call)
    np.testing.assert_array_equal(res.image, pooled[0][2].image)  # the redone tile is the one it would have been
    assert any("worker died" in n and "redone" in n for n in notes), notes


@pytest.mark.ray
def test_a_tile_that_keeps_killing_its_worker_fails_the_run(ray_local):
    from nst.errors import UserError
    from nst.tile_pool import TilePool

    with TilePool(StubSource(always_die=True), max_parallel=1, retries=1) as pool:
        with pytest.raises(UserError, match="failed 2 times"):
            _print(pool)
        assert pool.actors == []  # every worker stopped


@pytest.mark.ray
def test_cancel_stops_every_worker(ray_local):
    from nst.tile_pool import TilePool

    pool = TilePool(StubSource(), max_parallel=2)
    control = Control()
    seen = []

    def cancel_at_first(ev):
        seen.append(ev.iteration)
        control.cancel()

    control.subscribe(cancel_at_first)
    actors = None
    real_close = pool.close

    def spy_close():
        nonlocal actors
        actors = list(pool.actors)
        real_close()

    pool.close = spy_close
    with pytest.raises(Cancelled):
        _print(pool, control)
    assert seen == [1] and len(actors) == 2
    for actor in actors:  # killed: a call on it fails
        with pytest.raises(ray_local.exceptions.RayActorError):
            ray_local.get(actor.pid.remote(), timeout=60)



# ---------------------------------------------------------------- a real print (VGG16) on the pool


@pytest.mark.ray
@pytest.mark.slow
def test_a_real_print_on_the_pool_matches_the_serial_print(ray_local, vgg16):
    """192x144 px, its last scale in 96 px tiles (32 px overlap, 2 passes): serial and on 2 workers, same seed.
    Both have no seams (seam ratio within 10% of 1) and the same objective (the whole image's) within 5%."""
    from nst.inputs import load_inputs
    from nst.objective import evaluate
    from nst.tile_pool import TilePool, WeightsSource
    from nst.tiles import border_lines, seam_ratio
    from nst.transfer import compute_targets, make_extractors, make_objective, stylize

    from tests.conftest import CONTENT, STYLE

    cfg = load_config(None, [f"content={CONTENT}", f"style={STYLE}", "image.size=192", "optimizer.iterations=19",
                             "scales=[{size: 0.5, iterations: 15}, {size: 1.0, iterations: 4}]", "tiles.size=96",
                             "tiles.overlap=32", "tiles.max_pixels=20000", "tiles.passes=2", "precision=float32",
                             "optimizer.xla=false", "model.network=vgg16", "model.download=false"])
    weights, info = vgg16
    recipe = TransferRecipe.of(cfg, info.network)
    content, styles, _ = load_inputs(cfg, log=lambda _s: None)
    images = {}
    with TilePool(WeightsSource(info.network, info.path), max_parallel=2) as pool:
        for name, runner in (("serial", None), ("pool", pool)):
            images[name] = stylize(content, styles, cfg, extractors=make_extractors(recipe, weights),
                                   tile_runner=runner).image
    ext = make_extractors(recipe, weights)("float32")
    objective = make_objective(ext, compute_targets(ext, content, styles, recipe), recipe)
    loss = {k: evaluate(objective, img)["total"] for k, img in images.items()}
    rows, cols = border_lines(content.shape[:2], cfg.tiles, cfg.tiles.passes)
    seams = {k: seam_ratio(img, rows, cols) for k, img in images.items()}
    assert all(abs(s - 1) < 0.1 for s in seams.values()), seams
    assert abs(loss["pool"] / loss["serial"] - 1) < 0.05, loss
    assert np.abs(images["pool"] - images["serial"]).mean() < 16  # the same picture, tiles taken in another order
    print(f"seam ratio {seams}; objective {loss}")
