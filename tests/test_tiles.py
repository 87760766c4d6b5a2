"""Prints (nst.tiles, doodle.tiles, nst.print_files): tile grids, blending, style targets of the whole image
computed tile by tile and once, tiled runs against untiled ones, seams, 16-bit PNG/TIFF with ICC and DPI,
and the new config keys' errors. Small sizes (<= 192 px, 64-96 px tiles), float32, no XLA."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nst.config import TilesConfig, load_config
from nst.plan import Scale, make_plan, plan_work
from nst.tiled_targets import tiled_grams
from nst.tiles import blend, border_lines, grid, ramp, seam_ratio, starts, tile_shape, window

FAST = ["precision=float32", "optimizer.xla=false", "model.network=vgg16", "model.download=false"]


# ---------------------------------------------------------------- geometry


@pytest.mark.parametrize("hw,size,overlap,passes", [((192, 256), 96, 32, 3), ((3072, 4096), 512, 64, 2),
                                                    ((100, 300), 96, 0, 2), ((70, 64), 64, 16, 2)])
def test_tiles_cover_every_pixel_in_one_shape(hw, size, overlap, passes):
    tiles = TilesConfig(max_pixels=size * size, size=size, overlap=overlap, passes=passes)
    th, tw = tile_shape(hw, tiles)
    for p in range(passes):
        boxes = grid(hw, tiles, p)
        hits = np.zeros(hw, int)
        for y, x in boxes:
            assert 0 <= y <= hw[0] - th and 0 <= x <= hw[1] - tw  # one shape, inside the image
            hits[y:y + th, x:x + tw] += 1
        assert hits.min() >= 1, f"pass {p} leaves pixels uncovered"
        for axis, length, t in ((0, hw[0], th), (1, hw[1], tw)):
            s = sorted({b[axis] for b in boxes})
            assert all(t - (b - a) >= overlap for a, b in zip(s, s[1:])), "neighbours overlap by less than overlap"
    if passes > 1 and hw[1] > size:  # the second pass moves the inner seams
        assert {x for _, x in grid(hw, tiles, 0)} != {x for _, x in grid(hw, tiles, 1)}


def test_starts_with_offset_keep_the_ends():
    assert starts(256, 96, 32) == [0, 64, 128, 160]
    assert starts(256, 96, 32, offset=32) == [0, 32, 96, 160]
    assert starts(50, 96, 32) == [0]


def test_overlaps_blend_to_weights_summing_to_one():
    # raised-cosine ramp and its mirror sum to 1 over an overlap
    r = ramp(32, 32)
    np.testing.assert_allclose(r + r[::-1], 1.0, atol=1e-6)
    assert 0 < r[0] < 0.01 and r[-1] > 0.99
    hw = (150, 230)
    tiles = TilesConfig(max_pixels=64 * 64, size=64, overlap=16, passes=2)
    shape = tile_shape(hw, tiles)
    for p in range(2):
        # every tile an all-ones image onto a zero canvas: 1 everywhere means the tiles' weights sum to 1 and
        # nothing of the canvas before the pass is left
        canvas = np.zeros((*hw, 1), np.float32)
        for box in grid(hw, tiles, p):
            blend(canvas, np.ones((*shape, 1), np.float32), box, tiles.overlap)
        np.testing.assert_allclose(canvas, 1.0, atol=1e-5)
    # tiles of different constants: each pixel is a convex combination, ramping across the overlap
    canvas = np.zeros((64, 112, 1), np.float32)
    blend(canvas, np.full((64, 64, 1), 10.0, np.float32), (0, 0), 16)
    blend(canvas, np.full((64, 64, 1), 20.0, np.float32), (0, 48), 16)
    row = canvas[10, :, 0]
    assert np.all(row[:48] == 10) and np.all(row[64:] == 20)
    assert np.all(np.diff(row[48:64]) > 0) and 10 < row[55] < 20
    w = window((0, 48), (64, 64), 16)
    assert w[0, 0] < 0.01 and np.all(w[:, 16:] == 1)  # ramps only on the side facing the earlier tile


def test_a_plan_tiles_its_large_scales_and_counts_their_work():
    tiles = TilesConfig(max_pixels=10_000, size=64, overlap=16, passes=2)
    plan = make_plan([((48, 64), 5), ((96, 128), 3), ((40, 200), 2), ((192, 256), 2)], tiles)
    assert [s.tiled for s in plan] == [False, True, True, True]  # once tiled, every finer scale too
    assert plan[0] == Scale((48, 64), 5) and plan[1].tiles == tiles and plan[1].shape == (64, 64)
    assert plan[0].grids() == [[(0, 0)]] and plan[1].grids() == [grid((96, 128), tiles, p) for p in range(2)]
    work = plan_work(plan)
    assert work[0] == (48 * 64, 5)
    assert work[1] == (64 * 64, 3 * (len(grid((96, 128), tiles, 0)) + len(grid((96, 128), tiles, 1))))


# ---------------------------------------------------------------- the seam check


def test_seam_ratio_finds_seams_and_passes_smooth_images():
    rng = np.random.default_rng(0)
    texture = rng.uniform(0, 255, (160, 160, 3)).astype(np.float32)
    texture = (texture + np.roll(texture, 1, 0) + np.roll(texture, 1, 1)) / 3  # some local correlation
    rows, cols = [80], [80]
    assert abs(seam_ratio(texture, rows, cols) - 1) < 0.1
    smooth = np.linspace(0, 255, 160, dtype=np.float32)[None, :, None].repeat(160, 0).repeat(3, 2)
    seamed = smooth.copy()
    seamed[:, 80:] += 40  # a step along the tile border
    assert seam_ratio(seamed, [], cols) > 2
    blurred = texture.copy()
    blurred[:, 76:84] = blurred[:, 76:84].mean(axis=1, keepdims=True)  # a cross-faded band
    assert seam_ratio(blurred, [], cols) < 0.9


# ---------------------------------------------------------------- style targets of the whole image


def test_tiled_grams_are_the_whole_images(vgg16):
    from nst.features import FeatureExtractor
    from nst.images import load_image
    from nst.terms import style_targets

    from tests.conftest import STYLE

    weights, _ = vgg16
    layers = ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1"]
    ext = FeatureExtractor(weights, "vgg16", "avg", layers)
    style = load_image(STYLE, 200)  # 200x125: not a multiple of 16 either way
    whole = style_targets(ext, [(style, 1.0)], layers)
    tiled = tiled_grams(ext, [(style, 1.0)], layers, tile=96, margin=32)
    for n in layers:
        a, b = whole[n].numpy(), tiled[n].numpy()
        rel = np.abs(a - b).sum() / np.abs(a).sum()
        assert rel < (1e-5 if n == "block1_conv1" else 0.03), f"{n}: {rel}"  # deeper: margin < receptive field


def test_doodle_tiled_masked_grams_are_the_whole_images(vgg16):
    from doodle.losses import masked_grams
    from nst.masks import layer_masks
    from doodle.tiles import tiled_masked_grams
    from nst.features import FeatureExtractor

    weights, _ = vgg16
    layers = ["block1_conv1", "block2_conv1"]
    ext = FeatureExtractor(weights, "vgg16", "avg", layers)
    rng = np.random.default_rng(1)
    style = rng.uniform(0, 255, (112, 150, 3)).astype(np.float32)
    masks = np.zeros((112, 150, 2), np.float32)
    masks[:, :70, 0] = 1
    masks[:, 70:, 1] = 1
    lm = layer_masks(masks, "vgg16", layers)
    feats = ext(style[None])
    for form in ("area", "original"):
        tiled = tiled_masked_grams(ext, style, lm, layers, form, tile=64, margin=16)
        for n in layers:
            a, b = masked_grams(feats[n], lm[n], form).numpy(), tiled[n].numpy()
            assert np.abs(a - b).sum() / np.abs(a).sum() < 0.01, (form, n)


# ---------------------------------------------------------------- tiled runs


@pytest.fixture(scope="module")
def tiled_pair(vgg16):
    """The same 192x144 config run untiled and with its last scale in 96 px tiles; style calls counted."""
    import nst.transfer as tiles_mod  # where the style transfer task calls tiled_grams
    from nst.events import Control
    from nst.inputs import load_inputs
    from nst.recipe import TransferRecipe
    from nst.transfer import make_extractors, stylize

    from tests.conftest import CONTENT, STYLE

    base = [f"content={CONTENT}", f"style={STYLE}", "image.size=192", "optimizer.iterations=19",
            "scales=[{size: 0.5, iterations: 15}, {size: 1.0, iterations: 4}]", *FAST]
    tiled_set = ["tiles.size=96", "tiles.overlap=32", "tiles.max_pixels=20000", "tiles.passes=2"]
    weights, info = vgg16
    out = {}
    calls = []
    real = tiles_mod.tiled_grams

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    for name, extra in (("whole", []), ("tiled", tiled_set)):
        cfg = load_config(None, base + extra)
        content, styles, _ = load_inputs(cfg, log=lambda _s: None)
        events = []
        tiles_mod.tiled_grams = counting
        try:
            res = stylize(content, styles, cfg, extractors=make_extractors(TransferRecipe.of(cfg, info.network), weights),
                          control=Control().subscribe(lambda ev: events.append(ev)))
        finally:
            tiles_mod.tiled_grams = real
        out[name] = (cfg, content, styles, res, events)
    out["style_calls"] = len(calls)
    return out


def test_style_targets_computed_once_for_all_tiles(tiled_pair):
    cfg, _, _, res, events = tiled_pair["tiled"]
    tile_events = [e for e in events if e.tile]
    assert tiled_pair["style_calls"] == 1
    assert len({(e.tile_pass, e.tile) for e in tile_events}) == sum(res.info["scales"][-1]["tiles"]) > 10
    assert {e.tile_passes for e in events} == {2} and {e.tile_pass for e in tile_events} == {1, 2}
    assert [e.iteration for e in events] == list(range(1, len(events) + 1))  # numbered over the whole run
    assert events[-1].total_iterations == len(events) and events[-1].image.shape == (144, 192, 3)


def test_tiled_run_is_close_to_untiled(tiled_pair, vgg16):
    from nst.engine import upsample
    from nst.objective import evaluate
    from nst.recipe import TransferRecipe
    from nst.transfer import compute_targets, make_extractors, make_objective

    cfg, content, styles, whole, events = tiled_pair["whole"]
    tiled = tiled_pair["tiled"][3]
    recipe = TransferRecipe.of(cfg, "vgg16")
    ext = make_extractors(recipe, vgg16[0])("float32")
    objective = make_objective(ext, compute_targets(ext, content, styles, recipe), recipe)
    start = upsample([e.image for e in events if e.phase == 0][-1], content.shape[:2])  # both runs' coarse result
    loss = {k: evaluate(objective, img)["total"] for k, img in
            (("start", start), ("whole", whole.image), ("tiled", tiled.image))}
    assert loss["tiled"] < 0.6 * loss["start"], loss  # the tiles optimised the whole image's objective
    assert loss["tiled"] < 1.5 * loss["whole"], loss
    # every tile takes its iterations in every pass, so the tiles move further from the start than the untiled
    # run's 4 iterations do; close means the same picture: within 16 levels (6%) on average
    assert np.abs(tiled.image - whole.image).mean() < 16


def test_tiled_run_has_no_seams(tiled_pair):
    cfg, _, _, res, _ = tiled_pair["tiled"]
    rows, cols = border_lines(res.image.shape[:2], cfg.tiles, cfg.tiles.passes)
    assert rows and cols
    assert abs(seam_ratio(res.image, rows, cols) - 1) < 0.1


def test_tiled_doodle_shares_its_targets(vgg16):
    from doodle.config import load_doodle_config
    from doodle.engine import DoodleTask, initial_image, make_extractors, phase_plan
    from doodle.inputs import load_inputs
    from doodle.recipe import DoodleRecipe
    from nst.engine import run_plan
    from nst.events import Control

    from tests.conftest import DATA

    cfg = load_doodle_config(None, [f"style={DATA / 'doodle' / 'Monet.jpg'}",
                                    f"doodle.target_map={DATA / 'doodle' / 'Coastline_sem.png'}",
                                    "image.size=128", "doodle.method=gram", "doodle.phases=2",
                                    "optimizer.iterations=12", "optimizer.rounds=1", "tiles.size=64",
                                    "tiles.overlap=16", "tiles.max_pixels=4096", *FAST])
    scene = load_inputs(cfg).scene
    recipe = DoodleRecipe.of(cfg, "vgg16", False)
    plan = phase_plan(cfg, scene.size, recipe)
    assert [s.tiled for s in plan] == [False, True]  # tiling is a property of the scale
    task = DoodleTask(scene, recipe)
    built, shared = [], []
    objective, targets = task.tile_objective, task.tile_targets
    task.tile_objective = lambda *a: built.append(objective(*a)) or built[-1]
    task.tile_targets = lambda *a: shared.append(targets(*a)) or shared[-1]
    res = run_plan(plan, task, extractors=make_extractors(recipe, vgg16[0]),
                   x0=initial_image(cfg, scene.scaled(plan[0].hw)), opt=cfg.optimizer, control=Control())
    assert len(shared) == 1 and len(built) == 1  # one set of label targets, one objective for every tile
    assert built[0].step().experimental_get_tracing_count() == 1  # its compiled step traced once
    assert res.image.shape == (96, 128, 3) and np.isfinite(res.image).all()
    assert sum(res.info["scales"][-1]["tiles"]) > 4


def test_a_print_probes_its_numeric_path_once_on_the_tile_shape(vgg16, monkeypatch):
    """precision auto: one probe, at the tile shape, whose choice the whole scales before the tiles use too
    (probing every path at the largest whole scale as well doubled a doodle print's peak memory)."""
    import nst.engine as engine_mod
    from nst.engine import Numerics
    from nst.events import Control
    from nst.inputs import load_inputs
    from nst.precision import Choice
    from nst.recipe import TransferRecipe
    from nst.transfer import make_extractors, stylize

    from tests.conftest import CONTENT, STYLE

    cfg = load_config(None, [f"content={CONTENT}", f"style={STYLE}", "image.size=128", "optimizer.iterations=6",
                             "scales=[{size: 0.5, iterations: 4}, {size: 1.0, iterations: 2}]", "tiles.size=64",
                             "tiles.overlap=16", "tiles.max_pixels=8000", "model.network=vgg16",
                             "model.download=false", "precision=auto", "optimizer.xla=auto"])
    content, styles, _ = load_inputs(cfg, log=lambda _s: None)
    probes = []

    def fake_choose(precision, xla, probe, key, work, cache_dir, log):
        probes.append(key)
        probe(engine_mod.FLOAT32)  # the probe times a step of the tile objective
        return Choice("float32", False, "stub")

    monkeypatch.setattr(engine_mod, "choose", fake_choose)
    weights, info = vgg16
    extractors = make_extractors(TransferRecipe.of(cfg, info.network), weights)
    res = stylize(content, styles, cfg, extractors=extractors, control=Control(),
                  numerics=Numerics(cfg.precision, cfg.optimizer.xla))
    assert probes == ["64x64 vgg16/avg"]  # once, on the tile shape
    assert [s["precision"] for s in res.info["scales"]] == ["float32", "float32"]
    assert res.info["precision_tiles"]["path"] == "float32" and res.image.shape == (96, 128, 3)


# ---------------------------------------------------------------- print files and the run folder


def test_16bit_png_and_tiff_keep_icc_dpi_and_values(tmp_path):
    from nst.images import png_text, save_png, save_tiff
    from nst.print_files import srgb_icc, to_uint16

    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (37, 53, 3)).astype(np.float32)
    save_png(img, tmp_path / "a.png", {"nst:config": "seed: 0 # é"}, bit_depth=16, icc=True, dpi=300)
    save_tiff(img, tmp_path / "a.tif", bit_depth=16, icc=True, dpi=300, description="seed: 0")
    save_tiff(img, tmp_path / "b.tif", bit_depth=8, icc=False, dpi=None)
    for name, icc in (("a.png", True), ("a.tif", True), ("b.tif", False)):
        with Image.open(tmp_path / name) as im:
            im.load()
            assert im.size == (53, 37) and im.mode == "RGB"
            assert (im.info.get("icc_profile") == srgb_icc()) == icc
            if icc:
                assert im.info["dpi"] == pytest.approx((300, 300), abs=0.01)
            # Pillow reads 16 bits as their high byte: within one level of the image
            assert np.abs(np.asarray(im, int) - img).max() <= 1.0
    assert png_text(tmp_path / "a.png") == {"nst:config": "seed: 0 # é"}
    cv2 = pytest.importorskip("cv2")  # an independent 16-bit reader
    for name in ("a.png", "a.tif"):
        data = cv2.imread(str(tmp_path / name), cv2.IMREAD_UNCHANGED)[..., ::-1]
        assert data.dtype == np.uint16 and np.array_equal(data, to_uint16(img))
    assert to_uint16(np.array([0.0, 1.0, 255.0])).tolist() == [0, 257, 65535]


def test_tiled_cli_run_writes_the_print_contract(run_inprocess, make_config, tmp_path):
    from nst.plot import read_losses, term_columns

    cfg = make_config("image: {size: 128}\nscales: [{size: 0.5, iterations: 4}, {size: 1.0, iterations: 2}]\n"
                      "optimizer: {iterations: 6}\n"
                      "tiles: {size: 64, overlap: 16, max_pixels: 4096, passes: 2}\n"
                      "result: {bit_depth: 16, tiff: true, dpi: 240}\nsnapshots: [6]\n")
    out = tmp_path / "run"
    res = run_inprocess([cfg, "--output", out, "--set", "progress.every=1", *[a for s in FAST for a in ("--set", s)]])
    assert res.rc == 0, res.err
    assert "tile 1/" in res.err and "pass 2/2" in res.err and "left" in res.err
    cols = read_losses(out)
    assert {"tile", "pass"} <= set(cols) and "tile" not in term_columns(cols)
    assert set(cols["pass"][cols["phase"] == 1]) == {1, 2} and set(cols["tile"][cols["phase"] == 0]) == {0}
    with Image.open(out / "result.png") as im:
        assert im.size == (128, 96) and im.info["dpi"] == pytest.approx((240, 240), abs=0.01)
        assert im.info.get("icc_profile")
    assert (out / "result.tif").is_file() and (out / "iter_0006.png").is_file()
    import json

    scales = json.loads((out / "run.json").read_text())["scales"]
    assert "tiles" not in scales[0] and scales[1]["tile"] == [64, 64] and len(scales[1]["tiles"]) == 2


@pytest.mark.parametrize("setting,needle", [
    ("tiles.overlap=40", "tiles.overlap"), ("tiles.size=32", "tiles.size"), ("tiles.passes=0", "tiles.passes"),
    ("tiles.max_pixels=1000", "tiles.max_pixels"), ("result.bit_depth=12", "result.bit_depth"),
    ("result.dpi=0", "result.dpi"), ("tiles.size=big", "tiles.size"), ("tiles.sise=64", "did you mean"),
])
def test_bad_print_values_are_one_line_errors(run_inprocess, make_config, tmp_path, clean_error, setting, needle):
    out = tmp_path / "out"
    res = run_inprocess([make_config(), "--set", "tiles.size=64", "--set", "tiles.overlap=16", "--set", setting,
                         "--output", out])
    clean_error(res, needle, out_dir=out)


def test_patch_doodle_refuses_tiles(tmp_path, clean_error, run_cli):
    from tests.conftest import DATA

    cfg = tmp_path / "d.yaml"
    cfg.write_text(f"style: {DATA / 'doodle' / 'Monet.jpg'}\ndoodle: {{target_map: {DATA / 'doodle' / 'Coastline_sem.png'}, "
                   f"method: patch, phases: 1}}\nimage: {{size: 128}}\ntiles: {{size: 64, overlap: 16, max_pixels: 4096}}\n"
                   f"model: {{network: vgg16}}\n")
    res = run_cli([cfg, "--output", tmp_path / "out"], module="doodle.run")
    clean_error(res, "doodle.method", "tiles", out_dir=tmp_path / "out")
