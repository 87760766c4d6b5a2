"""The objective: a sum of named loss terms over one image, and its compiled loss+gradient step.

pystiche's perceptual loss with minGPT's brevity: an :class:`Objective` holds a feature extractor and
a dict ``{name: term}``; each term is a small callable ``term(features, image) -> weighted scalar``
(:mod:`nst.terms`, :mod:`doodle.terms`). Nothing here knows which terms exist: the optimiser, the
progress event, ``losses.csv``, the plots and the scorer all follow the names an objective returns.

Targets live in the terms as ``tf.Variable`` s, so a caller can give an objective new targets
(the next video frame, the next print tile) and keep its compiled step: :meth:`Objective.step` is
traced once per input shape and reused for every later call.
"""

from __future__ import annotations

from typing import Callable, Protocol

import logging

import numpy as np
import tensorflow as tf

from nst.features import FeatureExtractor

# Every objective (each scale, each probed path, each run of a figure) is its own tf.function by design; TF's
# "excessive retracing" warning about that is noise in our logs. Real retracing is tested (tests/test_engine.py).
tf.get_logger().setLevel(logging.ERROR)


class Term(Protocol):
    layers: list[str]  # canonical layer names this term reads (may be empty, e.g. total variation)

    def __call__(self, feats: dict[str, tf.Tensor], image: tf.Tensor) -> tf.Tensor: ...


class Objective:
    """image (1, H, W, 3) -> {term name: weighted value}; ``step()`` adds "total" and d total / d image."""

    def __init__(self, extractor: FeatureExtractor, terms: dict[str, Term]):
        missing = [n for t in terms.values() for n in t.layers if n not in extractor.layers]
        if missing:
            raise ValueError(f"the extractor does not provide layers {missing}")
        self.extractor, self.terms = extractor, dict(terms)
        self._steps: dict[bool, Callable] = {}

    @property
    def names(self) -> list[str]:
        return list(self.terms)

    def __call__(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        feats = self.extractor(image) if any(t.layers for t in self.terms.values()) else {}
        return {name: tf.cast(term(feats, image), tf.float32) for name, term in self.terms.items()}

    def on_round(self, image: np.ndarray) -> None:
        """Give terms that re-fit something between optimiser rounds (patch matches) the current image."""
        for term in self.terms.values():
            hook = getattr(term, "on_round", None)
            if hook is not None:
                hook(image)

    def fit(self, image: np.ndarray) -> None:
        """Before scoring ``image`` outside an optimiser: terms whose value is defined by a fit to the image
        itself (MRF's nearest style patches) make it; nothing else changes (sliced directions stay)."""
        for term in self.terms.values():
            hook = getattr(term, "fit", None)
            if hook is not None:
                hook(image)

    @property
    def has_rounds(self) -> bool:
        return any(getattr(t, "on_round", None) is not None for t in self.terms.values())

    def step(self, jit_compile: bool = False) -> Callable[[tf.Tensor], tuple[dict, tf.Tensor]]:
        """The compiled image -> ({terms..., "total"}, gradient); one per ``jit_compile``, traced per shape."""
        if jit_compile not in self._steps:
            self._steps[jit_compile] = value_and_grad(self, jit_compile)
        return self._steps[jit_compile]


def value_and_grad(objective: Callable[[tf.Tensor], dict[str, tf.Tensor]], jit_compile: bool = False):
    """Compile ``objective``: image -> ({term: value, "total": value}, d total / d image)."""

    @tf.function(reduce_retracing=True, jit_compile=jit_compile)
    def step(image: tf.Tensor):
        with tf.GradientTape() as tape:
            tape.watch(image)
            terms = objective(image)
            total = tf.add_n([tf.cast(v, tf.float32) for v in terms.values()])
        return {**terms, "total": total}, tape.gradient(total, image)

    return step


def evaluate(objective: Objective, image: np.ndarray) -> dict[str, float]:
    """Every term and the total of one (H, W, 3) image, as floats (through the compiled step)."""
    terms, _ = objective.step()(tf.constant(image[None], tf.float32))
    return {k: float(v) for k, v in terms.items()}
