"""The one optimisation engine behind style transfer, doodles, and everything built on them.

A run is a *plan* (:mod:`nst.plan`): scales coarse to fine, one for the paper's single-size runs. A
*task* (style transfer's :class:`nst.transfer.TransferTask`, the doodle's :class:`doodle.engine.DoodleTask`)
says what to optimise at a scale; :func:`run_plan` is the one driver that runs an optimiser. Each scale
starts from the previous scale's result upsampled (the first from ``x0``). A whole scale is optimised on
``task.whole(...)``'s objective. A tiled scale (a print) is optimised tile by tile, pass by pass, on one
objective per numeric path built by ``task.tile_objective(...)`` from style targets computed once
(``task.tile_targets(...)``) and refilled per tile (``task.retarget(...)``), each tile blended into the
image (:mod:`nst.tiles`). Tiles run here one after another in raster order; a ``tile_runner``
(:class:`TileRunner`, e.g. :class:`nst.tile_pool.TilePool` on Ray) replaces that inner loop over a pass's tiles,
its workers running a :class:`TileSolver` each. Progress leaves as one :class:`nst.events.Progress` per
iteration, numbered over the whole plan, to the :class:`nst.events.Control`'s subscribers (which may cancel).

The numeric path (precision, XLA) is chosen once per plan, here (:func:`choose_path`, probed on the shape
the plan spends most time on). When L-BFGS finds no further decrease on a reduced-precision path before its
iterations run out, the engine finishes that optimisation in float32 (bfloat16's rounding can end the line
search early; float32 goes on), and records it. Nothing here reads or writes files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import tensorflow as tf

from nst.config import OptimizerConfig, TilesConfig
from nst.events import Control, Progress
from nst.features import FeatureExtractor
from nst.objective import Objective
from nst.optimize import OPTIMIZERS
from nst.plan import Scale, plan_work, seconds_left, total_iterations
from nst.parameterize import Counter
from nst.parameterize import make as make_parameterization
from nst.precision import Choice, Path_, choose, time_step
from nst.tiles import Box, blend, crop
from nst.weights import Weights

Log = Callable[[str], None]
FLOAT32 = Path_("float32", False)


class Task(Protocol):
    """What a kind optimises at each scale; the engine owns the loop, tiles, precision and progress."""

    def whole(self, index: int, hw: tuple[int, int], extractor: FeatureExtractor) -> Objective:
        """The objective of scale ``index`` run whole at ``hw`` = (h, w), with its targets."""

    def tile_targets(self, index: int, hw: tuple[int, int], tiles: TilesConfig, extractor: FeatureExtractor) -> object:
        """Style targets of the whole image at a tiled scale, summed over tiles of ``tiles.size`` with
        ``tiles.overlap`` px of context (computed once per tiled scale)."""

    def tile_objective(self, extractor: FeatureExtractor, shared: object, hw: tuple[int, int], box: Box,
                       shape: tuple[int, int]) -> Objective:
        """A tile objective (built once per tiled scale and path) with the targets of the tile at ``box``."""

    def retarget(self, objective: Objective, hw: tuple[int, int], box: Box, shape: tuple[int, int]) -> None:
        """Refill a tile objective's per-tile targets (content features, doodle masks) for ``box``."""

    # optional: ``cost_key() -> str``, what besides size and network sets the objective's cost per path
    # ("" for the paper's terms); the precision probe's cache keeps one entry per value


class Extractors:
    """The run's VGG feature extractor at each precision, built when first asked for (they share the weights)."""

    def __init__(self, weights: Weights, network: str, pooling: str, layers: list[str]):
        self.weights, self.network, self.pooling, self.layers = weights, network, pooling, list(layers)
        self._built: dict[str, FeatureExtractor] = {}

    def __call__(self, precision: str = "float32") -> FeatureExtractor:
        if precision not in self._built:
            self._built[precision] = FeatureExtractor(self.weights, self.network, self.pooling, self.layers,
                                                      precision)
        return self._built[precision]


@dataclass(frozen=True)
class Numerics:
    """How the numeric path is chosen: ``precision`` / ``xla`` as in the config (``auto`` probes, cached
    under ``cache_dir``), or ``choice`` pinned by the caller (a video chooses once for every frame)."""

    precision: str = "float32"
    xla: bool | str = False
    cache_dir: Path | None = None
    choice: Choice | None = None


@dataclass
class Result:
    image: np.ndarray  # (H, W, 3) float32 at the last scale
    stop: str  # why it ended, for people
    iterations: int  # done over all scales (every tile's)
    info: dict = field(default_factory=dict)  # precision path and why, fallbacks, scales: for run.json


def upsample(image: np.ndarray, hw: tuple[int, int], bounded: bool = True) -> np.ndarray:
    """(h, w, 3) -> (H, W, 3) bicubic: the previous scale's result as the next scale's start."""
    if tuple(image.shape[:2]) == tuple(hw):
        return image
    up = tf.image.resize(image[None], hw, method="bicubic")[0].numpy()
    return np.clip(up, 0, 255) if bounded else up


class _Objectives:
    """Where each optimisation's objective comes from: whole scales ask the task each time; a tiled scale
    keeps one objective per path, its style targets computed once, its per-tile targets refilled."""

    def __init__(self, task: Task, extractors: Extractors, shared: tuple[int, object] | None = None):
        self.task, self.extractors = task, extractors
        # (scale index, shared targets, path -> objective); a tile worker starts with the driver's targets
        self._tiled: tuple[int, object, dict] | None = None if shared is None else (*shared, {})

    def shared(self, index: int, scale: Scale) -> object:
        """The tiled scale's style targets, computed once (in float32)."""
        if self._tiled is None or self._tiled[0] != index:
            self._tiled = (index, self.task.tile_targets(index, scale.hw, scale.tiles, self.extractors("float32")), {})
        return self._tiled[1]

    def get(self, index: int, scale: Scale, box: Box, precision: str) -> Objective:
        extractor = self.extractors(precision)
        if not scale.tiled:
            return self.task.whole(index, scale.hw, extractor)
        self.shared(index, scale)
        _, shared, built = self._tiled
        if precision not in built:
            built[precision] = self.task.tile_objective(extractor, shared, scale.hw, box, scale.shape)
        else:
            self.task.retarget(built[precision], scale.hw, box, scale.shape)
        return built[precision]


def choose_path(plan: list[Scale], task: Task, extractors: Extractors, x0: np.ndarray, numerics: Numerics,
                log: Log, objectives: _Objectives | None = None) -> Choice:
    """The numeric path for this plan, probed (when asked to) on the shape it spends most time on: the first
    tiled scale's tile shape (a print: probing whole scales too would double their memory), else the last scale."""
    objectives = objectives or _Objectives(task, extractors)
    index = next((i for i, s in enumerate(plan) if s.tiled), len(plan) - 1)
    scale = plan[index]
    hw = scale.shape
    image = tf.constant(upsample(x0, hw)[None], tf.float32)  # x0 resized to the probed shape times a step
    first_box = scale.grids()[0][0]
    fastest = [float("inf")]

    def probe(path: Path_) -> tuple[float, float]:
        objective = objectives.get(index, scale, first_box, path.precision)
        # a warm-up 5x slower than the fastest evaluation so far (and over 20 s, compiling included) ends the probe
        seconds, loss = time_step(objective.step(path.xla), image, give_up_after=max(20.0, 5 * fastest[0]))
        fastest[0] = min(fastest[0], seconds)
        return seconds, loss

    if scale.tiled:
        work = hw[0] * hw[1] * scale.iterations * len(scale.grids()[0])
    else:
        work = sum(s.hw[0] * s.hw[1] * s.iterations for s in plan)
    ext = extractors("float32")
    # cached per size and network: max pooling's gradient has no deterministic XLA kernel, avg pooling's has;
    # and per objective when its terms cost differently (W2's eigvalsh under XLA ran 6x slower than without)
    key = f"{hw[1]}x{hw[0]} {ext.network}/{getattr(ext, 'pooling', '?')}"
    cost = getattr(task, "cost_key", lambda: "")()
    if cost:
        key += f" {cost}"
    return choose(numerics.precision, numerics.xla, probe, key, work, numerics.cache_dir, log)


@dataclass
class _Run:
    """The state of one run_plan call: numbering, notes, the path in force."""

    control: Control
    plan: list[Scale]
    total: int
    start: float = field(default_factory=time.perf_counter)
    done: int = 0
    notes: list[str] = field(default_factory=list)
    evals: Counter = field(default_factory=Counter)  # loss+gradient evaluations (line searches included)
    work: list = field(default_factory=list)  # plan_work(plan): what the time-left estimate counts

    def __post_init__(self) -> None:
        self.work = plan_work(self.plan)

    @property
    def tile_passes(self) -> int:
        """> 0 on every event of a plan with tiled scales (its losses.csv has tile columns from row 1)."""
        return next((s.tiles.passes for s in self.plan if s.tiled), 0)

    def reporter(self, index: int, path: Path_, canvas: np.ndarray | None, tile: dict,
                 decode: Callable[[np.ndarray], np.ndarray] = lambda x: x):
        """The optimiser's per-iteration callback; ``decode`` turns what it moves (parameters) into the image."""
        def report(terms: dict, img: np.ndarray) -> None:
            self.done += 1
            vals = {k: float(v) for k, v in terms.items()}
            total = vals.pop("total")
            seconds = time.perf_counter() - self.start
            self.control.emit(Progress(self.done, vals, total, seconds,
                                       decode(img) if canvas is None else canvas, self.total, index, len(self.plan),
                                       path.name, tile_passes=self.tile_passes, evaluations=self.evals.n,
                                       seconds_left=seconds_left(self.work, index, self.done, seconds),
                                       **(tile or {})))

        return report


def _optimise(run: _Run, objectives: _Objectives, index: int, scale: Scale, box: Box, image: np.ndarray,
              opt: OptimizerConfig, path: Path_, log: Log, canvas: np.ndarray | None = None,
              tile: dict | None = None) -> tuple[np.ndarray, Path_, str | None]:
    """One optimisation (a whole scale or one tile) of ``scale.iterations``: (image, path in force, stall)."""
    run_optimizer = OPTIMIZERS[opt.method]
    left = scale.iterations
    while left > 0:
        objective = objectives.get(index, scale, box, path.precision)
        # what the optimiser moves (optimizer.parameterization); pixels: the image itself, as ever
        param = make_parameterization(opt.parameterization, scale.shape, opt.pyramid_levels, opt.bounds)
        on_round = (lambda z, _o=objective, _p=param: _o.on_round(_p.decode(z))) if objective.has_rounds else None
        rounds, done_before = max(1, min(opt.rounds, left)), run.done
        try:
            out = run_optimizer(run.evals.count(param.wrap(objective.step(path.xla))), param.encode(image),
                                param.optimizer_config(opt), left,
                                run.reporter(index, path, canvas, tile, param.decode), on_round, rounds)
        except tf.errors.OpError as exc:  # a path this objective cannot run (e.g. no deterministic XLA kernel)
            if path == FLOAT32 or run.done != done_before:
                raise
            note = f"{path.name} failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); float32 runs"
            log(f"notice: {note}")
            run.notes.append(note)
            path = FLOAT32
            continue
        image, left = param.decode(out.image), left - out.iterations
        if not out.stalled:
            return image, path, None
        if path.precision != "float32":
            note = (f"{path.name} found no further decrease at iteration {run.done} (scale {index + 1}); "
                    f"the remaining {left} iterations run in float32")
            log(f"notice: {note}")
            run.notes.append(note)
            path = Path_("float32", path.xla)
            continue
        return image, path, out.stop
    return image, path, None


# ---------------------------------------------------------------- tiles run elsewhere (nst.tile_pool)


@dataclass
class TileOutcome:
    """One tile optimised by a :class:`TileSolver`: what the driver blends and reports."""

    image: np.ndarray  # (th, tw, 3) float32
    events: list[tuple[str, dict[str, float]]]  # per iteration: (path name, {term: value, "total": value})
    stall: str | None  # the optimiser's reason when it found no further decrease
    notes: list[str]  # float32 fallbacks, for run.json
    seconds: float = 0.0  # wall time of the tile where it ran (objective built on the first tile included)


class TileSolver:
    """The tiles of one tiled scale optimised one at a time away from :func:`run_plan` (a worker's part).

    Built from the task and the scale's shared style targets computed by the driver; its objective is
    built at the first tile and refilled per tile (as the serial loop's), each tile run by the same
    :func:`_optimise` (float32 finish of a stalled reduced-precision tile included)."""

    def __init__(self, task: Task, extractors: Extractors, index: int, scale: Scale, shared: object,
                 opt: OptimizerConfig):
        self.index, self.scale, self.opt = index, scale, opt
        self.objectives = _Objectives(task, extractors, (index, shared))

    def solve(self, box: Box, start: np.ndarray, path: Path_) -> TileOutcome:
        events: list[tuple[str, dict[str, float]]] = []

        def keep(ev: Progress) -> None:
            events.append((ev.precision, {**ev.terms, "total": ev.total}))

        run = _Run(Control([keep]), [self.scale], self.scale.iterations)
        out, _, stall = _optimise(run, self.objectives, self.index, self.scale, box,
                                  np.ascontiguousarray(start, np.float32), self.opt, path, lambda _s: None)
        return TileOutcome(out, events, stall, run.notes, time.perf_counter() - run.start)


@dataclass
class PassWork:
    """One pass of a tiled scale handed to a :class:`TileRunner`: the canvas to blend into (in place), what a
    worker needs to build a :class:`TileSolver`, and :meth:`report` for the progress of each finished tile."""

    run: _Run
    task: Task
    extractors: Extractors  # the run's (a worker builds its own alike: network, pooling, layers)
    shared: object
    index: int
    scale: Scale
    pass_index: int
    canvas: np.ndarray  # (H, W, 3) float32, blended in place
    opt: OptimizerConfig
    path: Path_  # every tile starts on the plan's chosen path
    log: Log

    def check(self) -> None:
        self.run.control.check()

    def report(self, tile: int, tiles: int, outcome: TileOutcome) -> None:
        """Emit a finished (and blended) tile's iterations as progress, numbered over the run."""
        self.run.notes.extend(outcome.notes)
        for note in outcome.notes:
            self.log(f"notice: {note}")
        info = {"tile": tile, "tiles": tiles, "tile_pass": self.pass_index + 1}
        for name, terms in outcome.events:
            self.run.reporter(self.index, path_of(name), self.canvas, info)(dict(terms), self.canvas)


def path_of(name: str) -> Path_:
    """``bfloat16+xla`` -> Path_("bfloat16", True): a path sent by name (to a worker, in an event)."""
    precision, _, xla = name.partition("+")
    return Path_(precision, bool(xla))


class TileRunner(Protocol):
    """Runs one pass of a tiled scale: every tile optimised from the canvas and blended into it (nst.tile_pool)."""

    def run_pass(self, work: PassWork) -> int:
        """Optimise and blend every tile of ``work``'s pass; returns how many tiles stopped early."""

    def describe(self) -> str:
        """For run.json: where the tiles ran."""


def run_plan(plan: list[Scale], task: Task, *, extractors: Extractors, x0: np.ndarray, opt: OptimizerConfig,
             control: Control, numerics: Numerics = Numerics(), log: Log | None = None,
             tile_runner: TileRunner | None = None) -> Result:
    """Optimise through ``plan`` from ``x0`` (at the first scale's size); returns the final image and a record.

    ``tile_runner`` (e.g. :class:`nst.tile_pool.TilePool`) runs each pass of a tiled scale in its own way
    (tiles in parallel); without one the pass's tiles run here one after another, in raster order."""
    log = log or (lambda _s: None)
    objectives = _Objectives(task, extractors)
    probed = numerics.choice is None
    choice = numerics.choice or choose_path(plan, task, extractors, x0, numerics, log, objectives)
    tiled = any(s.tiled for s in plan)
    log(f"precision{' (tiles, and the whole scales before them)' if tiled else ''}: {choice.name} ({choice.why})")
    chosen = path = Path_(choice.precision, choice.xla)
    run = _Run(control, plan, total_iterations(plan))
    image, scales, stalls = x0, [], []
    for index, scale in enumerate(plan):
        control.check()
        image = upsample(image, scale.hw, opt.bounds)
        record = {"width": scale.hw[1], "height": scale.hw[0], "iterations": scale.iterations}
        done_before = run.done
        if not scale.tiled:
            image, path, stall = _optimise(run, objectives, index, scale, (0, 0), image, opt, path, log)
            if stall:
                stalls.append(f"scale {index + 1}: {stall}")
            scales.append({**record, "done": run.done - done_before, "precision": path.name})
            continue
        image = np.array(image, np.float32)  # the canvas, blended in place
        grids, shape, t = scale.grids(), scale.shape, scale.tiles
        log(f"scale {index + 1}/{len(plan)}: {scale.hw[1]}x{scale.hw[0]} px in {shape[1]}x{shape[0]} px tiles, "
            f"overlap {t.overlap} px, {' + '.join(str(len(g)) for g in grids)} tiles in {t.passes} "
            f"pass(es), {scale.iterations} iterations each; style targets of the whole image computed once")
        stalled = 0
        for p, boxes in enumerate(grids):
            if tile_runner is not None:
                work = PassWork(run, task, extractors, objectives.shared(index, scale), index, scale, p, image, opt,
                                chosen, log)
                stalled += tile_runner.run_pass(work)
                continue
            for i, box in enumerate(boxes):
                control.check()
                tile = {"tile": i + 1, "tiles": len(boxes), "tile_pass": p + 1}
                start = np.ascontiguousarray(crop(image, box, shape))
                # every tile starts on the chosen path: a float32 finish of one tile is that tile's
                out, _, stall = _optimise(run, objectives, index, scale, box, start, opt, chosen, log, image, tile)
                stalled += stall is not None
                blend(image, out, box, t.overlap)
        if stalled:
            stalls.append(f"scale {index + 1}: {stalled} tile run(s) stopped early (no further decrease)")
        scales.append({**record, "done": run.done - done_before, "precision": choice.name,
                       "tiles": [len(g) for g in grids], "tile": [shape[1], shape[0]], "overlap": t.overlap,
                       "passes": t.passes, **({"tile_runner": tile_runner.describe()} if tile_runner else {})})
    stop = "iterations done" if not stalls else (f"stopped early after {run.done} of {run.total} iterations "
                                                 f"({'; '.join(stalls)})")
    info = {"precision": choice.record(), "precision_fallbacks": run.notes, "scales": scales,
            "evaluations": run.evals.n, "evaluation_seconds": round(run.evals.seconds, 3)}
    if tiled and probed:
        info["precision_tiles"] = choice.record()
    return Result(image, stop, run.done, info)
