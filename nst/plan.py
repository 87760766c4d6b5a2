"""A run's plan: its scales, coarse to fine, each run whole or — when too large — as tiles.

A :class:`Scale` is a size and an iteration count; a scale with more pixels than ``tiles.max_pixels``
carries its :class:`nst.config.TilesConfig` and is optimised in overlapping tiles by the same driver
(:func:`nst.engine.run_plan`): tiling is a property of a scale, not a second road. Once one scale is
tiled every finer one is too. The geometry of a tiled scale (its grid, passes, tile shape) comes from
:mod:`nst.tiles`. Nothing here runs anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from nst.config import TilesConfig
from nst.tiles import Box, grid, tile_shape


@dataclass(frozen=True)
class Scale:
    hw: tuple[int, int]  # (height, width) of the image at this scale
    iterations: int  # per tile and pass when tiled
    tiles: TilesConfig | None = None  # set: this scale runs as tiles

    @property
    def tiled(self) -> bool:
        return self.tiles is not None

    @property
    def shape(self) -> tuple[int, int]:
        """The (h, w) one optimisation works on: the tile shape, or the whole image."""
        return tile_shape(self.hw, self.tiles) if self.tiles is not None else tuple(self.hw)

    def grids(self) -> list[list[Box]]:
        """Tile origins per pass (raster order); one 'tile' covering the image when the scale is whole."""
        if self.tiles is None:
            return [[(0, 0)]]
        return [grid(self.hw, self.tiles, p) for p in range(self.tiles.passes)]

    def runs(self) -> int:
        """How many optimisations this scale is: one, or every tile of every pass."""
        return sum(len(g) for g in self.grids())

    def work(self) -> tuple[int, int]:
        """(pixels an iteration works on, iterations over every tile and pass): for the progress ETA."""
        h, w = self.shape
        return h * w, self.iterations * self.runs()


def is_tiled(hw: tuple[int, int], tiles: TilesConfig) -> bool:
    """Whether a scale of ``hw`` = (h, w) is optimised in tiles."""
    return hw[0] * hw[1] > tiles.max_pixels


def make_plan(sizes: list[tuple[tuple[int, int], int]], tiles: TilesConfig) -> list[Scale]:
    """[(hw, iterations)] coarse to fine -> scales; from the first over ``tiles.max_pixels`` on, tiled."""
    plan, tiling = [], False
    for hw, iterations in sizes:
        tiling = tiling or is_tiled(hw, tiles)
        plan.append(Scale(tuple(hw), int(iterations), tiles if tiling else None))
    return plan


def plan_work(plan: list[Scale]) -> list[tuple[int, int]]:
    return [s.work() for s in plan]


def seconds_left(work: list[tuple[int, int]], phase: int, iteration: int, seconds: float) -> float:
    """Time left after ``iteration`` (1-based over the run) at ``seconds``, from the pixel-iterations still to do
    (``work``: (pixels a step, iterations) per scale, :func:`plan_work`), so coarse scales do not promise a print
    in seconds. Without the phase in ``work``, a linear guess."""
    total = sum(n for _, n in work)
    if not work or phase >= len(work):
        return seconds / max(iteration, 1) * max(total - iteration, 0)
    before = sum(n for _, n in work[:phase])
    px, n = work[phase]
    done = sum(p * k for p, k in work[:phase]) + px * min(max(iteration - before, 0), n)
    return seconds / max(done, 1) * (sum(p * k for p, k in work) - done)


def total_iterations(plan: list[Scale]) -> int:
    return sum(s.work()[1] for s in plan)


def describe(plan: list[Scale]) -> str:
    """The plan for the log: ``512x384 (300 it) -> 4096x3072 (in 512 px tiles: 63+80 x 10 it)``."""
    parts = []
    for s in plan:
        if s.tiled:
            counts = "+".join(str(len(g)) for g in s.grids())
            parts.append(f"{s.hw[1]}x{s.hw[0]} (in {s.tiles.size} px tiles: {counts} x {s.iterations} it)")
        else:
            parts.append(f"{s.hw[1]}x{s.hw[0]} ({s.iterations} it)")
    return " -> ".join(parts)
