"""The doodle engine: a :class:`Scene` and a config in, an image out; progress through a Control.

Champandard 2016 (arXiv:1603.01768), "Semantic Style Transfer and Turning Two-Bit Doodles into Fine
Artworks", and the Keras 2 ``neural_doodle`` example. The objective is nst's (content, style, tv as named
terms of an :class:`nst.objective.Objective`) with a doodle style term from :mod:`doodle.terms`:

* ``gram`` (the example's): per label, Gram matrices of the masked style and output features -> ``style``.
* ``patch`` (Champandard's): semantic 3x3 patch matching at conv3_1 / conv4_1 with an MRF loss ->
  ``style.mrf``; by default plus the regional Gram loss on conv1_1 / conv2_1 (``doodle.patch_gram_layers``,
  our addition: the MRF layers alone leave the regions' colours loose at these sizes) -> ``style.gram``.
  Matches are refreshed at the start of every optimiser round (``optimizer.rounds`` per phase).

Coarse to fine (``doodle.phases``) is the engine's plan (:func:`nst.engine.run_plan`, shared with style
transfer's ``scales``): phase i works at 1/2^(phases-1-i) of the output size (style image and masks scaled
alike), starts from the previous phase's result upsampled, and gets ``phase_iteration_ratio`` times the
iterations of the next finer phase; ``optimizer.iterations`` is the total. Style targets are computed per
phase. With no maps every mask is one label covering everything: plain texture synthesis / style transfer.
Nothing here reads or writes files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from doodle.config import DoodleConfig
from doodle.losses import total_variation_original
from doodle.scene import Scene
from doodle.terms import PatchTerm, RegionalGramTerm
from nst.engine import Extractors, Result, Scale, as_extractors, upsample
from nst.errors import UserError
from nst.events import Callback, Control, as_control
from nst.features import FeatureExtractor, all_layers, canonical_layer
from nst.images import MIN_SIDE, resize
from nst.losses import total_variation
from nst.objective import Objective
from nst.terms import ContentTerm, TVTerm, content_targets
from nst.tiles import run_tiled_plan
from nst.transfer import RGB_MEAN
from nst.transfer import initial_image as nst_initial_image
from nst.weights import Weights

__all__ = ["Scene", "paint", "phase_plan", "make_objective", "upsample", "initial_image", "region_style_losses"]

Log = Callable[[str], None]


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


def make_extractors(cfg: DoodleConfig, weights: Weights, network: str, has_content: bool) -> Extractors:
    return Extractors(weights, network, cfg.model.pooling, needed_layers(cfg, network, has_content))


def make_extractor(cfg: DoodleConfig, weights: Weights, network: str, has_content: bool,
                   precision: str | None = None) -> FeatureExtractor:
    """One extractor at ``precision`` (default: the config's, float32 for auto)."""
    p = precision or (cfg.precision if cfg.precision != "auto" else "float32")
    return make_extractors(cfg, weights, network, has_content)(p)


def min_side(cfg: DoodleConfig, network: str) -> int:
    """The smallest image side a phase can have: 16 px, and patch_size positions at the deepest patch layer."""
    if cfg.doodle.method != "patch":
        return MIN_SIDE
    deepest = max(_pools_before(n, network) for n in style_layers(cfg, network))
    return max(MIN_SIDE, cfg.doodle.patch_size * 2 ** deepest)


def phase_plan(cfg: DoodleConfig, size_hw: tuple[int, int], network: str) -> list[Scale]:
    """The engine's plan, coarse to fine: phase i at 1/2^(phases-1-i) of the size; a UserError when too small."""
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
        plan.append(Scale(hw, int(n)))
    return plan


# ---------------------------------------------------------------- the objective

TV_FORMS = {"squared": total_variation, "original": total_variation_original}


def make_objective(extractor: FeatureExtractor, scene: Scene, cfg: DoodleConfig) -> Objective:
    """Named terms: ``content`` (with a photo), the method's style term(s), ``tv``."""
    net, d, loss = extractor.network, cfg.doodle, cfg.loss
    style_feats = extractor(scene.style[None])
    terms = {}
    content_w = content_layers(cfg, net, scene.content is not None)
    if content_w:
        targets = content_targets(extractor, scene.content, list(content_w))
        terms["content"] = ContentTerm(content_w, targets, loss.content_weight, loss.content_form)
    if d.method == "patch":
        terms["style.mrf"] = PatchTerm(extractor, scene, style_layers(cfg, net), style_feats, loss.style_weight,
                                       d.patch_size, d.patch_stride, d.semantic_weight)
        if d.patch_gram_layers:
            grams = {canonical_layer(k, net): v for k, v in d.patch_gram_layers.items()}
            terms["style.gram"] = RegionalGramTerm(net, scene, grams, style_feats, loss.style_weight, d.gram_form,
                                                   d.mask_smoothing)
    else:
        terms["style"] = RegionalGramTerm(net, scene, style_layers(cfg, net), style_feats, loss.style_weight,
                                          d.gram_form, d.mask_smoothing)
    terms["tv"] = TVTerm(loss.tv_weight, TV_FORMS[d.tv_form])
    return Objective(extractor, terms)


# ---------------------------------------------------------------- the run


def initial_image(cfg: DoodleConfig, scene: Scene, init_file: np.ndarray | None = None) -> np.ndarray:
    """nst's initialisation at the scene's size; without a content photo, noise centres on the ImageNet mean."""
    h, w = scene.size
    base = scene.content if scene.content is not None else np.broadcast_to(RGB_MEAN, (h, w, 3)).copy()
    if init_file is not None:
        init_file = resize(init_file, (w, h), "init image")
    return nst_initial_image(cfg, base, init_file)


def region_style_losses(extractor: FeatureExtractor, scene: Scene, cfg: DoodleConfig, image: np.ndarray) -> np.ndarray:
    """(K,) per-label regional Gram loss over ``layers.style`` of ``image`` (H, W, 3), whatever the method.

    A yardstick of how well each region took its style; ``extractor`` must provide ``layers.style``.
    """
    net = extractor.network
    layers = {canonical_layer(k, net): v for k, v in cfg.layers.style.items()}
    term = RegionalGramTerm(net, scene, layers, extractor(scene.style[None]), 1.0, cfg.doodle.gram_form,
                            cfg.doodle.mask_smoothing)
    return term.per_label(extractor(image[None])).numpy()


def paint(scene: Scene, cfg: DoodleConfig, extractors: Extractors | FeatureExtractor,
          control: Control | Callback | None = None, init_file: np.ndarray | None = None, log: Log | None = None,
          cache_dir: Path | None = None) -> Result:
    """Paint ``scene.target_masks``' layout in the style of ``scene.style``; returns the engine's Result.

    Progress events are numbered over all phases (coarse phases report their own, smaller images).
    """
    extractors, precision = as_extractors(extractors, cfg.precision)
    plan = phase_plan(cfg, scene.size, extractors().network)
    for i, s in enumerate(plan):
        if log:
            st = scene.scaled(s.hw).style
            log(f"phase {i + 1}/{len(plan)}: {s.hw[1]}x{s.hw[0]} px, style {st.shape[1]}x{st.shape[0]} px, "
                f"{s.iterations} iterations")

    def build(index: int, hw: tuple[int, int], extractor: FeatureExtractor) -> Objective:
        return make_objective(extractor, scene.scaled(hw), cfg)

    from doodle.tiles import DoodleTiles  # phases over tiles.max_pixels in tiles (prints)

    x0 = initial_image(cfg, scene.scaled(plan[0].hw), init_file)
    return run_tiled_plan(plan, build, DoodleTiles(scene, cfg), extractors, x0, cfg.optimizer, cfg.tiles,
                          as_control(control), precision, cfg.optimizer.xla, log, cache_dir)
