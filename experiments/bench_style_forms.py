"""Benchmark: seconds per loss+gradient evaluation of each style form (nst.style_terms) beside the Gram term.

    nice -n 10 python -m experiments.bench_style_forms [--size 256] [--evals 7] [--forms gram covariance ...]

The objective is configs/oil_landscape.yaml's at ``--size`` on the real VGG16 (float32,
no XLA): content conv4_2 plus one style term over conv1_1..conv5_1 at 0.2 each (mrf: conv3_1 and conv4_1 at
0.5, Li & Wand's layers, candidate patches 3x3 at stride 2); ``gram+histogram`` is Risser et al.'s pair;
``wasserstein/newton_schulz`` takes W2's matrix root by 25 Newton-Schulz steps instead of eigh.
One row per form: the median and the spread of ``--evals`` timed evaluations after a warm-up (tracing; the
forms take turns, one evaluation each, so a change in the machine's load falls on all of them alike), the
style term's value (unit weight) at the run's start image and at the style image itself (the form's floor:
0 in exact arithmetic), and the start value over Gram's, a first guess at the style weight that makes a form
pull as hard as Gram at the start. For the forms with rounds, also the seconds of one round's hook
(mrf: patch matching; sliced_wasserstein: new directions and the style's projections on them). Prints the CPU and
the load average before and after. Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import tensorflow as tf

from experiments.benchmark import machine
from experiments.common import ROOT

FORMS = ("gram", "covariance", "wasserstein", "wasserstein/newton_schulz", "sliced_wasserstein", "histogram",
         "gram+histogram", "mrf")
MRF_LAYERS = {"block3_conv1": 0.5, "block4_conv1": 0.5}


def style_terms(form: str, extractor, styles, layers: dict[str, float]) -> dict:
    """{term name: term} for one form, each at weight 1."""
    from nst.style_terms import (CovarianceTerm, HistogramTerm, MRFTerm, SlicedWassersteinTerm, WassersteinTerm,
                                 gaussian_targets, patch_targets, sample_targets)
    from nst.terms import GramTerm, style_targets

    names = list(layers)
    if form == "gram":
        return {"style": GramTerm(layers, style_targets(extractor, styles, names))}
    if form == "covariance":
        return {"style": CovarianceTerm(layers, gaussian_targets(extractor, styles, names))}
    if form.startswith("wasserstein"):  # wasserstein/newton_schulz: the matrix root by iterations, not eigh
        root = form.partition("/")[2] or "eigh"
        return {"style": WassersteinTerm(layers, gaussian_targets(extractor, styles, names), root=root)}
    if form == "sliced_wasserstein":
        return {"style": SlicedWassersteinTerm(layers, sample_targets(extractor, styles, names))}
    if form == "histogram":
        return {"style": HistogramTerm(layers, sample_targets(extractor, styles, names))}
    if form == "gram+histogram":
        return {**{"style.gram": style_terms("gram", extractor, styles, layers)["style"]},
                "style.histogram": style_terms("histogram", extractor, styles, layers)["style"]}
    return {"style": MRFTerm(extractor, MRF_LAYERS, patch_targets(extractor, styles, list(MRF_LAYERS)))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--evals", type=int, default=7)
    p.add_argument("--forms", nargs="+", default=list(FORMS), choices=FORMS)
    p.add_argument("--xla", action="store_true", help="XLA-compile every form's step (default: plain float32)")
    args = p.parse_args()

    from nst.config import load_config
    from nst.inputs import load_inputs
    from nst.objective import Objective
    from nst.style_terms import MRFTerm
    from nst.terms import ContentTerm, content_targets
    from nst.recipe import TransferRecipe
    from nst.transfer import initial_image, make_extractors
    from nst.weights import load_weights

    cfg = load_config(ROOT / "configs" / "oil_landscape.yaml", [f"image.size={args.size}", "precision=float32",
                                                                      "model.network=vgg16"])
    content, styles, _ = load_inputs(cfg, log=lambda _s: None)
    weights, info = load_weights(cfg.model.network, cfg.model.weights, cfg.model.download)
    recipe = TransferRecipe.of(cfg, info.network)
    extractor = make_extractors(recipe, weights)("float32")
    content_w, style_w = recipe.content_layers, recipe.style_layers
    x0 = initial_image(cfg, content)
    image = tf.constant(x0[None])
    print(f"machine: {machine()}")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{info.network}, content {content.shape[1]}x{content.shape[0]}, style {styles[0][0].shape[1]}x"
          f"{styles[0][0].shape[0]}, {args.evals} timed evaluations per form after a warm-up, "
          f"float32{' + XLA' if args.xla else ''}")
    print(f"{'form':>25} {'s/eval median':>13} {'min-max':>13} {'style at start':>14} {'at style':>10} "
          f"{'start/gram':>10}  note")
    built = {}
    for form in args.forms:  # build, warm up (trace) and score every form first ...
        terms = style_terms(form, extractor, styles, style_w)
        content_term = ContentTerm(content_w, content_targets(extractor, content, list(content_w)),
                                   cfg.loss.content_weight)
        objective = Objective(extractor, {"content": content_term, **terms})
        note = ""
        if objective.has_rounds:  # round 0 (sliced: keeps its first draw), then time round 1's hook
            objective.on_round(x0)
            start = time.perf_counter()
            objective.on_round(x0)
            what = "patch matching" if form == "mrf" else "redrawing directions"
            note = f"{what} {time.perf_counter() - start:.2f} s per round"
        values, grad = objective.step(args.xla)(image)
        finite = bool(np.isfinite(grad.numpy()).all())
        at_start = sum(float(values[n]) for n in terms)
        style_img = styles[0][0]
        feats = extractor(style_img[None])
        mrf = [t for t in terms.values() if isinstance(t, MRFTerm)]
        for term in mrf:  # the style image against its own candidate patches
            term.on_round(style_img)
        at_style = sum(float(t(feats, None)) for t in terms.values())
        for term in mrf:  # back to the start image's matches for the timing
            term.on_round(x0)
        built[form] = (objective.step(args.xla), at_start, at_style, note, finite, [])
    for _ in range(args.evals):  # ... then time them in turns, so that a change of load hits every form alike
        for form, (step, *_, times) in built.items():
            start = time.perf_counter()
            _, grad = step(image)
            grad.numpy()
            times.append(time.perf_counter() - start)
    gram_start = built["gram"][1] if "gram" in built else None
    for form, (_, at_start, at_style, note, finite, times) in built.items():
        ratio = f"{at_start / gram_start:.3g}" if gram_start else "-"
        print(f"{form:>25} {statistics.median(times):>13.3f} {min(times):>6.3f}-{max(times):<6.3f} "
              f"{at_start:>14.4g} {at_style:>10.3g} {ratio:>10}  {note}{'' if finite else ' NON-FINITE GRADIENT'}")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
