"""The temporal loss term of Ruder, Dosovitskiy & Brox 2016 (arXiv:1604.08610, eq. 7).

``temporal = weight * sum_p c(p) * |x(p) - w(p)|^2 / D`` with ``x`` the image being optimised, ``w`` the
previous stylised frame warped into this frame, ``c`` the per-pixel consistency weights
(:func:`nst.video.flow.consistency`) and ``D = H * W * 3`` (``form: paper``) or ``D = 1`` (``form: sum``).

A term of the engine's open set (:class:`nst.objective.Objective`): it reads no VGG layers. The warped
frame and the weights live in ``tf.Variable`` s that :meth:`TemporalTerm.set_target` refills for every
frame, so the objective's compiled step is traced once for the clip and reused frame after frame.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from nst.video.config import TEMPORAL_FORMS as FORMS


class TemporalTerm:
    layers: list[str] = []

    def __init__(self, hw: tuple[int, int], weight: float, form: str = "paper"):
        if form not in FORMS:
            raise ValueError(f"unknown temporal form {form!r}")
        h, w = hw
        self.weight = weight
        self.norm = float(h * w * 3) if form == "paper" else 1.0
        self.warped = tf.Variable(tf.zeros((1, h, w, 3)), trainable=False)  # w: previous result, warped
        self.weights = tf.Variable(tf.zeros((1, h, w, 1)), trainable=False)  # c: 0 = not trusted

    def set_target(self, warped: np.ndarray | None, weights: np.ndarray | None) -> None:
        """(H, W, 3) warped previous frame and (H, W) weights; None for both = no temporal pull (first frame)."""
        if warped is None:
            self.weights.assign(tf.zeros_like(self.weights))
            return
        self.warped.assign(tf.constant(warped[None], tf.float32))
        self.weights.assign(tf.constant(weights[None, ..., None], tf.float32))

    def __call__(self, feats: dict[str, tf.Tensor], image: tf.Tensor) -> tf.Tensor:
        diff = tf.cast(image, tf.float32) - self.warped
        return self.weight * tf.reduce_sum(self.weights * tf.square(diff)) / self.norm
