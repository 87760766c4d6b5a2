"""loss.style_form through the real run: every form lowers its own style loss by its FALLS factor on the real
VGG16 (64 px), the terms it builds, and its bad input through the CLI (one error line, exit 2, nothing written)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nst.config import STYLE_FORMS, load_config
from nst.errors import UserError

from tests.conftest import CONTENT, STYLE

REPO = Path(__file__).resolve().parents[1]
FAST = ["model.network=vgg16", "model.download=false", "precision=float32", "optimizer.xla=false"]


def _cfg(form: str, *extra: str):
    return load_config(REPO / "configs" / "oil_landscape.yaml",
                       [f"loss.style_form={form}", "image.size=64", "optimizer.iterations=30", "snapshots=[]",
                        *FAST, *extra])


# How far each form's own style loss falls in 30 L-BFGS iterations at 64 px from oil_landscape's noise start (the
# paper's weights; W2, sliced W, histogram and mrf in the Gram term's units, nst.style_stats.gram_units). Measured
# on this engine (first event -> best of the last 5): gram, covariance and histogram > 10x; Gaussian W2 6.2x (2.6x
# before the Gram units); mrf ~1.2x (its nearest-patch energy has a floor: docs/STYLE_FORMS.md). Sliced W was not
# re-measured at 64 px in time (the machine was saturated); at the 128 px / 50 iterations it falls 68x and
# W2 17x. Each bound below is what its form must reach, with a margin under the measured fall.
FALLS = {"gram": 10.0, "covariance": 10.0, "histogram": 10.0, "wasserstein": 4.0, "sliced_wasserstein": 4.0,
         "mrf": 1.05}


@pytest.mark.slow
@pytest.mark.parametrize("form", STYLE_FORMS)
def test_every_form_lowers_its_own_style_loss(vgg16, form):
    from nst.events import Control
    from nst.inputs import load_inputs
    from nst.recipe import TransferRecipe
    from nst.transfer import make_extractors, stylize

    extra = ["optimizer.rounds=3"] if form in ("sliced_wasserstein", "mrf") else []
    if form == "mrf":  # 3x3 patches need 3 positions at the deepest layer: conv5_1 has 4x3 at 64 px
        extra += ["layers.style=null", "layers.style={conv1_1: 0.25, conv2_1: 0.25, conv3_1: 0.25, conv4_1: 0.25}"]
    cfg = _cfg(form, *extra)
    content, styles, _ = load_inputs(cfg, log=lambda _s: None)
    events = []
    res = stylize(content, styles, cfg, extractors=make_extractors(TransferRecipe.of(cfg, "vgg16"), vgg16[0]),
                  control=Control([events.append]))
    assert res.image.shape == (48, 64, 3)
    first, last = events[0].style, min(e.style for e in events[-5:])
    assert last < first / FALLS[form], f"{form}: style loss {first:.4g} -> {last:.4g}"
    names = {k for k in events[0].terms if k.startswith("style")}
    assert names == ({"style.gram", "style.histogram"} if form == "histogram" else {"style"})


def test_the_paper_form_is_the_gram_term():
    from nst.recipe import TransferRecipe
    from nst.style_forms import style_terms
    from nst.terms import GramTerm

    import tensorflow as tf

    recipe = TransferRecipe.of(_cfg("gram"), "vgg16")
    terms = style_terms(None, {"style": {n: tf.zeros((64, 64)) for n in recipe.style_layers}}, recipe)
    assert list(terms) == ["style"] and type(terms["style"]) is GramTerm


@pytest.mark.parametrize("sets,message", [
    (["loss.style_form=wasserstien"], "must be one of gram, .*; got 'wasserstien' \\(did you mean 'wasserstein'\\?\\)"),
    (["loss.style_form=sliced_wasserstein", "loss.projections=0"], "'loss.projections' must be at least 1"),
    (["loss.histogram_weight=-1"], "'loss.histogram_weight' must not be negative"),
    (["loss.patch_size=0"], "'loss.patch_size' and 'loss.patch_stride' must be at least 1"),
])
def test_bad_style_form_keys_are_refused_at_load(sets, message):
    with pytest.raises(UserError, match=message):
        _cfg("gram", *sets)


def _cli(tmp_path, *sets):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "nst.run", str(REPO / "configs" / "oil_landscape.yaml"),
                           "--output", str(out), *[a for s in [*FAST, *sets] for a in ("--set", s)]],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    return done, out


def test_a_form_that_cannot_be_tiled_is_one_error_line_before_the_folder(tmp_path):
    done, out = _cli(tmp_path, "loss.style_form=wasserstein", "image.size=256", "tiles.max_pixels=16384",
                     "tiles.size=128", "tiles.overlap=32")
    assert done.returncode == 2, done.stderr
    lines = [l for l in done.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "cannot run in tiles" in lines[0] and "use gram for prints" in lines[0]
    assert not (out / "result.png").exists() and not (out / "run.json").exists()


def test_mrf_with_unequal_blend_weights_is_one_error_line(tmp_path):
    done, out = _cli(tmp_path, "loss.style_form=mrf", "image.size=64", "optimizer.iterations=2",
                     f'style=[{{path: "{STYLE}", weight: 1.0}}, {{path: "{CONTENT}", weight: 3.0}}]')
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: loss.style_form mrf:")
    assert not (out / "result.png").exists()
