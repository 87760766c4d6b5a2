"""Which style statistic a run matches (``loss.style_form``): its targets and its terms, by name.

``gram`` is the paper's (eq. 2.5, :class:`nst.terms.GramTerm`; unchanged bit for bit). The others are
:mod:`nst.style_terms`: ``covariance`` (mean-free Grams), ``wasserstein`` (Gaussian W2: mean + covariance),
``sliced_wasserstein`` (Heitz et al. 2021: ``loss.projections`` random directions per layer, drawn from the
run's seed and redrawn only between optimiser rounds, so the function L-BFGS sees is fixed within a round),
``histogram`` (Risser et al. 2017: Gram plus per-channel histograms, ``loss.histogram_weight`` times the
style weight) and ``mrf`` (Li & Wand 2016: nearest style patches, matched at the start of every round).
Every form reads ``layers.style`` with its weights, and blends several style images by weight (``mrf``:
equal weights only). :func:`style_targets` computes a form's targets; :func:`style_terms` builds its named
terms for an objective, so the scorer, the video and the studio pick a form up with no code of their own.
"""

from __future__ import annotations

import numpy as np

from nst.config import STYLE_FORMS as FORMS
from nst.errors import UserError
from nst.features import FeatureExtractor
from nst.recipe import TransferRecipe
from nst.style_terms import (CovarianceTerm, HistogramTerm, MRFTerm, SlicedWassersteinTerm, WassersteinTerm,
                             gaussian_targets, patch_targets, sample_targets)
from nst.terms import GramTerm
from nst.terms import style_targets as gram_targets

TILEABLE = ("gram",)  # the forms whose style targets can be summed tile by tile (prints)

Styles = list[tuple[np.ndarray, float]]


def style_targets(extractor: FeatureExtractor, styles: Styles, recipe: TransferRecipe) -> dict[str, object]:
    """{term name: its targets} for the recipe's form, from the style images (blended by weight)."""
    layers, form = list(recipe.style_layers), recipe.style_form
    if form == "gram":
        return {"style": gram_targets(extractor, styles, layers)}
    if form in ("covariance", "wasserstein"):
        return {"style": gaussian_targets(extractor, styles, layers)}
    if form == "sliced_wasserstein":
        return {"style": sample_targets(extractor, styles, layers)}
    if form == "histogram":
        return {"style.gram": gram_targets(extractor, styles, layers),
                "style.histogram": sample_targets(extractor, styles, layers)}
    if form == "mrf":
        try:
            return {"style": patch_targets(extractor, styles, layers, recipe.patch_size, recipe.patch_stride)}
        except ValueError as exc:  # unequal blend weights
            raise UserError(f"loss.style_form mrf: {exc}") from None
    raise UserError(f"unknown loss.style_form '{form}'; use one of {', '.join(FORMS)}")


def style_terms(extractor: FeatureExtractor, targets: dict[str, object], recipe: TransferRecipe) -> dict:
    """The form's named style terms over ``targets`` (from :func:`style_targets`)."""
    r, w, form = recipe, recipe.style_weight, recipe.style_form
    if form == "gram":
        return {"style": GramTerm(r.style_layers, targets["style"], w)}
    if form == "covariance":
        return {"style": CovarianceTerm(r.style_layers, targets["style"], w)}
    if form == "wasserstein":
        return {"style": WassersteinTerm(r.style_layers, targets["style"], w)}
    if form == "sliced_wasserstein":
        return {"style": SlicedWassersteinTerm(r.style_layers, targets["style"], w, r.projections, r.seed)}
    if form == "histogram":
        return {"style.gram": GramTerm(r.style_layers, targets["style.gram"], w),
                "style.histogram": HistogramTerm(r.style_layers, targets["style.histogram"], w * r.histogram_weight)}
    if form == "mrf":
        return {"style": MRFTerm(extractor, r.style_layers, targets["style"], w, r.patch_size)}
    raise UserError(f"unknown loss.style_form '{form}'; use one of {', '.join(FORMS)}")
