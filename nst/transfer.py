"""Style transfer on the engine: images and a config in, an image out; progress through a Control.

Gatys, Ecker & Bethge 2015: the objective is alpha * content (eq. 2.2) + beta * style (eq. 2.5) +
tv_weight * TV, built from :mod:`nst.terms` with the run's :class:`nst.recipe.TransferRecipe` for each
scale of the config's plan (``scales``: coarse to fine, targets recomputed per scale; one scale = the
paper; a scale over ``tiles.max_pixels`` runs in tiles). :class:`TransferTask` is what the engine asks
for at each scale; :class:`TransferImages` scales the content and style images, in one place. No file is
read or written here (an ``init.method: file`` image is handed in already loaded), so the CLI, notebooks,
figure scripts, the grader, the video and the studio all call the same :func:`stylize`.

Gatys et al. 2017's controls (docs/CONTROLS.md): a :class:`StyleSet` with masks paints each style on its own
region (:mod:`nst.spatial`); a scale of the plan may bring its own StyleSet (scale control); and
``color.preserve: luminance_only`` optimises on luminance images and puts the content's colours back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from nst.config import TilesConfig
from nst.colors import luminance_image, luminance_transfer, match_color_histogram, match_luminance
from nst.errors import UserError
from nst.engine import Extractors, Numerics, Result, run_plan
from nst.events import Control
from nst.features import FeatureExtractor
from nst.images import resize
from nst.masks import resize_masks
from nst.objective import Objective
from nst.plan import Scale, make_plan
from nst.recipe import TransferRecipe
from nst.region_masks import StyleSet
from nst.spatial import spatial_targets, spatial_terms
from nst.style_forms import TILEABLE, style_targets, style_terms
from nst.terms import ContentTerm, TVTerm, content_targets
from nst.tiled_targets import tiled_grams
from nst.tiles import crop
from nst.weights import Weights

# The ImageNet mean in RGB: the centre of the original's "noise" initialisation.
RGB_MEAN = np.array([123.68, 116.779, 103.939], dtype=np.float32)

Styles = list[tuple[np.ndarray, float]]  # [(image (H, W, 3) float32 0..255, blend weight)]


@dataclass(frozen=True)
class Targets:
    content: dict[str, tf.Tensor]  # layer -> (1, h, w, C) features of the content photo
    style: dict[str, object]  # style term name -> its targets (gram: layer -> (C, C) blended Gram / M)


def make_extractors(recipe: TransferRecipe, weights: Weights) -> Extractors:
    return Extractors(weights, recipe.network, recipe.pooling, recipe.layers)


def compute_targets(extractor: FeatureExtractor, content: np.ndarray, styles: Styles,
                    recipe: TransferRecipe, spatial: bool = False) -> Targets:
    """Content features and style targets; ``spatial``: each style's own (unblended), for its region."""
    style = spatial_targets(extractor, styles, recipe) if spatial else style_targets(extractor, styles, recipe)
    return Targets(content_targets(extractor, content, list(recipe.content_layers)), style)


def make_objective(extractor: FeatureExtractor, targets: Targets, recipe: TransferRecipe,
                   regions: StyleSet | None = None) -> Objective:
    """alpha * sum_l w_l L_content + beta * L_style (eq. 2.7) + tv_weight * TV, as named terms (the style
    term(s) of the recipe's ``style_form``: the paper's Gram term by default; with ``regions``' masks, each
    style on its region, :mod:`nst.spatial`)."""
    r = recipe
    if regions is not None and regions.masks is not None:
        style = spatial_terms(targets.style, r, regions.masks, [w for _, w in regions.styles], extractor.network)
    else:
        style = style_terms(extractor, targets.style, r)
    return Objective(extractor, {
        "content": ContentTerm(r.content_layers, targets.content, r.content_weight, r.content_form),
        **style,
        "tv": TVTerm(r.tv_weight),
    })


def initial_image(cfg, content: np.ndarray, init_file: np.ndarray | None = None) -> np.ndarray:
    """The starting image, reproducible from ``cfg.seed``."""
    rng = np.random.default_rng(cfg.seed)
    method = cfg.init.method
    if method == "content":
        return content.copy()
    if method == "random":  # white noise, as in the paper's figures
        return rng.uniform(0, 255, content.shape).astype(np.float32)
    if method == "file":
        return init_file.astype(np.float32)
    noise = RGB_MEAN + rng.uniform(-20, 20, content.shape).astype(np.float32)  # the original's noise image
    r = cfg.init.noise_ratio
    return np.clip(r * noise + (1 - r) * content, 0, 255).astype(np.float32)


def prepare_styles(cfg, content: np.ndarray, styles: Styles) -> Styles:
    if cfg.color.preserve == "histogram":
        return [(match_color_histogram(img, content), w) for img, w in styles]
    return styles


def scale_plan(cfg, hw: tuple[int, int]) -> list[Scale]:
    """The config's ``scales`` (fractions of the output size, coarse to fine) as sizes; one scale if none.
    Scales over ``tiles.max_pixels`` are tiled."""
    if not cfg.scales:
        sizes = [(tuple(hw), cfg.optimizer.iterations)]
    else:
        sizes = [((max(1, round(hw[0] * s.size)), max(1, round(hw[1] * s.size))), s.iterations)
                 for s in cfg.scales]
    plan = make_plan(sizes, cfg.tiles)
    tiled = [s for s in plan if s.tiled]
    masked = any(e.mask is not None for e in [*cfg.style, *(e for s in cfg.scales for e in s.style)])
    if tiled and masked:
        raise UserError(f"spatial control (a style mask) cannot run in tiles yet (scale {tiled[0].hw[1]}x"
                        f"{tiled[0].hw[0]} px is over tiles.max_pixels {cfg.tiles.max_pixels:,}): use a smaller "
                        f"image.size, or raise tiles.max_pixels")
    if tiled and cfg.loss.style_form not in TILEABLE:
        raise UserError(f"loss.style_form '{cfg.loss.style_form}' cannot run in tiles (scale {tiled[0].hw[1]}x"
                        f"{tiled[0].hw[0]} px is over tiles.max_pixels {cfg.tiles.max_pixels:,}): its style targets "
                        f"are not sums over tiles; use {' or '.join(TILEABLE)} for prints, or a smaller image.size")
    return plan


class TransferImages:
    """The content photo and style images of a run, and the one place they are scaled to a scale's size:
    the content to (h, w), each style by the same factor as the content's long side."""

    def __init__(self, content: np.ndarray, styles: Styles, masks: np.ndarray | None = None,
                 scale_sets: list[StyleSet | None] | None = None):
        self.content, self.styles, self.masks = content, styles, masks
        self.scale_sets = list(scale_sets or [])  # per scale of the plan: its own StyleSet, or None (the run's)
        self._at: dict[tuple[int, int], tuple[np.ndarray, Styles]] = {}

    @property
    def controlled(self) -> bool:
        """Whether any scale has masks or its own styles (precomputed whole-run targets do not apply)."""
        return self.masks is not None or any(s is not None for s in self.scale_sets)

    def style_set(self, index: int, hw: tuple[int, int]) -> StyleSet:
        """Scale ``index``'s styles (its own or the run's) and masks, scaled to ``hw`` like :meth:`at`."""
        own = self.scale_sets[index] if index < len(self.scale_sets) else None
        if own is None and self.masks is None:
            return StyleSet(self.at(hw)[1])  # the run's styles, as without controls
        base = own if own is not None else StyleSet(self.styles, self.masks)
        f = max(hw) / max(self.content.shape[:2])
        masks = None if base.masks is None else resize_masks(base.masks, tuple(hw))
        return StyleSet([(self._scaled(img, f), w) for img, w in base.styles], masks)

    def at(self, hw: tuple[int, int]) -> tuple[np.ndarray, Styles]:
        hw = tuple(hw)
        if hw not in self._at:  # keep one size: a print's content at its size is large
            if hw == self.content.shape[:2]:
                self._at = {hw: (self.content, self.styles)}
            else:
                f = max(hw) / max(self.content.shape[:2])
                self._at = {hw: (resize(self.content, (hw[1], hw[0]), f"content at {hw[1]}x{hw[0]}"),
                                 [(self._scaled(img, f), w) for img, w in self.styles])}
        return self._at[hw]

    @staticmethod
    def _scaled(img: np.ndarray, factor: float) -> np.ndarray:
        if factor == 1.0:
            return img
        h, w = img.shape[:2]
        return resize(img, (max(1, round(w * factor)), max(1, round(h * factor))), "style image (coarse scale)")


class TransferTask:
    """What the engine optimises at each scale of a style transfer (see :class:`nst.engine.Task`).

    ``targets`` (optional, float32) are used as given at the content's own size instead of computed, so a
    caller stylising many images of one shape with one style computes them once (the video)."""

    def __init__(self, images: TransferImages, recipe: TransferRecipe, targets: Targets | None = None):
        self.images, self.recipe, self.targets = images, recipe, targets

    def cost_key(self) -> str:
        """The probe's cache key beyond size and network: the style form (gram: none, its entries unchanged)."""
        return "" if self.recipe.style_form == "gram" else f"style_form={self.recipe.style_form}"

    def whole(self, index: int, hw: tuple[int, int], extractor: FeatureExtractor) -> Objective:
        if self.targets is not None and tuple(hw) == self.images.content.shape[:2] and not self.images.controlled:
            return make_objective(extractor, self.targets, self.recipe)
        content, _ = self.images.at(hw)
        regions = self.images.style_set(index, hw)
        spatial = regions.masks is not None
        targets = compute_targets(extractor, content, regions.styles, self.recipe, spatial)
        return make_objective(extractor, targets, self.recipe, regions if spatial else None)

    def tile_targets(self, index: int, hw: tuple[int, int], tiles: TilesConfig,
                     extractor: FeatureExtractor) -> dict[str, tf.Tensor]:
        styles = self.images.style_set(index, hw).styles  # masks are refused in tiles (scale_plan)
        return tiled_grams(extractor, styles, list(self.recipe.style_layers), tiles.size, tiles.overlap)

    def _content_targets(self, extractor: FeatureExtractor, hw, box, shape) -> dict[str, tf.Tensor]:
        content, _ = self.images.at(hw)
        return content_targets(extractor, np.ascontiguousarray(crop(content, box, shape)),
                               list(self.recipe.content_layers))

    def tile_objective(self, extractor, shared, hw, box, shape) -> Objective:
        targets = Targets(self._content_targets(extractor, hw, box, shape), {"style": shared})
        return make_objective(extractor, targets, self.recipe)

    def retarget(self, objective: Objective, hw, box, shape) -> None:
        objective.terms["content"].set_target(self._content_targets(objective.extractor, hw, box, shape))


def check_controls_given(cfg, masks: np.ndarray | None, scale_styles: list[StyleSet | None] | None) -> None:
    """A config asking for masks or per-scale styles that the caller did not load (nst.inputs.load_controls)."""
    if masks is None and any(s.mask is not None for s in cfg.style):
        raise UserError("config key 'style[].mask' (spatial control) is not supported by this command: its masks "
                        "were not loaded")
    if any(s.style for s in cfg.scales) and not any(s is not None for s in scale_styles or []):
        raise UserError("config key 'scales[].style' (scale control) is not supported by this command: the "
                        "scales' styles were not loaded")


def luminance_only(content: np.ndarray, styles: Styles) -> tuple[np.ndarray, Styles]:
    """Gatys et al. 2017's luminance-only transfer: the content's luminance, and each style's luminance with its
    mean and spread matched to the content's, each as a grey RGB image for the network."""
    return luminance_image(content), [(luminance_image(match_luminance(img, content)), w) for img, w in styles]


def stylize(content: np.ndarray, styles: Styles, cfg, *, extractors: Extractors, control: Control | None = None,
            init_file: np.ndarray | None = None, log=None, numerics: Numerics | None = None,
            targets: Targets | None = None, tile_runner=None, masks: np.ndarray | None = None,
            scale_styles: list[StyleSet | None] | None = None) -> Result:
    """Paint ``content`` (H, W, 3, 0..255) in the blended style of ``styles`` [(image, weight)].

    ``numerics`` says how the numeric path is chosen (default: the config's ``precision`` and
    ``optimizer.xla``, nothing cached); ``targets``: see :class:`TransferTask`; ``tile_runner``: how tiled
    scales' passes run (:func:`nst.engine.run_plan`; default here, one tile after another). Returns the engine's
    :class:`nst.engine.Result` (final image, stop reason, iterations, precision record). Controls
    (:func:`nst.inputs.load_controls`): ``masks`` (H, W, K), one region per style (spatial control);
    ``scale_styles``, per scale of ``cfg.scales``, that scale's own :class:`StyleSet` or None (scale control).
    """
    recipe = TransferRecipe.of(cfg, extractors.network)
    check_controls_given(cfg, masks, scale_styles)
    styles = prepare_styles(cfg, content, styles)
    sets = [None if s is None else StyleSet(prepare_styles(cfg, content, s.styles), s.masks)
            for s in scale_styles or []]
    painted = content  # what the network sees of the content: the photo, or its luminance
    if cfg.color.preserve == "luminance_only":
        painted, styles = luminance_only(content, styles)
        sets = [None if s is None else StyleSet(luminance_only(content, s.styles)[1], s.masks) for s in sets]
        init_file = None if init_file is None else luminance_image(init_file)
    plan = scale_plan(cfg, content.shape[:2])
    images = TransferImages(painted, styles, masks, sets)
    task = TransferTask(images, recipe, targets)
    first = plan[0].hw
    c0 = painted if tuple(first) == painted.shape[:2] else resize(painted, (first[1], first[0]), "content")
    init = None if init_file is None else (init_file if init_file.shape[:2] == c0.shape[:2]
                                           else resize(init_file, (first[1], first[0]), "init image"))
    numerics = numerics or Numerics(cfg.precision, cfg.optimizer.xla)
    result = run_plan(plan, task, extractors=extractors, x0=initial_image(cfg, c0, init), opt=cfg.optimizer,
                      control=control or Control(), numerics=numerics, log=log, tile_runner=tile_runner)
    if cfg.color.preserve in ("luminance", "luminance_only"):  # the result's luminance, the content's colours
        result.image = luminance_transfer(result.image, content)
    return result
