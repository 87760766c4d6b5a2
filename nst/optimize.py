"""Optimisers over the image: scipy ``fmin_l_bfgs_b`` (the paper's L-BFGS) and Adam.

They take a compiled *step* (image -> (named terms with "total", d total / d image), see
:meth:`nst.objective.Objective.step`) and know nothing of which terms exist, of files, of scales or of
precision. Gradients cross into scipy as float64. After every iteration ``report(terms, image)`` is
called; it may raise (Ctrl-C, :class:`nst.events.Cancelled`) to stop the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import tensorflow as tf
from scipy.optimize import fmin_l_bfgs_b

from nst.config import OptimizerConfig

Step = Callable[[tf.Tensor], tuple[dict, tf.Tensor]]
Report = Callable[[dict, np.ndarray], None]  # (terms as tensors incl. "total", image (H, W, 3) float32)
RoundHook = Callable[[np.ndarray], None]


@dataclass(frozen=True)
class Outcome:
    image: np.ndarray  # (H, W, 3) float32
    iterations: int  # iterations done in this call
    stop: str  # why it stopped, for people
    stalled: bool = False  # the line search found no further decrease before the iterations ran out


def split(total: int, parts: int) -> list[int]:
    """``total`` iterations in ``parts`` near-equal rounds."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def run_lbfgs(step: Step, x0: np.ndarray, cfg: OptimizerConfig, iterations: int, report: Report,
              on_round: RoundHook | None = None, rounds: int = 1) -> Outcome:
    """L-BFGS-B over the pixels; ``rounds`` fresh starts (memory reset) share ``iterations``.

    ``on_round(image)``, when given, is called with the current (H, W, 3) image before each round, e.g.
    to refresh targets the objective reads from tf.Variables (no retracing, and the objective stays fixed
    within a round as L-BFGS needs).
    """
    shape = (1, *x0.shape)
    last: dict = {}

    def func(x: np.ndarray):
        terms, grad = step(tf.constant(x.reshape(shape), tf.float32))
        last["x"], last["terms"] = x.copy(), terms
        return float(terms["total"]), grad.numpy().astype(np.float64).ravel()

    done = 0
    x = x0.astype(np.float64).ravel()
    bounds = [(0.0, 255.0)] * x.size if cfg.bounds else None

    def on_iteration(xk: np.ndarray):
        nonlocal done
        done += 1
        if not np.array_equal(xk, last.get("x")):  # scipy reports the accepted point; re-evaluate if not cached
            func(xk)
        report(last["terms"], xk.reshape(x0.shape).astype(np.float32))

    for n in split(iterations, rounds):
        if on_round is not None:
            on_round(x.reshape(x0.shape).astype(np.float32))
        maxfun = cfg.max_evals_per_round or 2 * n + 20
        before = done
        x, _, info = fmin_l_bfgs_b(func, x, bounds=bounds, m=cfg.history, maxiter=n, maxfun=maxfun, factr=0.0, pgtol=0.0,
                                   callback=on_iteration)
        # warnflag 2: the line search failed; 0 with fewer iterations: f stopped decreasing (factr is 0). Both mean
        # no further decrease at this precision. (1: maxfun ran out, the original's rounds habit: go on.)
        if info["warnflag"] == 2 or (info["warnflag"] == 0 and done - before < n):
            task = info["task"].decode() if isinstance(info["task"], bytes) else str(info["task"])
            return Outcome(x.reshape(x0.shape).astype(np.float32), done,
                           f"stopped early at iteration {done}: {task.strip() or 'no further decrease'}", True)
    return Outcome(x.reshape(x0.shape).astype(np.float32), done, "iterations done")


def run_adam(step: Step, x0: np.ndarray, cfg: OptimizerConfig, iterations: int, report: Report,
             on_round: RoundHook | None = None, rounds: int = 1) -> Outcome:
    """Adam on the pixels (the original NST script's choice, lr 2.0), clipped to 0..255 when bounded.

    ``on_round(image)``, when given, is called before the first step of each of ``rounds`` equal parts.
    """
    image = tf.Variable(x0[None].astype(np.float32))
    opt = tf.keras.optimizers.Adam(learning_rate=cfg.learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    round_starts = set(np.cumsum([1] + split(iterations, rounds))[:-1].tolist())
    for i in range(1, iterations + 1):
        if on_round is not None and i in round_starts:
            on_round(image.numpy()[0])
        terms, grad = step(tf.convert_to_tensor(image))
        opt.apply_gradients([(grad, image)])
        if cfg.bounds:
            image.assign(tf.clip_by_value(image, 0.0, 255.0))
        report(terms, image.numpy()[0])
    return Outcome(image.numpy()[0], iterations, "iterations done")


OPTIMIZERS = {"lbfgs": run_lbfgs, "adam": run_adam}
