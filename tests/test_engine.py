"""The shared engine: open term sets, subscribers and cancel, coarse-to-fine plans, compiled-step reuse,
the precision path chooser (stubbed timings, cache) and the float32 fallback after a reduced-precision stall.

Most tests use a stub extractor (a fixed 1x1 convolution, as pystiche's tests do) so they run in
milliseconds; the end-to-end ones use the real ImageNet VGG16 at 48-64 px.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from nst import engine
from nst import precision as prec
from nst.config import load_config
from nst.engine import Numerics, run_plan
from nst.plan import Scale
from nst.events import CSV_HEADER, Cancelled, Control, Progress
from nst.objective import Objective
from nst.optimize import Outcome
from nst.terms import ContentTerm, GramTerm, TVTerm, content_targets, style_targets

LAYER = "block1_conv1"


class StubExtractor:
    """A fixed random 1x1 conv + relu as the only 'layer'."""

    network, precision, layers = "vgg16", "float32", [LAYER]

    def __init__(self, channels: int = 6, seed: int = 0):
        self.kernel = tf.constant(np.random.default_rng(seed).normal(size=(1, 1, 3, channels)) / 100, tf.float32)

    def __call__(self, image):
        return {LAYER: tf.nn.relu(tf.nn.conv2d(tf.convert_to_tensor(image, tf.float32), self.kernel, 1, "SAME"))}


def _objective(ext, content, style, tv=0.0):
    return Objective(ext, {"content": ContentTerm({LAYER: 1.0}, content_targets(ext, content, [LAYER])),
                           "style": GramTerm({LAYER: 1.0}, style_targets(ext, [(style, 1.0)], [LAYER]), 1e3),
                           "tv": TVTerm(tv)})


def _cfg(**sets):
    return load_config(None, ["content=x.jpg", "style=y.jpg", *[f"{k}={v}" for k, v in sets.items()]])


def _images(seed=0, hw=(16, 16)):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 255, (*hw, 3)).astype(np.float32), rng.uniform(0, 255, (*hw, 3)).astype(np.float32))


# ---------------------------------------------------------------- events, terms


def test_event_aggregates_groups_and_csv_columns():
    ev = Progress(3, {"content": 1.0, "style.mrf": 2.0, "style.gram": 0.5, "tv": 0.25, "temporal": 4.0}, 7.75, 1.5,
                  np.zeros((4, 6, 3), np.float32), 10, 1, 2)
    assert (ev.content, ev.style, ev.tv) == (1.0, 2.5, 0.25)
    row = ev.csv_values(["style.mrf", "style.gram", "temporal"])
    assert row == ["3", "1", "2.5", "0.25", "7.75", "1.500", "2", "0.5", "4", "1", "6x4"]
    assert ev.size == (4, 6)


def test_objective_returns_its_named_terms_and_the_step_sums_them():
    ext = StubExtractor()
    content, style = _images()
    obj = _objective(ext, content, style, tv=0.5)
    assert obj.names == ["content", "style", "tv"]
    terms, grad = obj.step()(tf.constant(content[None]))
    assert float(terms["content"]) == pytest.approx(0.0, abs=1e-6)  # the content image matches its own target
    assert float(terms["total"]) == pytest.approx(sum(float(terms[k]) for k in obj.names), rel=1e-6)
    assert grad.shape == (1, 16, 16, 3)


def test_nst_gram_term_equals_doodle_regional_gram_with_one_label():
    from doodle.scene import Scene
    from doodle.terms import RegionalGramTerm

    ext = StubExtractor()
    content, style = _images(1, (24, 20))
    scene = Scene.without_maps(style, (24, 20))  # one label covering everything
    regional = RegionalGramTerm("vgg16", scene, {LAYER: 1.0}, ext(style[None]), weight=1e3, form="area")
    gram = GramTerm({LAYER: 1.0}, style_targets(ext, [(style, 1.0)], [LAYER]), 1e3)
    feats = ext(content[None])
    assert float(regional(feats, None)) == pytest.approx(float(gram(feats, None)), rel=1e-5)
    assert float(gram(feats, None)) > 0


# ---------------------------------------------------------------- subscribers, cancel, plans


class WholeTask:
    """A task whose every scale is run whole, on ``obj_for(hw)``."""

    def __init__(self, obj_for):
        self.obj_for = obj_for

    def whole(self, index, hw, extractor):
        return self.obj_for(hw)


def _run(plan, obj_for, x0, control, choice=None):
    cfg = _cfg(**{"optimizer.iterations": sum(s.iterations for s in plan)})
    return run_plan(plan, WholeTask(obj_for), extractors=lambda p="float32": StubExtractor(), x0=x0,
                    opt=cfg.optimizer, control=control, numerics=Numerics("float32", False, choice=choice))


def _report_n(report, x0, n, iterations):
    """What a fake optimiser does: ``n`` progress reports, then an Outcome that stalled when n < iterations."""
    for _ in range(n):
        report({"style": tf.constant(1.0), "total": tf.constant(1.0)}, x0)
    return Outcome(x0, n, "stalled" if n < iterations else "iterations done", n < iterations)


def _run_with_optimizer(monkeypatch, fake_lbfgs, iterations, choice):
    """One 16x16 scale of ``iterations`` on a pinned path with ``fake_lbfgs`` as L-BFGS: (Result, events)."""
    monkeypatch.setitem(engine.OPTIMIZERS, "lbfgs", fake_lbfgs)
    ext = StubExtractor()
    content, style = _images()
    events = []
    res = _run([Scale((16, 16), iterations)], lambda hw: _objective(ext, content, style), content,
               Control([events.append]), choice=choice)
    return res, events


def test_every_subscriber_sees_every_event_and_cancel_stops_the_run():
    ext = StubExtractor()
    content, style = _images()
    seen_a, seen_b = [], []
    control = Control().subscribe(seen_a.append).subscribe(seen_b.append)

    def cancel_at_3(ev):
        if ev.iteration == 3:
            control.cancel()  # as a GUI thread would: no signal, no KeyboardInterrupt

    control.subscribe(cancel_at_3)
    with pytest.raises(Cancelled):
        _run([Scale((16, 16), 10)], lambda hw: _objective(ext, content, style), content, control)
    assert [e.iteration for e in seen_a] == [1, 2, 3] == [e.iteration for e in seen_b]
    assert all(e.total_iterations == 10 and e.phases == 1 for e in seen_a)


def test_coarse_to_fine_sizes_targets_and_loss_fall_per_scale():
    ext = StubExtractor()
    content, style = _images(2, (32, 32))
    built = []

    def obj_for(hw):  # targets recomputed at each scale's size
        c = tf.image.resize(content[None], hw, "area")[0].numpy()
        built.append(hw)
        return _objective(ext, c, style)

    events = []
    x0 = np.full((16, 16, 3), 128.0, np.float32)
    res = _run([Scale((16, 16), 6), Scale((24, 24), 5), Scale((32, 32), 4)], obj_for, x0, Control([events.append]))
    assert built == [(16, 16), (24, 24), (32, 32)]
    assert [e.iteration for e in events] == list(range(1, 16)) and res.iterations == 15
    for phase, hw in enumerate([(16, 16), (24, 24), (32, 32)]):
        rows = [e for e in events if e.phase == phase]
        assert {e.size for e in rows} == {hw} and all(e.phases == 3 for e in rows)
        assert rows[-1].total < rows[0].total, f"loss did not fall at scale {phase + 1}"
    assert res.image.shape == (32, 32, 3)
    assert [s["done"] for s in res.info["scales"]] == [6, 5, 4]


def test_compiled_step_is_reused_for_new_targets_of_the_same_shape():
    ext = StubExtractor()
    content, style = _images(3)
    obj = _objective(ext, content, style)
    cfg = _cfg(**{"optimizer.iterations": 3})
    for frame in range(3):  # three "video frames": new content targets, same shapes
        c2, _ = _images(10 + frame)
        obj.terms["content"].set_target(content_targets(ext, c2, [LAYER]))
        run_plan([Scale((16, 16), 3)], WholeTask(lambda hw: obj), extractors=lambda p="float32": ext, x0=c2,
                 opt=cfg.optimizer, control=Control())
    assert obj.step().experimental_get_tracing_count() == 1
    with pytest.raises(ValueError, match="changed shape"):
        obj.terms["content"].set_target(content_targets(ext, np.zeros((8, 8, 3), np.float32), [LAYER]))


def test_reduced_precision_stall_finishes_in_float32(monkeypatch):
    """A bfloat16 L-BFGS that finds no further decrease hands the remaining iterations to float32."""
    calls = []

    def fake_lbfgs(step, x0, cfg, iterations, report, on_round=None, rounds=1):
        precision = "bfloat16" if not calls else "float32"
        calls.append((precision, iterations))
        n = 4 if precision == "bfloat16" else iterations
        return _report_n(report, x0, n, iterations)

    res, events = _run_with_optimizer(monkeypatch, fake_lbfgs, 10, prec.Choice("bfloat16", False, "test"))
    assert calls == [("bfloat16", 10), ("float32", 6)]
    assert res.iterations == 10 and res.stop == "iterations done"
    assert [e.precision for e in events] == ["bfloat16"] * 4 + ["float32"] * 6
    assert "float32" in res.info["precision_fallbacks"][0]


# ---------------------------------------------------------------- the path chooser


def test_explicit_precision_and_xla_pin_the_path():
    called = []
    c = prec.choose("bfloat16", False, lambda p: called.append(p) or (1.0, 1.0), "64x64", 10**9, None)
    assert (c.precision, c.xla, called) == ("bfloat16", False, [])


def test_chooser_picks_the_fastest_correct_path_and_caches_it(tmp_path, monkeypatch):
    monkeypatch.setattr(prec, "has_gpu", lambda: False)
    timings = {"float32": (1.0, 100.0), "float32+xla": (0.95, 100.0), "bfloat16": (0.4, 101.0),
               "bfloat16+xla": (0.3, 180.0)}  # bf16+xla is fastest but its loss strays: not correct
    probed = []

    def probe(path):
        probed.append(path.name)
        return timings[path.name]

    c = prec.choose("auto", "auto", probe, "512x384", 10**9, tmp_path)
    assert c.name == "bfloat16" and sorted(probed) == sorted(timings)
    cache = json.loads((tmp_path / prec.CACHE_FILE).read_text())
    assert cache[prec.machine_key()]["512x384"]["bfloat16"] == 0.4
    again = prec.choose("auto", "auto", lambda p: pytest.fail("probed again"), "512x384", 10**9, tmp_path)
    assert again.name == "bfloat16" and "cached" in again.why
    # float32 + xla is only 5% faster than plain float32: within the margin, plain float32 stays
    c32 = prec.choose("float32", "auto", probe, "256x192", 10**9, tmp_path)
    assert c32.name == "float32"


def test_the_probe_cache_keeps_one_entry_per_objective_cost(monkeypatch):
    """The probe's cache key carries the task's cost_key: a Gaussian-W2 run at the size a Gram run probed gets
    its own probe (it once took the Gram run's bfloat16+XLA pick and ran 6x slower per evaluation)."""
    from types import SimpleNamespace

    from nst.recipe import TransferRecipe
    from nst.transfer import TransferTask

    keys = []
    monkeypatch.setattr(engine, "choose", lambda *a, **k: keys.append(a[3]) or prec.Choice("float32", False, "t"))
    ext = SimpleNamespace(network="vgg16", pooling="avg")
    numerics = Numerics(precision="auto", xla="auto")

    def key_of(form):
        recipe = TransferRecipe.of(_cfg(**{"loss.style_form": form}), "vgg16")
        engine.choose_path([Scale((48, 64), 10)], TransferTask(None, recipe), lambda p="float32": ext,
                           np.zeros((48, 64, 3), np.float32), numerics, lambda s: None)
        return keys[-1]

    assert key_of("gram") == "64x48 vgg16/avg"  # the paper's objective: the key (and its cached entries) as before
    assert key_of("wasserstein") == "64x48 vgg16/avg style_form=wasserstein" != key_of("sliced_wasserstein")


def test_chooser_skips_the_probe_for_tiny_runs_and_survives_failing_paths(tmp_path, monkeypatch):
    monkeypatch.setattr(prec, "has_gpu", lambda: False)
    tiny = prec.choose("auto", "auto", lambda p: pytest.fail("probed"), "64x48", 64 * 48 * 10, tmp_path)
    assert tiny.name == "float32" and "too small" in tiny.why

    def probe(path):
        if path.xla:
            raise RuntimeError("no XLA here")
        return (1.0, 5.0) if path.precision == "float32" else (0.5, 5.0)

    c = prec.choose("auto", "auto", probe, "640x480", 10**9, tmp_path, log=lambda s: None)
    assert c.name == "bfloat16" and c.timings["float32+xla"] is None


# ---------------------------------------------------------------- real network, end to end


@pytest.mark.slow
def test_bfloat16_plain_matches_float32_value_and_gradient(vgg16):
    from nst.recipe import TransferRecipe
    from nst.transfer import compute_targets, make_extractors, make_objective

    cfg = _cfg(**{"layers.style": "{conv1_1: 0.5, conv2_1: 0.5, conv3_1: 1.0}", "layers.content": "{conv3_2: 1}"})
    rng = np.random.default_rng(0)
    content, style = (rng.uniform(0, 255, (48, 48, 3)).astype(np.float32) for _ in range(2))
    x = tf.constant(rng.uniform(0, 255, (1, 48, 48, 3)).astype(np.float32))
    out = {}
    recipe = TransferRecipe.of(cfg, "vgg16")
    for p in ("float32", "bfloat16"):
        extractors = make_extractors(recipe, vgg16[0])
        obj = make_objective(extractors(p), compute_targets(extractors("float32"), content, [(style, 1.0)], recipe),
                             recipe)
        terms, grad = obj.step(False)(x)
        out[p] = float(terms["total"]), grad.numpy()
    (t32, g32), (t16, g16) = out["float32"], out["bfloat16"]
    assert t16 == pytest.approx(t32, rel=0.05)  # bf16 keeps ~3 significant digits per activation
    cosine = (g16 * g32).sum() / np.linalg.norm(g16) / np.linalg.norm(g32)
    assert cosine > 0.95


@pytest.mark.slow
def test_nst_cli_coarse_to_fine_and_cancel_through_execute(vgg16, tmp_path, make_config):
    from nst.plot import read_losses
    from nst.run import execute

    cfg = load_config(make_config(), ["image.size=64", "optimizer.iterations=8", "precision=float32",
                                      "optimizer.xla=false", "scales=[{size: 0.5, iterations: 5}, {size: 1.0, iterations: 3}]",
                                      "snapshots=[5, 8]", f"output_dir={tmp_path / 'run'}", "progress.quiet=true"])
    record = execute(cfg, vgg16)
    cols = read_losses(tmp_path / "run")
    assert list(cols["phase"]) == [0] * 5 + [1] * 3
    assert record["status"] == "finished" and [s["done"] for s in record["scales"]] == [5, 3]
    assert record["precision"]["path"] == "float32"
    from nst.images import read_image
    assert read_image(tmp_path / "run" / "iter_0005.png").shape[:2] == (24, 32)  # coarse scale: half size
    assert read_image(tmp_path / "run" / "result.png").shape[:2] == (48, 64)

    control = Control()
    control.subscribe(lambda ev: control.cancel() if ev.iteration == 2 else None)
    record = execute(cfg, vgg16, control=control)
    assert record["status"] == "cancelled" and record["iterations_done"] == 2
    assert not (tmp_path / "run" / "result.png").exists()
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "cancelled"
    assert open(tmp_path / "run" / "losses.csv").readline().startswith(",".join(CSV_HEADER))


def test_open_terms_reach_plot_and_score_tables(tmp_path):
    """A doodle's style.mrf / style.gram columns are read, drawn and tabled like the fixed ones."""
    from nst.plot import active_terms, plot_runs, read_losses
    from nst.score import format_table

    run = tmp_path / "run"
    run.mkdir()
    header = ",".join([*CSV_HEADER, "style.mrf", "style.gram", "phase", "size"])
    rows = [f"{i},0,{3.0 / i},{0.1},{3.0 / i + 0.1},{i * 0.5},{2.0 / i},{1.0 / i},{0 if i < 3 else 1},"
            f"{'32x24' if i < 3 else '64x48'}" for i in range(1, 6)]
    (run / "losses.csv").write_text("\n".join([header, *rows]) + "\n")
    cols = read_losses(run)
    assert list(cols["phase"]) == [0, 0, 1, 1, 1]
    np.testing.assert_allclose(cols["style"], cols["style.mrf"] + cols["style.gram"])
    assert active_terms([cols]) == ["content", "style", "tv", "total", "style.mrf", "style.gram"]
    png = plot_runs([run], tmp_path / "curves.png")
    assert png.is_file() and png.stat().st_size > 1000
    table = format_table([{"image": "a.png", "losses": {"content": 1.0, "style": 2.0, "tv": 0.0, "total": 3.0,
                                                         "temporal": 0.5}}], None)
    assert [line.split()[0] for line in table.splitlines()[1:]] == ["content", "style", "tv", "total", "temporal"]


def test_a_path_that_cannot_run_falls_back_to_float32(monkeypatch):
    """An XLA or bf16 step that fails before its first iteration (no kernel) hands the run to plain float32."""
    calls = []

    def flaky_lbfgs(step, x0, cfg, iterations, report, on_round=None, rounds=1):
        calls.append(iterations)
        if len(calls) == 1:
            raise tf.errors.UnimplementedError(None, None, "no deterministic XLA kernel\nmore")
        return _report_n(report, x0, iterations, iterations)

    res, events = _run_with_optimizer(monkeypatch, flaky_lbfgs, 4, prec.Choice("float32", True, "test"))
    assert calls == [4, 4] and res.iterations == 4 and [e.precision for e in events] == ["float32"] * 4
    assert "float32+xla failed (UnimplementedError: no deterministic XLA kernel)" in res.info["precision_fallbacks"][0]
