"""The sweep file: a base run config and axes over its keys -> a list of points, each a resolved run config.

A sweep file (YAML, read with nst.config's loader: unknown keys get a did-you-mean, bad values one line)::

    base: oil_landscape.yaml          # a run config of any kind (nst.kinds: a top-level `doodle:` key says doodle)
    set: [image.size=256]             # --set overrides of every point
    output_dir: ../runs/my_sweep      # sweep.csv, contact_sheet.png; the runs under <output_dir>/runs/
    grid: {loss.style_weight: [1e2, 1e3], model.pooling: [avg, max]}   # every combination
    zip: {loss.content_weight: [1, 10], seed: [0, 1]}                  # advanced together
    points: [{loss.tv_weight: 0}, {loss.tv_weight: 1e-4}]              # explicit points
    random: {samples: 4, seed: 0, log_uniform: {loss.style_weight: [10, 1e5]}, choice: {seed: [0, 1]}}
    images: {content: ../../shared/data/content, style: ../../shared/data/style}  # every photo x every painting
    resources: {cpus: 1, gpus: 0}     # per point (Ray): several small runs can share one GPU with gpus: 0.25
    score: oil_landscape.yaml         # optional: score every result under this config's objective (nst.score)
    max_points: 1000                  # refuse a larger sweep (--max-points N overrides): counted before expanding

The points are the product of the blocks that are given (images x grid x zip x points x random samples).
Each point is the base config with ``set``, then its own values, as ``--set`` strings; relative paths in
values resolve against the sweep file's folder, and a mapping value replaces the base's mapping. Its run
folder is ``<runs_dir>/<base name>-<run key>``: the key digests the resolved config (less what cannot change
the result), so an unchanged point finds its old folder and a changed point gets a new one.

A sweep's size is bounded before anything is built: the file's YAML, its aliases expanded, may hold at most
:data:`MAX_YAML_NODES` values, and the points are counted from the blocks' lengths (:func:`count_points`) and
refused above ``max_points`` in one line, before a single point (or random sample) is made.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

import yaml

from nst.typed_yaml import build, read_yaml, to_dict
from nst.errors import UserError
from nst.kinds import Kind, kind_of_file

# Keys that never change what a run computes: left out of the key a run's folder is named by.
UNKEYED = ("output_dir", "progress", "snapshots")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
FREE_SECTIONS = ("grid", "zip")  # key -> list of any YAML values
MAX_POINTS = 1000  # default max_points: a point is a run; expanding one takes ~10 ms (config checks)
MAX_YAML_NODES = 100_000  # values in a sweep file once its aliases are expanded (a 440-byte file can hold 10^9)


@dataclass(frozen=True)
class RandomSpec:
    samples: int = 0
    seed: int = 0
    uniform: dict[str, list[float]] = field(default_factory=dict)  # key: [low, high]
    log_uniform: dict[str, list[float]] = field(default_factory=dict)  # key: [low, high], both > 0
    integers: dict[str, list[int]] = field(default_factory=dict)  # key: [low, high], inclusive
    choice: dict[str, list[str]] = field(default_factory=dict)  # key: [values...]


@dataclass(frozen=True)
class Resources:
    cpus: float = 1.0  # Ray CPUs per point
    gpus: float = 0.0  # Ray GPUs per point: a fraction lets several points share one GPU


@dataclass(frozen=True)
class SweepFile:
    base: str = ""  # the run config every point starts from (required)
    output_dir: str = "runs/sweep"
    runs_dir: Union[str, None] = None  # where the points' run folders go (default <output_dir>/runs)
    set: list[str] = field(default_factory=list)
    grid: dict[str, list[str]] = field(default_factory=dict)
    zip: dict[str, list[str]] = field(default_factory=dict)
    points: list[dict[str, str]] = field(default_factory=list)
    random: RandomSpec = field(default_factory=RandomSpec)
    images: dict[str, str] = field(default_factory=dict)  # config key -> folder of images (or one image)
    resources: Resources = field(default_factory=Resources)
    score: Union[str, None] = None  # an nst config whose objective scores every result
    thumbnail: int = 160  # contact sheet thumbnail long side, px
    max_points: int = MAX_POINTS  # a larger sweep is refused before it is expanded (--max-points overrides)
    path: str = ""  # filled in by the loader


PATH_KEYS = ("base", "output_dir", "runs_dir", "score")


# ---------------------------------------------------------------- run configs: any kind (nst.kinds)


def run_key(config: dict) -> str:
    """A short digest of everything in a resolved config that can change what the run computes."""
    keyed = {k: v for k, v in config.items() if k not in UNKEYED}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:10]


def resolve_sets(sets: list[str], folder: Path, path_keys: tuple[str, ...] = ("content", "style", "init.path",
                                                                               "model.weights")) -> list[str]:
    """Make ``--set`` strings written in a file in ``folder`` safe to hand to load_config.

    Relative paths become absolute (against ``folder``), and a mapping value replaces the base's
    mapping instead of merging into it (``layers.content={conv1_2: 1.0}`` means *only* conv1_2):
    load_config merges mappings, so the key is first set to null.
    """
    keys = {k.replace("[].path", "") for k in path_keys}

    def fix(p):
        return str((folder / p).resolve()) if isinstance(p, str) and p and not Path(p).is_absolute() else p

    out = []
    for text in sets:
        if "=" not in text:
            raise UserError(f"override '{text}' must be key.path=value")
        key, value = text.split("=", 1)
        key = key.strip()
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            parsed = value
        if key in keys and isinstance(parsed, str):
            text = f"{key}={json.dumps(fix(parsed))}"
        elif key in keys and isinstance(parsed, list):
            text = f"{key}={json.dumps([fix(p) if isinstance(p, str) else p for p in parsed])}"
        if isinstance(parsed, dict):
            out.append(f"{key}=null")
        out.append(text)
    return out


def point_config(kind: Kind, base: Path, sets: list[str], runs_dir: Path) -> tuple[Any, str]:
    """(config, key): ``base`` with ``sets`` and ``output_dir`` = ``<runs_dir>/<base name>-<key>``."""
    key = run_key(to_dict(kind.load(base, sets)))
    cfg = kind.load(base, [*sets, f"output_dir={json.dumps(str(runs_dir / f'{base.stem}-{key}'))}"])
    return cfg, key


# ---------------------------------------------------------------- the sweep file


def _free_values(raw: dict, where: str) -> None:
    """Sections holding values of any type: check their shape, then carry each value as its YAML text."""
    for name in FREE_SECTIONS:
        section = raw.get(name)
        if section is None:
            continue
        if not isinstance(section, dict):
            raise UserError(f"{where}: '{name}' must map config keys to lists of values")
        for key, values in section.items():
            if not isinstance(values, list) or not values:
                raise UserError(f"{where}: '{name}.{key}' must be a non-empty list of values, got {values!r}")
            section[key] = [json.dumps(v) for v in values]
    points = raw.get("points")
    if isinstance(points, list):
        for i, p in enumerate(points):
            if not isinstance(p, dict) or not p:
                raise UserError(f"{where}: 'points[{i}]' must map config keys to values, got {p!r}")
            points[i] = {str(k): json.dumps(v) for k, v in p.items()}
    choice = (raw.get("random") or {}).get("choice") if isinstance(raw.get("random"), dict) else None
    if isinstance(choice, dict):
        for key, values in choice.items():
            if not isinstance(values, list) or not values:
                raise UserError(f"{where}: 'random.choice.{key}' must be a non-empty list, got {values!r}")
            choice[key] = [json.dumps(v) for v in values]


def expanded_size(data: Any, limit: int) -> int:
    """How many values ``data`` holds with every YAML alias expanded (a shared node counts each time it is
    reached), computed on the shared graph; stops counting past ``limit``."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes or not isinstance(node, (dict, list)):
            continue
        children = [c for c in (list(node.keys()) + list(node.values()) if isinstance(node, dict) else node)
                    if isinstance(c, (dict, list))]
        if not done:
            if id(node) in visiting:
                return limit + 1  # an alias of its own container: it never ends
            visiting.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        leaves = (2 * len(node) if isinstance(node, dict) else len(node)) - len(children)
        sizes[id(node)] = min(limit + 1, 1 + leaves + sum(sizes.get(id(c), 1) for c in children))
    return sizes.get(id(data), 1)


def check_size(raw: dict, where: str) -> None:
    size = expanded_size(raw, MAX_YAML_NODES)
    if size > MAX_YAML_NODES:
        raise UserError(f"{where} holds over {MAX_YAML_NODES:,} values once its YAML aliases (&name / *name) are "
                        f"expanded; write the axes out, or split the sweep")


def check_sweep(s: SweepFile) -> None:
    if not s.base:
        raise UserError("sweep key 'base' is required: the run config every point starts from")
    if not Path(s.base).is_file():
        raise UserError(f"sweep key 'base': config file not found: {s.base}")
    if s.zip and len({len(v) for v in s.zip.values()}) > 1:
        lengths = ", ".join(f"{k}: {len(v)}" for k, v in s.zip.items())
        raise UserError(f"sweep key 'zip': the lists must have one length, got {lengths}")
    r = s.random
    if r.samples < 0:
        raise UserError(f"sweep key 'random.samples' must not be negative, got {r.samples}")
    ranges = {**{f"uniform.{k}": v for k, v in r.uniform.items()}, **{f"log_uniform.{k}": v for k, v in
                                                                       r.log_uniform.items()},
              **{f"integers.{k}": v for k, v in r.integers.items()}}
    for name, lohi in ranges.items():
        if len(lohi) != 2 or lohi[0] > lohi[1]:
            raise UserError(f"sweep key 'random.{name}' must be [low, high] with low <= high, got {lohi}")
        if name.startswith("log_") and lohi[0] <= 0:
            raise UserError(f"sweep key 'random.{name}' needs low > 0, got {lohi}")
    if r.samples and not ranges and not r.choice:
        raise UserError("sweep key 'random' has samples but no key to draw (uniform, log_uniform, integers, choice)")
    if s.resources.cpus <= 0 or s.resources.gpus < 0:
        raise UserError(f"sweep key 'resources' needs cpus > 0 and gpus >= 0, got {s.resources}")
    if not 16 <= s.thumbnail <= 1024:
        raise UserError(f"sweep key 'thumbnail' must be in 16..1024 px, got {s.thumbnail}")
    if s.max_points < 1:
        raise UserError(f"sweep key 'max_points' must be at least 1, got {s.max_points}")
    if s.score and not Path(s.score).is_file():
        raise UserError(f"sweep key 'score': config file not found: {s.score}")


def load_sweep(path: str | Path, overrides: list[str] = ()) -> SweepFile:
    """Read and validate a sweep file. ``overrides`` (the CLI's ``--set``) are run-config overrides added
    after the file's ``set`` for every point; their relative paths resolve against the current folder."""
    path = Path(path)
    raw = read_yaml(path)
    check_size(raw, f"sweep file {path}")
    _free_values(raw, f"sweep file {path}")
    folder = path.resolve().parent
    for k in PATH_KEYS:
        if isinstance(raw.get(k), str) and raw[k] and not Path(raw[k]).is_absolute():
            raw[k] = str((folder / raw[k]).resolve())
    images = raw.get("images")
    if isinstance(images, dict):
        raw["images"] = {k: str((folder / v).resolve()) if isinstance(v, str) else v for k, v in images.items()}
    sweep = dataclasses.replace(build(SweepFile, raw), path=str(path.resolve()))
    check_sweep(sweep)
    keys = kind_of_file(sweep.base).path_keys
    return dataclasses.replace(sweep, set=[*resolve_sets(sweep.set, folder, keys),
                                           *resolve_sets(list(overrides), Path.cwd(), keys)])


def sweep_dir(s: SweepFile) -> Path:
    return Path(s.output_dir)


def runs_dir(s: SweepFile) -> Path:
    return Path(s.runs_dir) if s.runs_dir else sweep_dir(s) / "runs"


# ---------------------------------------------------------------- axes -> points


def folder_images(path: str, key: str) -> list[str]:
    p = Path(path)
    if p.is_file():
        return [str(p)]
    if not p.is_dir():
        raise UserError(f"sweep key 'images.{key}': no such folder or image: {p}")
    found = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES
                   and not f.stem.endswith("_sem"))  # semantic maps pair with their image, they are not images
    if not found:
        raise UserError(f"sweep key 'images.{key}': no images in {p}")
    return found


def random_points(r: RandomSpec) -> list[dict[str, str]]:
    import numpy as np

    rng = np.random.default_rng(r.seed)
    out = []
    for _ in range(r.samples):
        point: dict[str, Any] = {}
        for k, (lo, hi) in sorted(r.uniform.items()):
            point[k] = float(f"{rng.uniform(lo, hi):.4g}")
        for k, (lo, hi) in sorted(r.log_uniform.items()):
            point[k] = float(f"{math.exp(rng.uniform(math.log(lo), math.log(hi))):.4g}")
        for k, (lo, hi) in sorted(r.integers.items()):
            point[k] = int(rng.integers(lo, hi + 1))
        for k, values in sorted(r.choice.items()):
            point[k] = yaml.safe_load(values[int(rng.integers(len(values)))])
        out.append({k: json.dumps(v) for k, v in point.items()})
    return out


def count_points(s: SweepFile) -> int:
    """The number of points :func:`expand` would make, from the blocks' lengths alone (nothing is built)."""
    n = 1
    for key, folder in s.images.items():
        n *= len(folder_images(folder, key))
    for values in s.grid.values():
        n *= len(values)
    if s.zip:
        n *= len(next(iter(s.zip.values())))
    if s.points:
        n *= len(s.points)
    if s.random.samples:
        n *= s.random.samples
    return n


def check_count(s: SweepFile, max_points: int | None = None) -> int:
    """The point count, or a one-line refusal when it passes ``max_points`` (default: the file's)."""
    limit = s.max_points if max_points is None else max_points
    n = count_points(s)
    if n > limit:
        shown = f"{n:,}" if n < 10**15 else f"about 10^{len(str(n)) - 1}"
        raise UserError(f"sweep {Path(s.path).name or 'file'} has {shown} points, over the limit of {limit:,}; "
                        f"narrow its axes, or raise the limit with max_points in the file or --max-points N")
    return n


def blocks(s: SweepFile) -> list[list[dict[str, str]]]:
    """Each given axis block as a list of partial points (key -> value as YAML text)."""
    out = []
    if s.images:
        lists = {k: folder_images(v, k) for k, v in s.images.items()}
        out.append([dict(zip(lists, combo)) for combo in itertools.product(*lists.values())])
        out[-1] = [{k: json.dumps(v) for k, v in p.items()} for p in out[-1]]
    if s.grid:
        out.append([dict(zip(s.grid, combo)) for combo in itertools.product(*s.grid.values())])
    if s.zip:
        out.append([dict(zip(s.zip, combo)) for combo in zip(*s.zip.values())])
    if s.points:
        out.append([dict(p) for p in s.points])
    if s.random.samples:
        out.append(random_points(s.random))
    return out


@dataclass
class Point:
    index: int
    values: dict[str, Any]  # axis key -> value
    sets: list[str]  # the overrides on the base config (the sweep's `set`, then this point's values)
    key: str = ""  # run key ('' when the config does not resolve)
    folder: Union[Path, None] = None
    cfg: Any = None  # the resolved run config (output_dir = folder)
    error: str = ""  # why the config does not resolve: the point fails without running

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={short(v)}" for k, v in self.values.items())


def short(value: Any) -> str:
    """A value as the contact sheet and the progress lines show it."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and ("/" in value or "\\" in value):
        return Path(value).stem
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(short(v) for v in value) + "]"
    return str(value)


def expand(s: SweepFile, max_points: int | None = None) -> tuple[Kind, list[Point]]:
    """Every point of the sweep, each with its resolved config or the one-line reason it has none.

    Counted first (:func:`check_count`): a sweep over ``max_points`` (default: the file's) is refused unbuilt."""
    check_count(s, max_points)
    kind = kind_of_file(s.base)
    base = Path(s.base)
    common = list(s.set)  # already resolved by load_sweep
    try:
        kind.load(base, common)
    except UserError as exc:
        if _is_key_error(str(exc)):
            raise UserError(f"sweep 'set': {exc}") from None  # a bad value here fails every point below
    points = []
    axes = blocks(s)
    for i, combo in enumerate(itertools.product(*axes) if axes else [()]):
        merged: dict[str, str] = {}
        for part in combo:
            merged.update(part)
        values = {k: yaml.safe_load(v) for k, v in merged.items()}
        own = resolve_sets([f"{k}={v}" for k, v in merged.items()], Path(s.path).parent, kind.path_keys)
        point = Point(i, values, [*common, *own])
        try:
            point.cfg, point.key = point_config(kind, base, point.sets, runs_dir(s))
            point.folder = Path(point.cfg.output_dir)
        except UserError as exc:
            if _is_key_error(str(exc)):  # a misspelt axis key is the sweep file's error, not one point's
                raise UserError(f"sweep file {s.path}: {exc}") from None
            point.error = str(exc)
            point.key = hashlib.sha256(json.dumps(point.sets).encode()).hexdigest()[:10]
        points.append(point)
    return kind, points


def _is_key_error(message: str) -> bool:
    return message.startswith(("unknown config key", "--set")) or "is not a section" in message


def varying_keys(points: list[Point]) -> list[str]:
    """The axis keys whose value differs between points, in the order the sweep file gives them."""
    keys = list(dict.fromkeys(k for p in points for k in p.values))
    return [k for k in keys if len({json.dumps(p.values.get(k), sort_keys=True) for p in points}) > 1]
