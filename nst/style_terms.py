"""Style terms beyond the Gram matrix, for an :class:`nst.objective.Objective` (same interface as
:class:`nst.terms.GramTerm`): covariance, Wasserstein-2 between Gaussians, sliced Wasserstein (Heitz et al.
2021), per-channel histograms (Risser et al. 2017) and MRF patches (Li & Wand 2016).

Each term is ``term(features, image) -> weight * sum_l w_l loss_l``; its targets come from a ``*_targets``
function (several style images blended by weight, as :func:`nst.terms.style_targets` blends Grams: the
targets are the statistics of the weighted mixture of the style images' features) and live in
``tf.Variable`` s that :meth:`set_target` refills without retracing the compiled step. The formulas and
their normalisations are :mod:`nst.style_stats`; the patch matching is :mod:`nst.patches`.

=====================  =========================  ==============================================
term                   targets from               masks / rounds
=====================  =========================  ==============================================
CovarianceTerm         gaussian_targets           ``masks``: per-layer (h*w,) position weights
WassersteinTerm        gaussian_targets           ``masks``
SlicedWassersteinTerm  sample_targets             ``masks``; directions redrawn per round
HistogramTerm          sample_targets             ``masks``
MRFTerm                patch_targets              no masks (regions: the doodle's semantic maps);
                                                  patches matched per round (``on_round``)
=====================  =========================  ==============================================

W2, sliced W, histogram and MRF multiply each layer's distance by a constant of the style's Gram target
(``units``, :func:`nst.style_stats.gram_units`), so that ``loss.style_weight`` weighs them as it weighs Gram.

``masks`` (the image side) and the targets functions' ``masks`` (the style side, one dict per style image)
are non-negative weights per feature position of a layer, (h, w) or (h*w,): a region, soft at its edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from nst.features import FeatureExtractor
from nst.patches import best_matches, extract_patches, mrf_loss
from nst.style_stats import (NEWTON_SCHULZ_ITERATIONS, RIDGE, covariance_loss, flatten, gram_units,
                             histogram_loss, mean_covariance, quantile_table, random_directions,
                             second_moment, sliced_wasserstein_loss, sqrtm_psd, wasserstein_loss,
                             wasserstein_loss_positions)

Styles = list[tuple[np.ndarray, float]]
Masks = dict[str, np.ndarray]

# Style patches within this many positions of the feature map's edge are no candidates: their features carry
# the convolutions' zero padding, which the output's patches would copy (as the doodle's patch term does).
STYLE_MARGIN = 1


@dataclass(frozen=True)
class Gaussian:
    """A layer's style distribution as mean (C,) and covariance (C, C), with the covariance's root."""

    mean: np.ndarray
    cov: np.ndarray
    cov_sqrt: np.ndarray


@dataclass(frozen=True)
class Samples:
    """A layer's style features pooled over the style images: values (N, C), weights (N,) summing to 1
    (None: uniform, one unmasked style image), and the quantile tables' length (the largest image's M)."""

    values: np.ndarray
    weights: np.ndarray | None
    levels: int


# ---------------------------------------------------------------- targets


def _checked(styles: Styles) -> list[float]:
    if not styles:
        raise ValueError("no style images given")
    weights = [float(w) for _, w in styles]
    if min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"style weights must be >= 0 with a positive sum, got {weights}")
    return [w / sum(weights) for w in weights]


def style_samples(features: list[dict[str, tf.Tensor]], weights: list[float], layers: list[str],
                  masks: list[Masks | None] | None = None) -> dict[str, Samples]:
    """The mixture of the style images' features per layer: image i's positions weighted w_i (times its mask,
    normalised over the image) -- the distribution every non-Gram form matches."""
    masks = masks or [None] * len(features)
    out = {}
    for n in layers:
        values, sample_w, sizes = [], [], []
        for feats, w, mask in zip(features, weights, masks):
            f = flatten(feats[n]).numpy().astype(np.float32)  # (M_i, C)
            m = None if mask is None or n not in mask else np.asarray(mask[n], np.float64).reshape(-1)
            if m is not None and (m.shape[0] != f.shape[0] or m.min() < 0 or m.sum() <= 0):
                raise ValueError(f"the style mask at {n} must be {f.shape[0]} non-negative weights with a "
                                 f"positive sum, got {m.shape[0]} summing to {m.sum():g}")
            values.append(f)
            sample_w.append(w * (np.full(f.shape[0], 1.0 / f.shape[0]) if m is None else m / m.sum()))
            sizes.append(f.shape[0])
        uniform = len(features) == 1 and (masks[0] is None or n not in masks[0])
        out[n] = Samples(np.concatenate(values), None if uniform else np.concatenate(sample_w), max(sizes))
    return out


def _style_features(extractor: FeatureExtractor, styles: Styles) -> list[dict[str, tf.Tensor]]:
    return [extractor(np.asarray(img, np.float32)[None]) for img, _ in styles]


def sample_targets(extractor: FeatureExtractor, styles: Styles, layers: list[str],
                   masks: list[Masks | None] | None = None) -> dict[str, Samples]:
    """Targets of :class:`SlicedWassersteinTerm` and :class:`HistogramTerm`: {layer: pooled style features}."""
    weights = _checked(styles)
    return style_samples(_style_features(extractor, styles), weights, layers, masks)


def gaussian(samples: Samples) -> Gaussian:
    """Mean, covariance (float64) and the covariance's root (by eigendecomposition, once) of pooled samples."""
    f = tf.constant(samples.values, tf.float64)
    w = None if samples.weights is None else tf.constant(samples.weights, tf.float64)
    mu, cov = mean_covariance(f, w)
    return Gaussian(mu.numpy(), cov.numpy(), sqrtm_psd(cov.numpy()))


def gaussian_targets(extractor: FeatureExtractor, styles: Styles, layers: list[str],
                     masks: list[Masks | None] | None = None) -> dict[str, Gaussian]:
    """Targets of :class:`CovarianceTerm` and :class:`WassersteinTerm`: {layer: the mixture's Gaussian}."""
    return {n: gaussian(s) for n, s in sample_targets(extractor, styles, layers, masks).items()}


def patch_targets(extractor: FeatureExtractor, styles: Styles, layers: list[str], size: int = 3,
                  stride: int = 2) -> dict[str, tf.Tensor]:
    """Targets of :class:`MRFTerm`: {layer: (N, size*size*C) candidate patches of every style image}.

    Nearest-patch matching has no use for blend weights: the patches of all style images are pooled, and
    unequal weights are refused rather than silently ignored.
    """
    weights = _checked(styles)
    if max(weights) - min(weights) > 1e-12:
        raise ValueError("the mrf form pools the patches of all style images; per-image blend weights have no "
                         "meaning for nearest-patch matching (give the style images equal weights)")
    out: dict[str, list] = {n: [] for n in layers}
    for feats in _style_features(extractor, styles):
        for n in layers:
            f = feats[n]
            m = STYLE_MARGIN if min(f.shape[1:3]) >= size + 2 * STYLE_MARGIN else 0
            out[n].append(extract_patches(f[:, m:f.shape[1] - m, m:f.shape[2] - m], size, stride))
    patches = {n: tf.concat(p, axis=0) for n, p in out.items()}
    for n, p in patches.items():
        if p.shape[0] == 0:
            raise ValueError(f"the style image is too small for {size}x{size} patches at {n}")
    return patches


# ---------------------------------------------------------------- shared plumbing


def _image_weights(masks: Masks | None, layers: list[str]) -> dict[str, tf.Tensor | None]:
    """Per layer the image-side position weights (M,) summing to 1, or None (uniform)."""
    masks = masks or {}
    unknown = [n for n in masks if n not in layers]
    if unknown:
        raise ValueError(f"masks given for layers {unknown} the term does not read")
    out = {}
    for n in layers:
        if n not in masks:
            out[n] = None
            continue
        m = np.asarray(masks[n], np.float64).reshape(-1)
        if m.min() < 0 or m.sum() <= 0:
            raise ValueError(f"the mask at {n} must be non-negative with a positive sum")
        out[n] = tf.constant(m / m.sum(), tf.float32)
    return out


def _weights_for(w: tf.Tensor | None, f: tf.Tensor, layer: str) -> tf.Tensor | None:
    positions = f.shape[1] * f.shape[2] if f.shape[1] is not None and f.shape[2] is not None else None
    if w is not None and positions is not None and w.shape[0] != positions:
        raise ValueError(f"the mask at {layer} has {w.shape[0]} positions, the features {positions}")
    return None if w is None else tf.cast(w, f.dtype)


def _variable(value, dtype=tf.float32) -> tf.Variable:
    return tf.Variable(tf.cast(value, dtype), trainable=False)


def _assign(var: tf.Variable, value, name: str) -> None:
    value = tf.cast(value, var.dtype)
    if value.shape != var.shape:
        raise ValueError(f"target {name} changed shape {var.shape} -> {value.shape}: build a new objective")
    var.assign(value)


class _LayerTerm:
    """Per-layer weights, overall weight, image-side masks; subclasses add targets and ``_layer_loss``.

    ``units`` (None for covariance, already in Gram's units): per layer a tf.Variable holding the factor that
    puts the layer's distance into the Gram term's units (:func:`nst.style_stats.gram_units`); a variable so
    that :meth:`set_target` refills it without retracing."""

    units: dict[str, tf.Variable] | None = None

    def __init__(self, layer_weights: dict[str, float], weight: float, masks: Masks | None):
        self.layer_weights, self.weight = dict(layer_weights), weight
        self.layers = list(layer_weights)
        self.masks = _image_weights(masks, self.layers)

    def _set_units(self, moments: dict[str, np.ndarray]) -> None:
        if self.units is None:
            self.units = {n: _variable(gram_units(moments[n])) for n in self.layers}
        else:
            for n in self.layers:
                self.units[n].assign(gram_units(moments[n]))

    def __call__(self, feats: dict[str, tf.Tensor], image: tf.Tensor) -> tf.Tensor:
        total = tf.constant(0.0)
        for n, w in self.layer_weights.items():
            f = feats[n]
            loss = self._layer_loss(n, flatten(f), _weights_for(self.masks[n], f, n))
            total += w * (loss if self.units is None else tf.cast(self.units[n], loss.dtype) * loss)
        return self.weight * total


# ---------------------------------------------------------------- the terms


class CovarianceTerm(_LayerTerm):
    """weight * sum_l w_l ||S_l - S_l^style||^2 / (4 C^2): the Gram term with the means removed."""

    def __init__(self, layer_weights: dict[str, float], targets: dict[str, Gaussian], weight: float = 1.0,
                 masks: Masks | None = None):
        super().__init__(layer_weights, weight, masks)
        self.targets = {n: _variable(targets[n].cov) for n in self.layers}

    def set_target(self, targets: dict[str, Gaussian]) -> None:
        for n in self.layers:
            _assign(self.targets[n], targets[n].cov, n)

    def _layer_loss(self, n, f, w):
        return covariance_loss(mean_covariance(f, w)[1], self.targets[n])


class WassersteinTerm(_LayerTerm):
    """weight * sum_l w_l u_l W2^2((mu, S), (mu_s, S_s)) / C between the Gaussians of image and style features,
    u_l = gram_units of the style's second moment (:class:`_LayerTerm`).

    The (C, C) arithmetic runs in float64 (the W2 sum cancels: float32 would leave ~1e-5 x tr S_s / C of
    rounding). ``root``: how tr (S_s^1/2 S S_s^1/2)^1/2 is taken, ``eigh`` (default: exact, and on CPU several
    times faster than 25 Newton-Schulz steps at C = 512, experiments/bench_style_forms.py) or ``newton_schulz`` (``iterations`` matmul steps, as
    GPU implementations do); ``ridge`` see :func:`nst.style_stats.trace_sqrt`. A layer with fewer positions
    than channels is rooted on its M x M side (:func:`nst.style_stats.wasserstein_loss_positions`).
    """

    def __init__(self, layer_weights: dict[str, float], targets: dict[str, Gaussian], weight: float = 1.0,
                 masks: Masks | None = None, root: str = "eigh", iterations: int = NEWTON_SCHULZ_ITERATIONS,
                 ridge: float | None = None):
        super().__init__(layer_weights, weight, masks)
        if root not in RIDGE:
            raise ValueError(f"unknown root {root!r}: use one of {sorted(RIDGE)}")
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations <= 0:
            raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
        self.root, self.iterations, self.ridge = root, iterations, ridge
        self.targets = {n: {k: _variable(getattr(targets[n], k), tf.float64) for k in ("mean", "cov", "cov_sqrt")}
                        for n in self.layers}
        self._set_units(_gaussian_moments(targets, self.layers))

    def set_target(self, targets: dict[str, Gaussian]) -> None:
        for n in self.layers:
            for k, var in self.targets[n].items():
                _assign(var, getattr(targets[n], k), f"{n}.{k}")
        self._set_units(_gaussian_moments(targets, self.layers))

    def _layer_loss(self, n, f, w):
        t = self.targets[n]
        if f.shape[0] is not None and f.shape[0] < f.shape[1]:  # fewer positions than channels: root M x M
            f64 = tf.cast(f, tf.float64)
            return tf.cast(wasserstein_loss_positions(f64, None if w is None else tf.cast(w, tf.float64), t["mean"],
                                                      t["cov"], self.root, self.ridge, self.iterations), tf.float32)
        mu, cov = mean_covariance(f, w)  # float32: the (M, C) work
        loss = wasserstein_loss(tf.cast(mu, tf.float64), tf.cast(cov, tf.float64), t["mean"], t["cov"],
                                t["cov_sqrt"], self.root, self.ridge, self.iterations)
        return tf.cast(loss, tf.float32)


def _gaussian_moments(targets: dict[str, Gaussian], layers: list[str]) -> dict[str, np.ndarray]:
    """The second moment S + mu mu^T of each layer's style Gaussian: the Gram target of the same features."""
    return {n: np.asarray(targets[n].cov, np.float64) + np.outer(targets[n].mean, targets[n].mean) for n in layers}


def _sample_moments(targets: dict[str, Samples], layers: list[str]) -> dict[str, np.ndarray]:
    return {n: second_moment(targets[n].values, targets[n].weights) for n in layers}


def _table(samples: Samples, directions: np.ndarray | None = None) -> tf.Tensor:
    """(L, K) quantiles of the style samples, projected on ``directions`` (C, K) or per channel (None)."""
    values = tf.constant(samples.values, tf.float32)
    if directions is not None:
        values = tf.matmul(values, tf.constant(directions, tf.float32))
    weights = None if samples.weights is None else tf.constant(samples.weights, tf.float32)
    return quantile_table(values, weights, samples.levels)


class SlicedWassersteinTerm(_LayerTerm):
    """weight * sum_l w_l u_l mean over K random unit directions of the 1-D W2^2 of the projected features.

    Directions are drawn from (``seed``, draw index, layer) and held in tf.Variables with the style's sorted
    projections, so the function L-BFGS sees is fixed until :meth:`redraw` (or :meth:`on_round`, which the
    objective calls before each optimiser round: round r uses draw r, the first round draw 0).
    ``projections``: K per layer (None: as many as the layer has channels, as Heitz et al. do).
    """

    def __init__(self, layer_weights: dict[str, float], targets: dict[str, Samples], weight: float = 1.0,
                 projections: int | None = None, seed: int = 0, masks: Masks | None = None):
        super().__init__(layer_weights, weight, masks)
        if projections is not None and (isinstance(projections, bool) or not isinstance(projections, int)
                                        or projections <= 0):
            raise ValueError(f"projections must be a positive integer (directions per layer), got {projections!r}")
        self.projections, self.seed, self.draw, self._rounds = projections, int(seed), 0, 0
        self.samples = {n: targets[n] for n in self.layers}
        self.directions, self.tables = {}, {}
        for i, n in enumerate(self.layers):
            d = self._directions(i, n, 0)
            self.directions[n] = _variable(d)
            self.tables[n] = _variable(_table(self.samples[n], d))
        self._set_units(_sample_moments(self.samples, self.layers))

    def _directions(self, index: int, n: str, draw: int) -> np.ndarray:
        c = self.samples[n].values.shape[1]
        return random_directions(c, self.projections or c, self.seed, draw, index)

    def redraw(self, draw: int | None = None) -> None:
        """New directions (draw ``draw``, default the next) and the style's projections on them."""
        self.draw = self.draw + 1 if draw is None else int(draw)
        for i, n in enumerate(self.layers):
            d = self._directions(i, n, self.draw)
            self.directions[n].assign(tf.constant(d, tf.float32))
            self.tables[n].assign(_table(self.samples[n], d))

    def on_round(self, image: np.ndarray) -> None:
        """Before optimiser round r (0, 1, ...): directions of draw r (round 0 keeps the constructor's)."""
        if self._rounds > 0:
            self.redraw(self._rounds)
        self._rounds += 1

    def set_target(self, targets: dict[str, Samples]) -> None:
        for n in self.layers:
            self.samples[n] = targets[n]
            _assign(self.tables[n], _table(targets[n], self.directions[n].numpy()), n)
        self._set_units(_sample_moments(self.samples, self.layers))

    def _layer_loss(self, n, f, w):
        return sliced_wasserstein_loss(f, self.directions[n], self.tables[n], w)


class HistogramTerm(_LayerTerm):
    """weight * sum_l w_l u_l ||F - stop_gradient(remap(F))||^2 / (M C), remap: each channel onto the style's
    per-channel histogram, rank for rank (Risser et al. 2017; exact quantiles rather than binned histograms).
    Risser et al. use it beside the Gram term, which keeps the channels' correlations it ignores."""

    def __init__(self, layer_weights: dict[str, float], targets: dict[str, Samples], weight: float = 1.0,
                 masks: Masks | None = None):
        super().__init__(layer_weights, weight, masks)
        self.targets = {n: _variable(_table(targets[n])) for n in self.layers}  # (L, C) per-channel quantiles
        self._set_units(_sample_moments(targets, self.layers))

    def set_target(self, targets: dict[str, Samples]) -> None:
        for n in self.layers:
            _assign(self.targets[n], _table(targets[n]), n)
        self._set_units(_sample_moments(targets, self.layers))

    def _layer_loss(self, n, f, w):
        return histogram_loss(f, self.targets[n], w)


class MRFTerm:
    """weight * sum_l w_l u_l mean over the image's size x size patches of ||patch - nearest style patch||^2,
    u_l = gram_units(A) / (size^2 C), A the second moment of the candidate patches' feature vectors (a
    patch's squared norm sums size^2 positions of C channels: :mod:`nst.style_stats`).

    Li & Wand 2016 for plain style transfer: nearest by normalised cross-correlation, matched by
    :meth:`on_round` (the objective calls it before each optimiser round; call it once before evaluating
    outside an optimiser), held in tf.Variables so the function L-BFGS sees is fixed within a round.
    No masks: regions for patches are the doodle's semantic maps (:class:`doodle.terms.PatchTerm`).
    """

    def __init__(self, extractor: FeatureExtractor, layer_weights: dict[str, float], targets: dict[str, tf.Tensor],
                 weight: float = 1.0, size: int = 3):
        self.extractor, self.size, self.weight = extractor, size, weight
        self.layer_weights = dict(layer_weights)
        self.layers = list(layer_weights)
        self.style_patches = {n: tf.cast(targets[n], tf.float32) for n in self.layers}
        self.units = {n: _variable(self._units(n)) for n in self.layers}
        self.matched = {n: tf.Variable(tf.zeros((0, p.shape[1])), shape=tf.TensorShape([None, p.shape[1]]),
                                       trainable=False) for n, p in self.style_patches.items()}
        self._ready = False

    def set_target(self, targets: dict[str, tf.Tensor]) -> None:
        """New candidate patches; they take effect at the next :meth:`on_round` (their units at once)."""
        self.style_patches = {n: tf.cast(targets[n], tf.float32) for n in self.layers}
        for n in self.layers:
            self.units[n].assign(self._units(n))

    def _units(self, n: str) -> float:
        p = self.style_patches[n]
        c = p.shape[1] // (self.size * self.size)
        vectors = p.numpy().reshape(-1, c)  # every position of every candidate patch, (N s^2, C)
        return gram_units(second_moment(vectors)) / (self.size * self.size * c)

    def on_round(self, image: np.ndarray) -> None:
        """Before each optimiser round: :meth:`fit` the current image."""
        self.fit(image)

    def fit(self, image: np.ndarray) -> None:
        """Match every patch of ``image`` (H, W, 3) to its nearest style patch (also what a scorer calls)."""
        feats = self.extractor(np.asarray(image, np.float32)[None])
        for n in self.layers:
            index = best_matches(feats[n], self.style_patches[n], self.size)
            self.matched[n].assign(tf.gather(self.style_patches[n], index))
        self._ready = True

    def __call__(self, feats: dict[str, tf.Tensor], image: tf.Tensor) -> tf.Tensor:
        if not self._ready:
            raise RuntimeError("MRFTerm: call on_round(image) to match patches before evaluating")
        total = tf.constant(0.0)
        for n, w in self.layer_weights.items():
            loss = mrf_loss(feats[n], self.matched[n], self.size)
            total += w * tf.cast(self.units[n], loss.dtype) * loss
        return self.weight * total
