"""Doodle run configuration: nst's config sections plus a ``doodle`` section; the ONE source of doodle defaults.

Champandard 2016 (arXiv:1603.01768) and the Keras 2 ``neural_doodle`` example it inspired. The image,
model, layers, loss, init, optimizer and progress sections are nst's dataclasses (model, progress as they
are; the others as subclasses that only change defaults: same keys, same meaning, same checks).
``python -m doodle.run --defaults`` prints every key. Loading, overrides, did-you-mean and path resolution
are nst's (:func:`nst.config.load_config` with this schema, :func:`check_doodle` and :data:`PATH_KEYS`).

Sizes: ``image.size`` is the output's long side (or [width, height]). The output takes the aspect ratio
of the content photo when there is one, else of the target map (the doodle), else of the style image.
Labels are found on the maps as painted; the target map's label masks are then area-resized to the output
size (soft edges), the style map's to the style image's working size, ``image.style_scale`` x the output's
long side. With [width, height], a target map of another aspect ratio is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar, Union

from nst.config import (
    ImageConfig,
    InitConfig,
    LayersConfig,
    LossConfig,
    ModelConfig,
    OptimizerConfig,
    ProgressConfig,
    ResultConfig,
    TilesConfig,
    PRECISIONS,
    check_run,
)
from nst.errors import UserError
from nst.typed_yaml import defaults_yaml as typed_defaults_yaml
from nst.typed_yaml import load, shown

_BLOCK = re.compile(r"(?:conv|block)(\d)")  # conv4_1 / block4_conv1 -> 4

# Style layers of the gram method: conv1_1..conv4_1 (conv5_1 of the offline VGG16 is not pure ImageNet,
# and it costs a fifth block for little in a doodle). conv1_1's eq. 2.4 loss is ~1000x smaller than the
# others', so at weight 1 it would not hold a region's colours; 100 lets it.
DOODLE_STYLE_LAYERS = {"conv1_1": 100.0, "conv2_1": 1.0, "conv3_1": 1.0, "conv4_1": 1.0}


# nst's sections with doodle defaults: subclasses that change defaults only (same keys, same meaning), so a
# ``--set loss.tv_weight=1`` keeps the doodle's other loss defaults instead of falling back to nst's.


@dataclass(frozen=True)
class DoodleImage(ImageConfig):
    size: Union[int, list[int]] = 512  # output long side in px, or [width, height]


@dataclass(frozen=True)
class DoodleLayers(LayersConfig):
    style: dict[str, float] = field(default_factory=lambda: dict(DOODLE_STYLE_LAYERS))  # method gram


@dataclass(frozen=True)
class DoodleLoss(LossConfig):
    style_weight: float = 100.0
    tv_weight: float = 10.0


@dataclass(frozen=True)
class DoodleInit(InitConfig):
    noise_ratio: float = 1.0  # without a content photo the noise centres on the ImageNet mean colour


@dataclass(frozen=True)
class DoodleOptimizer(OptimizerConfig):
    iterations: int = 140  # over all phases
    rounds: int = 2  # per phase; the patch method re-matches at the start of each round


@dataclass(frozen=True)
class LabelsConfig:
    mode: str = "palette"  # palette: the maps' flat colours | kmeans: the original's k-means over map pixels
    count: Union[int, None] = None  # palette: keep the N most frequent colours (null = all); kmeans: required
    min_share: float = 0.002  # a flat colour must cover this fraction of some map to be a label
    close_distance: float = 30.0  # warn when two palette colours are closer than this (RGB, 0..255)

    CHOICES: ClassVar[dict] = {"mode": ("palette", "kmeans")}


@dataclass(frozen=True)
class DoodleSection:
    style_map: Union[str, None] = None  # the style image's map; null = <style>_sem.png beside it; auto = made
    target_map: Union[str, None] = None  # the doodle: the output's layout; null = the content map, if any
    content_map: Union[str, None] = None  # the content photo's map; null = <content>_sem.png beside it; auto = made
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    method: str = "patch"  # patch: semantic patches (Champandard) | gram: per-label Gram matrices (the original code)
    mask_smoothing: bool = False  # Gram masks: also a 3x3 average at each conv, as the original (else pooling only)
    gram_form: str = "area"  # area: G = F^T diag(m) F / sum(m), eq. 2.4 scale | original: the Keras example's
    semantic_weight: float = 1.0  # patch: match score = NCC(features) + semantic_weight * NCC(map patches)
    patch_layers: dict[str, float] = field(default_factory=lambda: {"conv3_1": 1.0, "conv4_1": 1.0})
    # patch: regional Gram loss on these layers too (our addition, a colour anchor; {} = Champandard's pure form)
    patch_gram_layers: dict[str, float] = field(default_factory=lambda: {"conv1_1": 100.0, "conv2_1": 1.0})
    patch_size: int = 3  # patch: side of a feature patch
    patch_stride: int = 2  # patch: every n-th style patch (each way) is a candidate; 2 = 4x faster matching
    phases: int = 3  # coarse-to-fine: phase i works at 1/2^(phases-1-i) of the size; the last at image.size
    phase_iteration_ratio: float = 3.0  # a phase gets this many times the iterations of the next finer phase
    tv_form: str = "squared"  # squared: sum dx^2 + dy^2 | original: sum (dx^2 + dy^2)^1.25 (the Keras example)

    CHOICES: ClassVar[dict] = {"method": ("gram", "patch"), "gram_form": ("area", "original"),
                               "tv_form": ("squared", "original")}


@dataclass(frozen=True)
class DoodleConfig:
    style: str = ""  # the style painting (required)
    content: Union[str, None] = None  # optional photo to repaint (semantic style transfer)
    output_dir: str = "runs/doodle"
    seed: int = 0
    precision: str = "auto"  # auto (probed per machine) | float32 | bfloat16 | float16
    snapshots: list[int] = field(default_factory=list)
    image: DoodleImage = field(default_factory=DoodleImage)
    model: ModelConfig = field(default_factory=ModelConfig)
    layers: DoodleLayers = field(default_factory=DoodleLayers)
    loss: DoodleLoss = field(default_factory=DoodleLoss)
    init: DoodleInit = field(default_factory=DoodleInit)
    optimizer: DoodleOptimizer = field(default_factory=DoodleOptimizer)
    progress: ProgressConfig = field(default_factory=ProgressConfig)
    doodle: DoodleSection = field(default_factory=DoodleSection)
    tiles: TilesConfig = field(default_factory=TilesConfig)  # prints: phases over tiles.max_pixels run in tiles
    result: ResultConfig = field(default_factory=ResultConfig)

    CHOICES: ClassVar[dict] = {"precision": PRECISIONS}

    def check(self, key: str = "") -> None:
        check_doodle(self)


# doodle.style_map / doodle.content_map: make the map automatically (doodle/automap.py), matched to the other.
AUTO = "auto"

# Keys holding file paths: relative ones resolve against the config file's folder (from --set: the current one).
PATH_KEYS = ("style", "content", "output_dir", "model.weights", "init.path",
             "doodle.style_map", "doodle.target_map", "doodle.content_map")

def check_doodle(cfg: DoodleConfig) -> None:
    """Everything about a doodle config that spans sections and can be refused before any file is opened
    (each section checked itself already)."""
    check_run(cfg)
    d = cfg.doodle
    if not cfg.style:
        raise UserError("config key 'style' is required: the painting whose style (and map) to use")
    if d.content_map and not cfg.content:
        raise UserError("config key 'doodle.content_map' is set but 'content' is not: a content map needs "
                        "its photo")
    if d.content_map and d.target_map:
        raise UserError("config keys 'doodle.target_map' and 'doodle.content_map' are both set: with a content "
                        "photo the output's layout is its map, so give only content_map")
    if d.target_map == AUTO:
        raise UserError("config key 'doodle.target_map' cannot be 'auto': the doodle is painted by hand (in the "
                        "style map's colours); 'auto' is for doodle.style_map and doodle.content_map")
    if d.style_map == AUTO and d.target_map:
        raise UserError("config key 'doodle.style_map' is 'auto' but doodle.target_map is a hand-painted doodle "
                        "whose colours an automatic map cannot know: make the style map first with "
                        "`python -m doodle.segment STYLE` and paint the doodle in its colours")
    if d.style_map == AUTO and not cfg.content:
        raise UserError("config key 'doodle.style_map' is 'auto' but no content photo is given: an automatic style "
                        "map is matched to the content photo's regions; for a doodle, make the map with "
                        "`python -m doodle.segment STYLE` and paint the doodle in its colours")
    if cfg.init.method == "content" and not cfg.content:
        raise UserError("config key 'init.method' is 'content' but no content photo is given")
    if d.labels.mode == "kmeans" and d.labels.count is None:
        raise UserError("config key 'doodle.labels.count' is required when doodle.labels.mode is 'kmeans'")
    if d.labels.count is not None and d.labels.count < 2:
        raise UserError(f"config key 'doodle.labels.count' must be at least 2, got {d.labels.count}")
    if not 0.0 < d.labels.min_share < 1.0:
        raise UserError(f"config key 'doodle.labels.min_share' must lie between 0 and 1, got {d.labels.min_share}")
    if d.semantic_weight < 0:
        raise UserError(f"config key 'doodle.semantic_weight' must not be negative, got {d.semantic_weight}")
    if d.patch_size < 1 or d.patch_size % 2 == 0:
        raise UserError(f"config key 'doodle.patch_size' must be an odd number >= 1, got {d.patch_size}")
    if d.patch_stride < 1:
        raise UserError(f"config key 'doodle.patch_stride' must be at least 1, got {d.patch_stride}")
    if not 1 <= d.phases <= 6:
        raise UserError(f"config key 'doodle.phases' must be in 1..6, got {d.phases}")
    if d.phases > cfg.optimizer.iterations:
        raise UserError(f"config key 'doodle.phases' ({d.phases}) is more than optimizer.iterations "
                        f"({cfg.optimizer.iterations}): every phase needs an iteration")
    if d.phase_iteration_ratio <= 0:
        raise UserError(f"config key 'doodle.phase_iteration_ratio' must be positive, got {d.phase_iteration_ratio}")
    for key in ("patch_layers", "patch_gram_layers"):
        for layer, w in getattr(d, key).items():
            if w < 0:
                raise UserError(f"config key 'doodle.{key}.{layer}' must not be negative, got {w}")
    if d.method == "patch" and d.patch_layers:
        # a patch must fit at the deepest patch layer, 2^(block - 1) px per feature there
        blocks = [int(m.group(1)) for m in map(_BLOCK.search, d.patch_layers) if m]
        need = d.patch_size * 2 ** (max(blocks, default=1) - 1)
        long_side = max(cfg.image.size) if isinstance(cfg.image.size, list) else cfg.image.size
        if need > long_side:
            raise UserError(f"config key 'doodle.patch_size' ({d.patch_size}) is too large: a {d.patch_size}x"
                            f"{d.patch_size} patch at the deepest patch layer needs an image of at least {need} px, "
                            f"and image.size is {shown(cfg.image.size)}")
    if d.method == "patch" and not d.patch_layers:
        raise UserError("config key 'doodle.patch_layers' must name at least one layer for method 'patch'")
    if d.method == "gram" and not cfg.layers.style:
        raise UserError("config key 'layers.style' must name at least one layer for method 'gram'")
    if not cfg.content and cfg.loss.style_weight == 0 and cfg.loss.tv_weight == 0:
        raise UserError("loss.style_weight and loss.tv_weight are 0 and there is no content photo: there is nothing "
                        "to optimise")
    if cfg.content and not cfg.layers.content and cfg.loss.content_weight > 0:
        raise UserError("config key 'layers.content' is empty but loss.content_weight > 0")


def load_doodle_config(path, overrides: list[str] = ()) -> DoodleConfig:
    """Read and validate a doodle config: nst's loader with the doodle schema, checks and path keys."""
    return load(path, overrides, DoodleConfig, PATH_KEYS)


def defaults_yaml() -> str:
    return typed_defaults_yaml(DoodleConfig)
