"""A typed-YAML loader: YAML + ``--set`` overrides -> frozen, validated dataclasses, for any schema.

Every config of the project (a run of any kind, a video, a sweep file, a figure config) is a tree of frozen
dataclasses; this module turns YAML text into such a tree and nothing else knows how. What it guarantees:

* unknown keys get a did-you-mean; a key given twice in one mapping is an error; wrong types name the key;
* ``--set key.path=value`` overrides, read as YAML (``1e-3`` is a number, as in YAML 1.2);
* relative paths under a schema's path keys resolve against the config file's folder (``--set`` ones against
  the current directory);
* **each section checks itself**: a dataclass may declare ``CHOICES: ClassVar[dict]`` (field -> allowed
  values) and a ``check(self, key)`` method (``key``: its dotted place, e.g. ``"optimizer."``); after building,
  every section is checked, innermost first, then the top's own ``check`` (or the caller's ``check``).

Values in messages are cut short (:func:`shown`): a small YAML of aliases cannot make a huge message.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import reprlib
import types
import typing
from pathlib import Path
from typing import Any, Callable, Union

import yaml

from nst.errors import UserError

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
        sections = [t for t in typing.get_args(tp) if dataclasses.is_dataclass(t)]
        if isinstance(value, dict) and len(sections) == 1:  # a mapping can only mean the section: say what is wrong in it
            return _coerce(value, sections[0], key)
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
        return build(tp, value, key + ".")
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


def build(cls: type, data: dict, prefix: str = "") -> Any:
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


def resolve_paths(raw: dict, base: Path, path_keys: tuple[str, ...]) -> None:
    """Make the relative paths under ``path_keys`` absolute against ``base``; a ``[]`` in a key (``style[].path``,
    ``scales[].style[].mask.path``) stands for every item of that list."""
    def fix(p: Any) -> Any:  # "auto" stays literal: doodle's automatic maps (doodle.style_map: auto)
        keep = not isinstance(p, str) or p in ("", "auto") or Path(p).is_absolute()
        return p if keep else str((base / p).resolve())

    def walk(node: Any, keys: list[str]) -> None:
        if not isinstance(node, dict) or not keys:
            return
        head, rest = keys[0], keys[1:]
        if head.endswith("[]"):
            items = node.get(head[:-2])
            for item in items if isinstance(items, list) else []:
                walk(item, rest)
        elif not rest:
            if head in node:
                node[head] = fix(node[head])
        else:
            walk(node.get(head), rest)

    for dotted in path_keys:
        walk(raw, dotted.split("."))


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


def _check_choice(value: Any, allowed: tuple, key: str) -> None:
    if value not in allowed or isinstance(value, bool) != any(v is value for v in allowed if isinstance(v, bool)):
        names = [str(a).lower() if isinstance(a, bool) else a for a in allowed]  # as YAML writes them
        close = difflib.get_close_matches(str(value), names, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UserError(f"config key '{key}' must be one of {', '.join(names)}; got '{value}'{hint}")


def check_choices(cfg: Any, choices: dict) -> None:
    """{dotted key: allowed values} against ``cfg``; a did-you-mean for a near miss."""
    for dotted, allowed in choices.items():
        _check_choice(get_dotted(cfg, dotted), allowed, dotted)


def check_sections(cfg: Any, key: str = "", top: bool = True) -> None:
    """Check every section of ``cfg`` innermost first: its CHOICES, then its own ``check(key)``; the top's
    ``check`` only when ``top`` (the caller may bring its own)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            check_sections(value, f"{key}{f.name}.", True)
    for name, allowed in getattr(type(cfg), "CHOICES", {}).items():
        _check_choice(getattr(cfg, name), allowed, f"{key}{name}")
    if top and hasattr(cfg, "check"):
        cfg.check(key)


def load(path: str | Path | None, overrides: list[str], schema: type, path_keys: tuple[str, ...],
         normalise: Callable[[dict], None] = lambda _raw: None, check: Callable[[Any], None] | None = None) -> Any:
    """Read a YAML file (or only defaults when ``path`` is None), apply ``--set`` overrides, build, check.

    ``normalise(raw)`` reshapes a mapping before paths are resolved (nst: ``style: x.jpg`` -> a list);
    ``check(cfg)`` replaces the top section's own ``check`` (the sections' checks always run).
    """
    raw = read_yaml(path) if path is not None else {}
    base = Path(path).resolve().parent if path is not None else Path.cwd()
    normalise(raw)
    resolve_paths(raw, base, path_keys)
    for text in overrides:
        keys, value = _parse_override(text)
        patch: dict = {}
        _apply_override(patch, keys, value)
        normalise(patch)
        resolve_paths(patch, Path.cwd(), path_keys)
        _merge(raw, patch)
    cfg = build(schema, raw)
    check_sections(cfg, "", top=check is None)
    if check is not None:
        check(cfg)
    return cfg


def defaults_yaml(schema: type) -> str:
    """Every key of ``schema`` with its default, as YAML."""
    return yaml.safe_dump(to_dict(schema()), sort_keys=False)
