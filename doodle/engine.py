"""The doodle engine: a style image, label masks and a config in, an image out; progress through a callback.

Champandard 2016 (arXiv:1603.01768), "Semantic Style Transfer and Turning Two-Bit Doodles into Fine
Artworks", and the Keras 2 ``neural_doodle`` example. Two ways to make the style follow the map:

* ``gram`` (the example's): per label, Gram matrices of the masked style and output features
  (:func:`doodle.losses.masked_gram_loss`), masks carried through the network by :mod:`doodle.masks`.
* ``patch`` (Champandard's): 3x3 patches of conv3_1 / conv4_1 features, each output patch matched to the
  style patch with the best normalised cross-correlation of features and of map, MRF loss to the matches
  (Li & Wand 2016). Matches are refreshed at the start of every optimiser round (``optimizer.rounds``),
  so the objective is fixed within a round, as L-BFGS needs. By default the regional Gram loss on
  conv1_1 / conv2_1 is added (``doodle.patch_gram_layers``, our addition): the MRF layers alone leave the
  regions' colours and fine grain loose at these sizes.

Coarse to fine (``doodle.phases``): phase i works at 1/2^(phases-1-i) of the output size (style image
and masks scaled alike), starts from the previous phase's result upsampled, and gets
``phase_iteration_ratio`` times the iterations of the next finer phase; ``optimizer.iterations`` is the
total and each phase runs ``optimizer.rounds`` rounds. Style targets are computed once per phase.
With no maps every mask is one label covering everything: plain texture synthesis / style transfer.
Nothing here reads or writes files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import tensorflow as tf

from doodle.config import DoodleConfig
from doodle.losses import (
    best_matches,
    extract_patches,
    label_weights,
    masked_gram_loss,
    masked_gram_losses,
    masked_grams,
    mrf_loss,
    total_variation_original,
)
from doodle.masks import layer_masks, resize_masks, semantic_channels
from nst.errors import UserError
from nst.events import Callback, Progress
from nst.features import FeatureExtractor, all_layers, canonical_layer
from nst.images import MIN_SIDE, resize
from nst.losses import content_loss, total_variation
from nst.optimize import optimize
from nst.transfer import RGB_MEAN
from nst.transfer import initial_image as nst_initial_image
from nst.weights import Weights

Log = Callable[[str], None]


@dataclass(frozen=True)
class Scene:
    """What a doodle paints from, all in memory: images float32 RGB 0..255, masks float32 summing to 1."""

    style: np.ndarray  # (Hs, Ws, 3) the style painting at its working size
    style_masks: np.ndarray  # (Hs, Ws, K) its label masks; K = 1 (all ones) without maps
    target_masks: np.ndarray  # (H, W, K) the output's layout: the doodle, or the content photo's map
    content: np.ndarray | None = None  # (H, W, 3) optional photo to repaint

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.target_masks.shape[:2])

    @classmethod
    def without_maps(cls, style: np.ndarray, size_hw: tuple[int, int], content: np.ndarray | None = None) -> Scene:
        """Texture synthesis (no content) or plain style transfer: one label covering both images."""
        return cls(style, np.ones((*style.shape[:2], 1), np.float32), np.ones((*size_hw, 1), np.float32), content)

    def scaled(self, hw: tuple[int, int]) -> Scene:
        """The scene for an output of ``hw`` = (h, w): style and masks scaled by the same factor."""
        if hw == self.size:
            return self
        f = max(hw) / max(self.size)
        shw = (max(1, round(self.style.shape[0] * f)), max(1, round(self.style.shape[1] * f)))
        style = resize(self.style, (shw[1], shw[0]), "style image (coarse phase)")
        content = None if self.content is None else resize(self.content, (hw[1], hw[0]), "content (coarse phase)")
        return Scene(style, resize_masks(self.style_masks, shw), resize_masks(self.target_masks, hw), content)


# ---------------------------------------------------------------- layers and phases


def _pools_before(layer: str, network: str) -> int:
    order = all_layers(network)
    return sum(1 for n in order[: order.index(layer)] if n.endswith("pool"))


def style_layers(cfg: DoodleConfig, network: str) -> dict[str, float]:
    """The method's style layers by canonical name with their weights."""
    named = cfg.doodle.patch_layers if cfg.doodle.method == "patch" else cfg.layers.style
    return {canonical_layer(k, network): v for k, v in named.items()}


def feature_layers(cfg: DoodleConfig, network: str) -> list[str]:
    """Every style-side layer the method reads (the patch method's colour Grams included)."""
    extra = cfg.doodle.patch_gram_layers if cfg.doodle.method == "patch" else {}
    return [*style_layers(cfg, network), *(canonical_layer(k, network) for k in extra)]


def content_layers(cfg: DoodleConfig, network: str, has_content: bool) -> dict[str, float]:
    if not has_content or cfg.loss.content_weight == 0:
        return {}
    return {canonical_layer(k, network): v for k, v in cfg.layers.content.items()}


def needed_layers(cfg: DoodleConfig, network: str, has_content: bool) -> list[str]:
    """Every layer the run reads, canonical names; a UserError for an unknown name."""
    return list(dict.fromkeys([*feature_layers(cfg, network), *content_layers(cfg, network, has_content)]))


def make_extractor(cfg: DoodleConfig, weights: Weights, network: str, has_content: bool) -> FeatureExtractor:
    layers = needed_layers(cfg, network, has_content)
    return FeatureExtractor(weights, network, cfg.model.pooling, layers, cfg.precision)


def min_side(cfg: DoodleConfig, network: str) -> int:
    """The smallest image side a phase can have: 16 px, and patch_size positions at the deepest patch layer."""
    if cfg.doodle.method != "patch":
        return MIN_SIDE
    deepest = max(_pools_before(n, network) for n in style_layers(cfg, network))
    return max(MIN_SIDE, cfg.doodle.patch_size * 2 ** deepest)


def phase_plan(cfg: DoodleConfig, size_hw: tuple[int, int], network: str) -> list[tuple[tuple[int, int], int]]:
    """[((h, w), iterations)] coarse to fine; a UserError when the coarsest phase is too small."""
    d, total = cfg.doodle, cfg.optimizer.iterations
    shares = np.array([d.phase_iteration_ratio ** (d.phases - 1 - i) for i in range(d.phases)])
    raw = total * shares / shares.sum()
    iters = np.maximum(1, np.floor(raw)).astype(int)
    for i in np.argsort(-(raw - np.floor(raw))):  # hand out the remainder, largest fraction first
        if iters.sum() >= total:
            break
        iters[i] += 1
    while iters.sum() > total:  # the max(1, .) floor overshot: take back from the largest
        iters[np.argmax(iters)] -= 1
    plan, need = [], min_side(cfg, network)
    if min(size_hw) < need:  # even one phase cannot fit: the patch is what is too large, not the phase count
        raise UserError(f"doodle.patch_size {d.patch_size} is too large for a {size_hw[1]}x{size_hw[0]} px output: "
                        f"its patches need {need} px on each side; use a smaller patch_size or a larger image.size")
    for i, n in enumerate(iters):
        f = 2.0 ** (d.phases - 1 - i)
        hw = (max(1, round(size_hw[0] / f)), max(1, round(size_hw[1] / f)))
        if min(hw) < need:
            raise UserError(f"doodle.phases {d.phases} is too many for a {size_hw[1]}x{size_hw[0]} px output: "
                            f"phase {i + 1} would be {hw[1]}x{hw[0]} px, under the {need} px the network needs; "
                            f"use fewer phases or a larger image.size")
        plan.append((hw, int(n)))
    return plan


# ---------------------------------------------------------------- style terms


class GramStyle:
    """Regional Gram loss: per label, the output's masked Grams against the style's (the original method)."""

    on_round = None

    def __init__(self, extractor: FeatureExtractor, scene: Scene, cfg: DoodleConfig,
                 layers: dict[str, float] | None = None, style_feats: dict[str, tf.Tensor] | None = None):
        net, d = extractor.network, cfg.doodle
        self.layers = style_layers(cfg, net) if layers is None else {canonical_layer(k, net): v
                                                                      for k, v in layers.items()}
        self.form = d.gram_form
        feats = style_feats if style_feats is not None else extractor(scene.style[None])
        s_masks = layer_masks(scene.style_masks, net, list(self.layers), d.mask_smoothing)
        self.masks = layer_masks(scene.target_masks, net, list(self.layers), d.mask_smoothing)
        self.targets = {n: masked_grams(feats[n], s_masks[n], self.form) for n in self.layers}  # (K, C, C)
        self.weights = {n: label_weights(s_masks[n], self.masks[n]) for n in self.layers}  # (K,)

    def __call__(self, feats: dict[str, tf.Tensor]) -> tf.Tensor:
        total = tf.constant(0.0)
        for n, w in self.layers.items():
            total += w * masked_gram_loss(feats[n], self.masks[n], self.targets[n], self.weights[n], self.form)
        return total

    def per_label(self, feats: dict[str, tf.Tensor]) -> tf.Tensor:
        """(K,) each label's regional style loss, summed over layers with their weights."""
        return tf.add_n([w * self.weights[n] * masked_gram_losses(feats[n], self.masks[n], self.targets[n], self.form)
                         for n, w in self.layers.items()])


# Style patches within this many positions of the feature map's edge are no candidates: their features carry
# the convolutions' zero padding (and any frame of the scan), which border patches of the output would copy.
STYLE_MARGIN = 1


class PatchStyle:
    """Semantic patch matching + MRF loss (Champandard 2016); matches refreshed by :meth:`on_round`.

    With ``doodle.patch_gram_layers``, the regional Gram loss on those layers is added (a colour anchor).
    """

    def __init__(self, extractor: FeatureExtractor, scene: Scene, cfg: DoodleConfig):
        net, d = extractor.network, cfg.doodle
        self.extractor, self.size = extractor, d.patch_size
        self.layers = style_layers(cfg, net)
        feats = extractor(scene.style[None])
        self.gram = GramStyle(extractor, scene, cfg, d.patch_gram_layers, feats) if d.patch_gram_layers else None
        self.semantic_weight = d.semantic_weight
        self.target_map, self.style_map, self.style_feat, self.matched = {}, {}, {}, {}
        for n in self.layers:
            f = feats[n]  # (1, hs, ws, C)
            style_map = semantic_channels(scene.style_masks, net, n)[None]  # (1, hs, ws, K)
            m = STYLE_MARGIN if min(f.shape[1:3]) >= self.size + 2 * STYLE_MARGIN else 0
            inner = (slice(None), slice(m, f.shape[1] - m), slice(m, f.shape[2] - m))
            self.style_map[n] = extract_patches(style_map[inner], self.size, d.patch_stride)  # (N, s*s*K)
            self.style_feat[n] = extract_patches(f[inner], self.size, d.patch_stride)  # (N, s*s*C)
            if self.style_feat[n].shape[0] == 0:
                raise UserError(f"the style image ({scene.style.shape[1]}x{scene.style.shape[0]} px in this phase) "
                                f"is too small for {self.size}x{self.size} patches at {n}; raise image.style_scale")
            self.target_map[n] = semantic_channels(scene.target_masks, net, n)[None]  # (1, h, w, K)
            h, w = self.target_map[n].shape[1:3]
            positions = (h - self.size + 1) * (w - self.size + 1)
            self.matched[n] = tf.Variable(tf.zeros((positions, self.style_feat[n].shape[1])), trainable=False)

    def on_round(self, image: np.ndarray) -> None:
        """Match every output patch to its nearest style patch, for the current ``image`` (H, W, 3)."""
        feats = self.extractor(image[None])
        for n in self.layers:
            index = best_matches(feats[n], self.style_feat[n], self.size, target_map=self.target_map[n],
                                 style_map_patches=self.style_map[n], semantic_weight=self.semantic_weight)
            self.matched[n].assign(tf.gather(self.style_feat[n], index))

    def __call__(self, feats: dict[str, tf.Tensor]) -> tf.Tensor:
        total = tf.constant(0.0)
        for n, w in self.layers.items():
            total += w * mrf_loss(feats[n], self.matched[n], self.size)
        return total if self.gram is None else total + self.gram(feats)


STYLE_TERMS = {"gram": GramStyle, "patch": PatchStyle}
TV_FORMS = {"squared": total_variation, "original": total_variation_original}


def make_objective(extractor: FeatureExtractor, scene: Scene, cfg: DoodleConfig, style_term):
    """image -> {"content", "style", "tv"}: weighted content (if a photo is given), style and TV terms."""
    content_w = content_layers(cfg, extractor.network, scene.content is not None)
    targets = extractor(scene.content[None]) if content_w else {}
    alpha, beta, tv = cfg.loss.content_weight, cfg.loss.style_weight, cfg.loss.tv_weight
    tv_fn = TV_FORMS[cfg.doodle.tv_form]

    def objective(image: tf.Tensor) -> dict[str, tf.Tensor]:
        feats = extractor(image)
        c = tf.constant(0.0)
        for n, w in content_w.items():
            c += w * content_loss(feats[n], targets[n], cfg.loss.content_form)
        return {"content": alpha * c, "style": beta * style_term(feats), "tv": tv * tv_fn(image)}

    return objective


# ---------------------------------------------------------------- the run


def initial_image(cfg: DoodleConfig, scene: Scene, init_file: np.ndarray | None = None) -> np.ndarray:
    """nst's initialisation at the scene's size; without a content photo, noise centres on the ImageNet mean."""
    h, w = scene.size
    base = scene.content if scene.content is not None else np.broadcast_to(RGB_MEAN, (h, w, 3)).copy()
    if init_file is not None:
        init_file = resize(init_file, (w, h), "init image")
    return nst_initial_image(cfg, base, init_file)


def upsample(image: np.ndarray, hw: tuple[int, int], bounded: bool = True) -> np.ndarray:
    """(h, w, 3) -> (H, W, 3) bicubic, the previous phase's result as the next phase's start."""
    up = tf.image.resize(image[None], hw, method="bicubic")[0].numpy()
    return np.clip(up, 0, 255) if bounded else up


def region_style_losses(extractor: FeatureExtractor, scene: Scene, cfg: DoodleConfig, image: np.ndarray) -> np.ndarray:
    """(K,) per-label regional Gram loss over ``layers.style`` of ``image`` (H, W, 3), whatever the method.

    A yardstick of how well each region took its style; ``extractor`` must provide ``layers.style``.
    """
    term = GramStyle(extractor, scene, cfg, cfg.layers.style)
    return term.per_label(extractor(image[None])).numpy()


def paint(scene: Scene, cfg: DoodleConfig, extractor: FeatureExtractor, callback: Callback,
          init_file: np.ndarray | None = None, log: Log | None = None) -> tuple[np.ndarray, str]:
    """Paint ``scene.target_masks``' layout in the style of ``scene.style``; returns (image, stop reason).

    ``callback`` receives a :class:`nst.events.Progress` per iteration, numbered over all phases
    (coarse phases report their own, smaller images). ``log`` gets one line per phase.
    """
    log = log or (lambda _text: None)
    plan = phase_plan(cfg, scene.size, extractor.network)
    image, done, seconds, stop = None, 0, 0.0, "no iterations"
    for i, (hw, iterations) in enumerate(plan):
        phase = scene.scaled(hw)
        x0 = initial_image(cfg, phase, init_file) if image is None else upsample(image, hw, cfg.optimizer.bounds)
        log(f"phase {i + 1}/{len(plan)}: {hw[1]}x{hw[0]} px, style {phase.style.shape[1]}x{phase.style.shape[0]} px, "
            f"{iterations} iterations")
        style_term = STYLE_TERMS[cfg.doodle.method](extractor, phase, cfg)
        objective = make_objective(extractor, phase, cfg, style_term)
        opt = dataclasses.replace(cfg.optimizer, iterations=iterations, rounds=min(cfg.optimizer.rounds, iterations))
        offset_it, offset_s = done, seconds

        def report(ev: Progress) -> None:
            nonlocal done, seconds
            done, seconds = offset_it + ev.iteration, offset_s + ev.seconds
            callback(dataclasses.replace(ev, iteration=done, seconds=seconds))

        image, stop = optimize(objective, x0, opt, report, on_round=style_term.on_round, precision=cfg.precision)
    return image, stop
