"""The progress event: what the engine reports after each iteration, and how a caller stops a run.

The CLI's progress line, ``losses.csv``, snapshots, notebooks' live plots, figure scripts, the studio and
sweeps all read this one small dataclass (the pattern of crowsonkb/style-transfer-pytorch's ``STIterate``).

Loss terms are an open set: an objective returns any named, weighted terms. A name's part before the first
dot is its *group* (``style.mrf`` and ``style.gram`` are both ``style``); the fixed columns ``content``,
``style`` and ``tv`` are the sums of their groups, so every term set keeps the same first columns.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

AGGREGATES = ("content", "style", "tv")
CSV_HEADER = ("iteration", *AGGREGATES, "total", "seconds")
TILE_COLUMNS = ("tile", "pass")  # after phase,size in a tiled run's losses.csv (0, 0 on whole-image rows)


def group(term: str) -> str:
    """``style.mrf`` -> ``style``: the aggregate column a term adds to."""
    return term.split(".", 1)[0]


def aggregate(terms: dict[str, float], name: str) -> float:
    return float(sum(v for k, v in terms.items() if group(k) == name))


def extra_columns(terms: Iterable[str]) -> list[str]:
    """The columns a term set adds after CSV_HEADER: every term that is not itself a fixed aggregate."""
    return [t for t in terms if t not in AGGREGATES]


@dataclass(frozen=True)
class Progress:
    iteration: int  # 1-based, counted over the whole run (all scales)
    terms: dict[str, float]  # weighted loss terms by name; their sum is ``total``
    total: float
    seconds: float  # wall time since the run's optimiser started
    image: np.ndarray  # (h, w, 3) float32 RGB 0..255, the current image at this scale (do not modify)
    total_iterations: int = 0  # the run's planned iterations over all scales (0: unknown)
    phase: int = 0  # 0-based index of the scale (coarse-to-fine phase) this iteration belongs to
    phases: int = 1
    precision: str = "float32"  # the numeric path that computed this iteration
    # prints (nst.tiles): the tile this iteration optimised, 1-based within its pass (0: the whole image; the
    # event's image is then the whole image as far as it is done), and the pass; tile_passes > 0 marks a tiled run
    tile: int = 0
    tiles: int = 0
    tile_pass: int = 0
    tile_passes: int = 0
    evaluations: int = 0  # loss+gradient evaluations so far in this engine call (line searches included)
    seconds_left: float = -1.0  # the engine's estimate from the plan's pixel-iterations still to do (-1: none)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of this scale's image."""
        return tuple(self.image.shape[:2])

    @property
    def content(self) -> float:
        return aggregate(self.terms, "content")

    @property
    def style(self) -> float:
        return aggregate(self.terms, "style")

    @property
    def tv(self) -> float:
        return aggregate(self.terms, "tv")

    def csv_values(self, extra: list[str], tiled: bool = False) -> list[str]:
        fixed = [f"{self.iteration}", *(f"{getattr(self, a):.6g}" for a in AGGREGATES), f"{self.total:.6g}",
                 f"{self.seconds:.3f}"]
        tail = [str(self.tile), str(self.tile_pass)] if tiled else []  # TILE_COLUMNS
        return fixed + [f"{self.terms.get(t, 0.0):.6g}" for t in extra] + [str(self.phase), f"{self.size[1]}x{self.size[0]}"] + tail


Callback = Callable[[Progress], None]


class Cancelled(Exception):
    """A run was stopped by its caller (studio, sweep) through :class:`Control`; not an error, not a signal."""


@dataclass
class Control:
    """How a run's progress leaves (a list of subscribers) and how a caller stops it (``cancel()``).

    Thread-safe to cancel from another thread: the engine checks after every iteration and raises
    :class:`Cancelled`, which the run folder records as ``cancelled``.
    """

    subscribers: list[Callback] = field(default_factory=list)
    _cancel: threading.Event = field(default_factory=threading.Event)

    def subscribe(self, fn: Callback) -> Control:
        self.subscribers.append(fn)
        return self

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def emit(self, ev: Progress) -> None:
        for fn in list(self.subscribers):
            fn(ev)
        if self._cancel.is_set():
            raise Cancelled(f"cancelled at iteration {ev.iteration}")

    def muted(self) -> Control:
        """A Control with no subscribers that shares this one's cancel: work whose events are replayed later."""
        return Control([], self._cancel)

    def check(self) -> None:
        """Raise :class:`Cancelled` if cancel() was called (for work between iterations)."""
        if self._cancel.is_set():
            raise Cancelled("cancelled")


def as_control(callback: Callback | Control | None) -> Control:
    """Accept a plain callback (older callers, tests) or a Control."""
    if isinstance(callback, Control):
        return callback
    return Control([callback] if callback is not None else [])
