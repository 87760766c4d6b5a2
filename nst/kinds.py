"""The kinds of run (style transfer, doodle, video): one record each, found by name or by a config's keys.

Each kind exports a :class:`Kind` next to its ``execute`` (``nst.run.KIND``, ``doodle.run.KIND``,
``nst.video.run.KIND``) and registers it as a ``nst.kinds`` entry point (setup.cfg), so the applications
over every kind — the studio, sweeps, figure scripts, notebooks — look a kind up here instead of guessing
it, and nst itself names no other package. A kind's config file is told by its *marker*: the top-level
section only that kind has (``doodle:``, ``video:``); the kind without a marker (style transfer) takes the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

from nst.errors import UserError

GROUP = "nst.kinds"


@dataclass(frozen=True)
class Kind:
    name: str  # nst | doodle | video
    title: str  # for people: "style transfer"
    command: str  # its CLI: "python -m nst.run"
    schema: type  # the config dataclass (every key and default)
    load: Callable[..., Any]  # (path | None, overrides) -> validated config
    path_keys: tuple[str, ...]  # dotted keys holding file paths
    inputs: tuple[str, ...]  # the keys naming its input images (the studio's pickers)
    execute: Callable[..., dict]  # (cfg, loaded_weights=None, control=None) -> run.json's record
    marker: str | None = None  # the top-level config section that says "this kind"


@lru_cache(maxsize=1)
def _table() -> dict[str, Kind]:
    table = {}
    for ep in entry_points(group=GROUP):
        kind = ep.load()
        table[kind.name] = kind
    if not table:
        raise UserError("no run kinds are registered: install the package (python -m pip install -e .)")
    return table


def kinds() -> dict[str, Kind]:
    """Every registered kind by name."""
    return dict(_table())


def kind(name: str) -> Kind:
    table = _table()
    if name not in table:
        raise UserError(f"unknown run kind '{name}'; use {', '.join(sorted(table))}")
    return table[name]


def kind_of_raw(raw: dict) -> Kind:
    """The kind of a config's raw YAML mapping: the one whose marker section it has, else the unmarked one."""
    table = _table()
    marked = [k for k in table.values() if k.marker and k.marker in raw]
    if len(marked) > 1:
        raise UserError(f"a config cannot have both {' and '.join(k.marker + ':' for k in marked)} sections")
    if marked:
        return marked[0]
    return next(k for k in table.values() if k.marker is None)


def kind_of_file(path: str | Path) -> Kind:
    from nst.typed_yaml import read_yaml

    return kind_of_raw(read_yaml(path))


def kind_of_config(cfg: Any) -> Kind:
    """The kind of a loaded config, by its schema."""
    for k in _table().values():
        if type(cfg) is k.schema:
            return k
    raise UserError(f"no run kind has the schema {type(cfg).__name__}")
