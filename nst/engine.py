"""The one optimisation engine behind style transfer, doodles, and everything built on them.

A run is a *plan*: a list of :class:`Scale` s, coarse to fine (one scale for the paper's single-size
runs). For each scale the caller's ``build(index, hw, extractor)`` returns an
:class:`nst.objective.Objective` with that scale's targets; the engine starts it from the previous
scale's result upsampled (the first from ``x0``), runs the configured optimiser on the objective's
compiled step, and reports a :class:`nst.events.Progress` per iteration, numbered over the whole plan,
to the :class:`nst.events.Control`'s subscribers (which may cancel).

The numeric path (precision, XLA) comes from :mod:`nst.precision`. When L-BFGS finds no further
decrease on a reduced-precision path before its iterations run out, the engine finishes that scale and
the rest in float32 (bfloat16's rounding can end the line search early; float32 goes on), and records it.
Nothing here reads or writes files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from nst.config import OptimizerConfig
from nst.events import Control, Progress
from nst.features import FeatureExtractor
from nst.objective import Objective
from nst.optimize import OPTIMIZERS
from nst.parameterize import Counter, make as make_parameterization
from nst.precision import Choice, Path_, choose, time_step
from nst.weights import Weights

Log = Callable[[str], None]
Build = Callable[[int, tuple[int, int], FeatureExtractor], Objective]


@dataclass(frozen=True)
class Scale:
    hw: tuple[int, int]  # (height, width) of the image at this scale
    iterations: int


class Extractors:
    """One VGG feature extractor per precision, built when first asked for (they share the weights)."""

    def __init__(self, weights: Weights, network: str, pooling: str, layers: list[str]):
        self.weights, self.network, self.pooling, self.layers = weights, network, pooling, list(layers)
        self._built: dict[str, FeatureExtractor] = {}

    def __call__(self, precision: str = "float32") -> FeatureExtractor:
        if precision not in self._built:
            self._built[precision] = FeatureExtractor(self.weights, self.network, self.pooling, self.layers,
                                                      precision)
        return self._built[precision]


class Fixed:
    """One given extractor standing in for :class:`Extractors`: its precision is the only path."""

    def __init__(self, extractor: FeatureExtractor):
        self.extractor, self.network = extractor, extractor.network

    def __call__(self, precision: str = "float32") -> FeatureExtractor:
        return self.extractor


def as_extractors(extractors: Extractors | FeatureExtractor, precision: str) -> tuple[Extractors | Fixed, str]:
    """(extractors, precision to run): a single FeatureExtractor pins the precision it was built with."""
    if isinstance(extractors, FeatureExtractor):
        return Fixed(extractors), extractors.precision
    return extractors, precision


@dataclass
class Result:
    image: np.ndarray  # (H, W, 3) float32 at the last scale
    stop: str  # why it ended, for people
    iterations: int  # done over all scales
    info: dict = field(default_factory=dict)  # precision path and why, fallbacks, scales: for run.json


def upsample(image: np.ndarray, hw: tuple[int, int], bounded: bool = True) -> np.ndarray:
    """(h, w, 3) -> (H, W, 3) bicubic: the previous scale's result as the next scale's start."""
    if tuple(image.shape[:2]) == tuple(hw):
        return image
    up = tf.image.resize(image[None], hw, method="bicubic")[0].numpy()
    return np.clip(up, 0, 255) if bounded else up


def choose_path(plan: list[Scale], build: Build, extractors: Extractors, x0: np.ndarray, precision: str, xla,
                cache_dir: Path | None, log: Log) -> Choice:
    """The numeric path for this plan, probed (when asked to) at its final, most expensive scale."""
    hw = plan[-1].hw
    image = tf.constant(upsample(x0, hw)[None], tf.float32)
    fastest = [float("inf")]

    def probe(path: Path_) -> tuple[float, float]:
        objective = build(len(plan) - 1, hw, extractors(path.precision))
        # a warm-up 5x slower than the fastest evaluation so far (and over 20 s, compiling included) ends the probe
        seconds, loss = time_step(objective.step(path.xla), image, give_up_after=max(20.0, 5 * fastest[0]))
        fastest[0] = min(fastest[0], seconds)
        return seconds, loss

    work = sum(s.hw[0] * s.hw[1] * s.iterations for s in plan)
    ext = extractors("float32")
    # cached per size and network: max pooling's gradient has no deterministic XLA kernel, avg pooling's has
    key = f"{hw[1]}x{hw[0]} {ext.network}/{getattr(ext, 'pooling', '?')}"
    return choose(precision, xla, probe, key, work, cache_dir, log)


def run_plan(plan: list[Scale], build: Build, extractors: Extractors, x0: np.ndarray, opt: OptimizerConfig,
             control: Control, precision: str = "float32", xla=False, log: Log | None = None,
             cache_dir: Path | None = None, choice: Choice | None = None) -> Result:
    """Optimise through ``plan`` from ``x0`` (at the first scale's size); returns the final image and a record.

    ``choice`` pins the numeric path (e.g. a video reusing one probe for every frame); otherwise it is
    chosen from ``precision`` / ``xla`` (``auto`` probes).
    """
    log = log or (lambda _s: None)
    extractors, precision = as_extractors(extractors, precision)
    choice = choice or choose_path(plan, build, extractors, x0, precision, xla, cache_dir, log)
    log(f"precision: {choice.name} ({choice.why})")
    path = Path_(choice.precision, choice.xla)
    run_optimizer = OPTIMIZERS[opt.method]
    total_its = sum(s.iterations for s in plan)
    start, done, image, evals = time.perf_counter(), 0, x0, Counter()
    notes, scales, stalls = [], [], []
    for index, scale in enumerate(plan):
        control.check()
        image = upsample(image, scale.hw, opt.bounds)
        left, record = scale.iterations, {"width": scale.hw[1], "height": scale.hw[0], "iterations": scale.iterations}
        while left > 0:
            objective = build(index, scale.hw, extractors(path.precision))
            # what the optimiser moves (optimizer.parameterization); pixels: the image itself, as ever
            param = make_parameterization(opt.parameterization, scale.hw, opt.pyramid_levels, opt.bounds)

            def report(terms: dict, params: np.ndarray, _path=path, _param=param) -> None:
                nonlocal done
                done += 1
                vals = {k: float(v) for k, v in terms.items()}
                total = vals.pop("total")
                control.emit(Progress(done, vals, total, time.perf_counter() - start, _param.decode(params),
                                      total_its, index, len(plan), _path.name, evaluations=evals.n))

            rounds, done_before = max(1, min(opt.rounds, left)), done
            try:
                on_round = (lambda z, _p=param: objective.on_round(_p.decode(z))) if objective.has_rounds else None
                out = run_optimizer(evals.count(param.wrap(objective.step(path.xla))), param.encode(image),
                                    param.optimizer_config(opt), left, report, on_round, rounds)
            except tf.errors.OpError as exc:  # a path this objective cannot run (e.g. no deterministic XLA kernel)
                if path == Path_("float32", False) or done != done_before:
                    raise
                note = f"{path.name} failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); float32 runs"
                log(f"notice: {note}")
                notes.append(note)
                path = Path_("float32", False)
                continue
            image, left = param.decode(out.image), left - out.iterations
            if not out.stalled:
                break
            if path.precision != "float32":
                note = (f"{path.name} found no further decrease at iteration {done} (scale {index + 1}); "
                        f"the remaining {left} iterations run in float32")
                log(f"notice: {note}")
                notes.append(note)
                path = Path_("float32", path.xla)
                continue
            stalls.append(f"scale {index + 1}: {out.stop}")
            break
        scales.append({**record, "done": scale.iterations - left, "precision": path.name})
    stop = "iterations done" if done == total_its else f"stopped early after {done} of {total_its} iterations " \
                                                       f"({'; '.join(stalls)})"
    info = {"precision": choice.record(), "precision_fallbacks": notes, "scales": scales, "evaluations": evals.n,
            "evaluation_seconds": round(evals.seconds, 3)}
    return Result(image, stop, done, info)
