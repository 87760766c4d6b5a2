"""Optimisers over the image: scipy ``fmin_l_bfgs_b`` (the paper's L-BFGS) and Adam.

An objective maps an image tensor (1, H, W, 3) to its weighted loss terms
``{"content", "style", "tv"}``; gradients come from ``tf.GradientTape`` and cross into scipy
as float64. Progress leaves through a callback after every iteration. Nothing here reads or
writes files.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import tensorflow as tf
from scipy.optimize import fmin_l_bfgs_b

from nst.config import OptimizerConfig
from nst.events import Callback, Progress

Objective = Callable[[tf.Tensor], dict[str, tf.Tensor]]
TERMS = ("content", "style", "tv")


def value_and_grad(objective: Objective, jit_compile: bool = False) -> Callable[[tf.Tensor], tuple[dict, tf.Tensor]]:
    """Compile ``objective`` once: image -> ({term: value, "total": value}, d total / d image)."""

    @tf.function(reduce_retracing=True, jit_compile=jit_compile)
    def step(image: tf.Tensor):
        with tf.GradientTape() as tape:
            tape.watch(image)
            terms = objective(image)
            total = tf.add_n([tf.cast(terms[t], tf.float32) for t in TERMS])
        return {**terms, "total": total}, tape.gradient(total, image)

    return step


def _event(iteration: int, terms: dict, start: float, image: np.ndarray) -> Progress:
    vals = {k: float(terms[k]) for k in (*TERMS, "total")}
    return Progress(iteration, vals["content"], vals["style"], vals["tv"], vals["total"],
                    time.perf_counter() - start, image)


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


RoundHook = Callable[[np.ndarray], None]


def run_lbfgs(objective: Objective, x0: np.ndarray, cfg: OptimizerConfig, callback: Callback,
              on_round: RoundHook | None = None, jit_compile: bool = False) -> tuple[np.ndarray, str]:
    """L-BFGS-B over the pixels; ``cfg.rounds`` fresh starts (memory reset) share the iterations.

    ``on_round(image)``, when given, is called with the current (H, W, 3) image before each round, e.g.
    to refresh targets the objective reads from tf.Variables (no retracing, and the objective stays fixed
    within a round as L-BFGS needs).
    """
    step = value_and_grad(objective, jit_compile)
    shape = (1, *x0.shape)
    last: dict = {}

    def func(x: np.ndarray):
        terms, grad = step(tf.constant(x.reshape(shape), tf.float32))
        last["x"], last["terms"] = x.copy(), terms
        return float(terms["total"]), grad.numpy().astype(np.float64).ravel()

    start, done, stop = time.perf_counter(), 0, "iterations done"
    x = x0.astype(np.float64).ravel()
    bounds = [(0.0, 255.0)] * x.size if cfg.bounds else None

    def on_iteration(xk: np.ndarray):
        nonlocal done
        done += 1
        if not np.array_equal(xk, last.get("x")):  # scipy reports the accepted point; re-evaluate if not cached
            func(xk)
        callback(_event(done, last["terms"], start, xk.reshape(x0.shape).astype(np.float32)))

    for n in _split(cfg.iterations, cfg.rounds):
        if on_round is not None:
            on_round(x.reshape(x0.shape).astype(np.float32))
        maxfun = cfg.max_evals_per_round or 2 * n + 20
        x, _, info = fmin_l_bfgs_b(func, x, bounds=bounds, maxiter=n, maxfun=maxfun, factr=0.0, pgtol=0.0,
                                   callback=on_iteration)
        if info["warnflag"] == 2:  # line search failed: the image is converged as far as float32 allows
            stop = f"stopped early at iteration {done}: {info['task']}"
            break
    return x.reshape(x0.shape).astype(np.float32), stop


def run_adam(objective: Objective, x0: np.ndarray, cfg: OptimizerConfig, callback: Callback,
             on_round: RoundHook | None = None, jit_compile: bool = False) -> tuple[np.ndarray, str]:
    """Adam on the pixels (the original NST script's choice, lr 2.0), clipped to 0..255 when bounded.

    ``on_round(image)``, when given, is called before the first step of each of ``cfg.rounds`` equal parts.
    """
    step = value_and_grad(objective, jit_compile)
    image = tf.Variable(x0[None].astype(np.float32))
    opt = tf.keras.optimizers.Adam(learning_rate=cfg.learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    start = time.perf_counter()
    round_starts = set(np.cumsum([1] + _split(cfg.iterations, cfg.rounds))[:-1].tolist())
    for i in range(1, cfg.iterations + 1):
        if on_round is not None and i in round_starts:
            on_round(image.numpy()[0])
        terms, grad = step(tf.convert_to_tensor(image))
        opt.apply_gradients([(grad, image)])
        if cfg.bounds:
            image.assign(tf.clip_by_value(image, 0.0, 255.0))
        callback(_event(i, terms, start, image.numpy()[0]))
    return image.numpy()[0], "iterations done"


def optimize(objective: Objective, x0: np.ndarray, cfg: OptimizerConfig, callback: Callback,
             on_round: RoundHook | None = None, precision: str = "float32") -> tuple[np.ndarray, str]:
    """Minimise ``objective`` from ``x0`` (H, W, 3); returns (image, why it stopped).

    ``on_round(image)`` (optional) runs before each of ``cfg.rounds`` rounds (see :func:`run_lbfgs`).
    bfloat16 is always XLA-compiled: TF's plain bf16 CPU kernels ran ~9x slower than XLA's on a CPU
    without AVX-512 (README "Speed").
    """
    runner = run_lbfgs if cfg.method == "lbfgs" else run_adam
    return runner(objective, x0, cfg, callback, on_round, jit_compile=cfg.xla or precision == "bfloat16")
