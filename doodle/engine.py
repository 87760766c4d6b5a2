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

import numpy as np
import tensorflow as tf

from doodle.recipe import DoodleRecipe
from doodle.scene import Scene
from doodle.terms import PatchTerm, RegionalGramTerm
from doodle.tiles import TileGramTerm, tiled_masked_grams
from nst.config import TilesConfig
from nst.engine import Extractors, Numerics, Result, run_plan
from nst.errors import UserError
from nst.events import Control
from nst.features import FeatureExtractor
from nst.images import resize
from nst.masks import layer_masks
from nst.objective import Objective
from nst.plan import Scale, make_plan
from nst.terms import ContentTerm, TVTerm, content_targets
from nst.tiles import crop
from nst.transfer import RGB_MEAN
from nst.transfer import initial_image as nst_initial_image
from nst.weights import Weights

__all__ = ["Scene", "DoodleTask", "paint", "phase_plan", "make_objective", "initial_image", "region_style_losses"]


def make_extractors(recipe: DoodleRecipe, weights: Weights) -> Extractors:
    return Extractors(weights, recipe.network, recipe.pooling, recipe.layers)


# ---------------------------------------------------------------- phases


def phase_plan(cfg, size_hw: tuple[int, int], recipe: DoodleRecipe) -> list[Scale]:
    """The engine's plan, coarse to fine: phase i at 1/2^(phases-1-i) of the size; a UserError when too small
    or when a phase would be tiled with a method that cannot be."""
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
    sizes, need = [], recipe.min_side
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
        sizes.append((hw, int(n)))
    plan = make_plan(sizes, cfg.tiles)
    tiled = [s for s in plan if s.tiled]
    if tiled and recipe.method != "gram":
        s = tiled[0].hw
        raise UserError(f"doodle.method '{recipe.method}' cannot run in tiles (phase {s[1]}x{s[0]} px is over "
                        f"tiles.max_pixels {cfg.tiles.max_pixels:,}): use doodle.method gram for prints, or a "
                        f"smaller image.size")
    return plan


# ---------------------------------------------------------------- the objective


def make_objective(extractor: FeatureExtractor, scene: Scene, recipe: DoodleRecipe) -> Objective:
    """Named terms: ``content`` (with a photo), the method's style term(s), ``tv``."""
    r, net = recipe, extractor.network
    style_feats = extractor(scene.style[None])
    terms = {}
    if r.content_layers and scene.content is not None:
        targets = content_targets(extractor, scene.content, list(r.content_layers))
        terms["content"] = ContentTerm(r.content_layers, targets, r.content_weight, r.content_form)
    if r.method == "patch":
        terms["style.mrf"] = PatchTerm(extractor, scene, r.style_layers, style_feats, r.style_weight,
                                       r.patch_size, r.patch_stride, r.semantic_weight)
        if r.gram_layers:
            terms["style.gram"] = RegionalGramTerm(net, scene, r.gram_layers, style_feats, r.style_weight,
                                                   r.gram_form, r.mask_smoothing)
    else:
        terms["style"] = RegionalGramTerm(net, scene, r.style_layers, style_feats, r.style_weight, r.gram_form,
                                          r.mask_smoothing)
    terms["tv"] = TVTerm(r.tv_weight, r.tv)
    return Objective(extractor, terms)


class DoodleTask:
    """What the engine optimises at each phase of a doodle (see :class:`nst.engine.Task`).

    Whole phases: the scene scaled to the phase (:meth:`Scene.scaled`, the one place it is scaled). Tiled
    phases (method gram): per-label style targets of the whole style image once, masks and content per tile.
    """

    def __init__(self, scene: Scene, recipe: DoodleRecipe):
        self.scene, self.recipe = scene, recipe
        self._scaled: dict[tuple[int, int], Scene] = {}

    def scene_at(self, hw: tuple[int, int]) -> Scene:
        hw = tuple(hw)
        if hw not in self._scaled:  # keep one size: a print's scene at its size is large
            self._scaled = {hw: self.scene.scaled(hw)}
        return self._scaled[hw]

    def cost_key(self) -> str:
        """The probe's cache key beyond size and network: the doodle's method (patch matching costs its own)."""
        return f"doodle={self.recipe.method}"

    def whole(self, index: int, hw: tuple[int, int], extractor: FeatureExtractor) -> Objective:
        return make_objective(extractor, self.scene.scaled(tuple(hw)), self.recipe)

    def tile_targets(self, index: int, hw, tiles: TilesConfig, extractor: FeatureExtractor) -> dict:
        s, r = self.scene_at(hw), self.recipe
        layers = list(r.style_layers)
        masks = layer_masks(s.style_masks, extractor.network, layers, r.mask_smoothing)
        grams = tiled_masked_grams(extractor, s.style, masks, layers, r.gram_form, tiles.size, tiles.overlap)
        return {"grams": grams, "style_masks": masks}

    def _content(self, extractor, hw, box, shape) -> dict[str, tf.Tensor] | None:
        s = self.scene_at(hw)
        if not self.recipe.content_layers or s.content is None:
            return None
        return content_targets(extractor, np.ascontiguousarray(crop(s.content, box, shape)),
                               list(self.recipe.content_layers))

    def tile_objective(self, extractor: FeatureExtractor, shared: dict, hw, box, shape) -> Objective:
        r, net, terms = self.recipe, extractor.network, {}
        targets = self._content(extractor, hw, box, shape)
        if targets is not None:
            terms["content"] = ContentTerm(r.content_layers, targets, r.content_weight, r.content_form)
        terms["style"] = TileGramTerm(net, r.style_layers, shared["grams"], shared["style_masks"],
                                      crop(self.scene_at(hw).target_masks, box, shape), r.style_weight, r.gram_form,
                                      r.mask_smoothing)
        terms["tv"] = TVTerm(r.tv_weight, r.tv)
        return Objective(extractor, terms)

    def retarget(self, objective: Objective, hw, box, shape) -> None:
        targets = self._content(objective.extractor, hw, box, shape)
        if targets is not None:
            objective.terms["content"].set_target(targets)
        objective.terms["style"].set_masks(crop(self.scene_at(hw).target_masks, box, shape))


# ---------------------------------------------------------------- the run


def initial_image(cfg, scene: Scene, init_file: np.ndarray | None = None) -> np.ndarray:
    """nst's initialisation at the scene's size; without a content photo, noise centres on the ImageNet mean."""
    h, w = scene.size
    base = scene.content if scene.content is not None else np.broadcast_to(RGB_MEAN, (h, w, 3)).copy()
    if init_file is not None:
        init_file = resize(init_file, (w, h), "init image")
    return nst_initial_image(cfg, base, init_file)


def region_style_losses(extractor: FeatureExtractor, scene: Scene, recipe: DoodleRecipe,
                        image: np.ndarray) -> np.ndarray:
    """(K,) per-label regional Gram loss over ``layers.style`` of ``image`` (H, W, 3), whatever the method.

    A yardstick of how well each region took its style; ``extractor`` must provide ``layers.style``.
    """
    term = RegionalGramTerm(extractor.network, scene, recipe.region_layers, extractor(scene.style[None]), 1.0,
                            recipe.gram_form, recipe.mask_smoothing)
    return term.per_label(extractor(image[None])).numpy()


def paint(scene: Scene, cfg, *, extractors: Extractors, control: Control | None = None,
          init_file: np.ndarray | None = None, log=None, numerics: Numerics | None = None,
          tile_runner=None) -> Result:
    """Paint ``scene.target_masks``' layout in the style of ``scene.style``; returns the engine's Result.

    Progress events are numbered over all phases (coarse phases report their own, smaller images).
    ``tile_runner``: how tiled phases' passes run (:func:`nst.engine.run_plan`; default here, serially).
    """
    recipe = DoodleRecipe.of(cfg, extractors.network, scene.content is not None)
    plan = phase_plan(cfg, scene.size, recipe)
    for i, s in enumerate(plan):
        if log:
            st = scene.scaled(s.hw).style
            log(f"phase {i + 1}/{len(plan)}: {s.hw[1]}x{s.hw[0]} px, style {st.shape[1]}x{st.shape[0]} px, "
                f"{s.iterations} iterations")
    x0 = initial_image(cfg, scene.scaled(plan[0].hw), init_file)
    return run_plan(plan, DoodleTask(scene, recipe), extractors=extractors, x0=x0, opt=cfg.optimizer,
                    control=control or Control(), numerics=numerics or Numerics(cfg.precision, cfg.optimizer.xla),
                    log=log, tile_runner=tile_runner)
