"""Image parameterisations: which vector the optimiser moves, and the fixed linear map from it to the pixels.

The optimisers (:mod:`nst.optimize`) minimise a compiled step ``x -> (terms, d total / d x)``. With
``optimizer.parameterization: pixels`` (the default) ``x`` *is* the image and nothing here touches it. The
others optimise a parameter vector ``z`` whose image is ``P z`` for a fixed linear ``P`` (Mordvintsev et al.,
"Differentiable Image Parameterizations", Distill 2018; STROTSS optimises a Laplacian pyramid):

* ``laplacian``: ``z`` = ``pyramid_levels`` coefficient images, the finest at full size, each coarser one half
  the size of the one before; ``P z = z_0 + up(z_1 + up(z_2 + ...))`` with bilinear ``up``. A coarse
  coefficient moves a whole neighbourhood of pixels, so the gradient step reaches the large-scale structure
  that pixel-wise steps build slowly.
* ``decorrelated``: ``z`` holds colours in a decorrelated basis; ``P`` multiplies each pixel by ``COLOUR``, the
  square root of the colour covariance of the sample photos and paintings, so steps along the
  luminance-like axis (sd 115) are larger than along the chroma axes (sd 42, 11).
* ``laplacian_decorrelated``: both, the colour map applied after the pyramid.

The gradient with respect to ``z`` is ``P^T g`` (TensorFlow's vector-Jacobian product of the synthesis). ``z``
starts at the analysis of the start image (``decode(encode(x)) == x``), so every parameterisation starts from
the same image and loss.

Bounds: pixel bounds are not box bounds on ``z`` (a coefficient's range depends on all the others), so
L-BFGS-B gets no box bounds here. With ``optimizer.bounds: true`` the image the objective sees is ``P z``
clipped to 0..255 and the gradient is masked where the clip is active; the loss the optimiser minimises is
then the loss of the very image it returns (the written result is that image), with no penalty weight to
tune. ``bounds: false`` gives the unclipped ``P z`` (the result is clipped when written, as ever).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np
import tensorflow as tf

Step = Callable[[tf.Tensor], tuple[dict, tf.Tensor]]

# Symmetric square root of the RGB covariance (0..255 units) of the 12 photos and paintings in shared/data
# (content/, style/, doodle/*.jpg; each at 256 px), divided by its largest column norm. Computed once with
# numpy.linalg.eigh; eigen-sds 114.7, 41.7, 11.3.
COLOUR = np.array([[0.8431, 0.4744, 0.2534],
                   [0.4744, 0.6495, 0.4797],
                   [0.2534, 0.4797, 0.8051]], np.float32)
NAMES = ("pixels", "laplacian", "decorrelated", "laplacian_decorrelated")


class Counter:
    """Counts loss+gradient evaluations (the benchmark's load-independent cost) and the seconds spent in them
    (the rest of an iteration is the optimiser's own work), without touching their values."""

    def __init__(self):
        self.n, self.seconds = 0, 0.0

    def count(self, step: Step) -> Step:
        def counted(x):
            self.n += 1
            start = time.perf_counter()
            out = step(x)
            self.seconds += time.perf_counter() - start
            return out

        return counted


class Pixels:
    """The identity: the optimiser moves the pixels, with box bounds when the config asks (today's behaviour)."""

    name = "pixels"

    def optimizer_config(self, opt):
        return opt

    def encode(self, image: np.ndarray) -> np.ndarray:
        return image

    def decode(self, params: np.ndarray) -> np.ndarray:
        return params

    def wrap(self, step: Step) -> Step:
        return step


def level_shapes(hw: tuple[int, int], levels: int) -> list[tuple[int, int]]:
    """(h, w) of each pyramid level, finest first; each half (rounded up) of the one before, at least 1 px."""
    shapes = [tuple(hw)]
    for _ in range(levels - 1):
        h, w = shapes[-1]
        shapes.append((max(1, -(-h // 2)), max(1, -(-w // 2))))
    return shapes


class Linear:
    """``image = P z`` for a fixed linear P (a Laplacian pyramid and/or a colour map); z is a flat float32 vector."""

    def __init__(self, hw: tuple[int, int], levels: int = 1, colour: bool = False, bounded: bool = True):
        self.shapes = level_shapes(hw, levels)
        self.sizes = [h * w * 3 for h, w in self.shapes]
        self.colour = tf.constant(COLOUR) if colour else None
        self.bounded = bounded
        self.name = "+".join([*(["laplacian"] if levels > 1 else []), *(["decorrelated"] if colour else [])]) or "linear"
        self._synth = tf.function(self.synthesize, reduce_retracing=True)

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def _levels(self, z: tf.Tensor) -> list[tf.Tensor]:
        parts = tf.split(tf.reshape(z, [-1]), self.sizes)
        return [tf.reshape(p, (1, h, w, 3)) for p, (h, w) in zip(parts, self.shapes)]

    def synthesize(self, z: tf.Tensor) -> tf.Tensor:
        """z (n,) -> P z as (1, H, W, 3), unclipped: coarsest level up, add the next finer, ..., then colour."""
        levels = self._levels(tf.cast(z, tf.float32))
        x = levels[-1]
        for level, (h, w) in zip(reversed(levels[:-1]), reversed(self.shapes[:-1])):
            x = level + tf.image.resize(x, (h, w), method="bilinear")
        if self.colour is not None:
            x = tf.einsum("bhwc,dc->bhwd", x, self.colour)
        return x

    def encode(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) -> z with P z = image: the colour map undone, then the Laplacian analysis (each level keeps
        what the upsampled coarser level misses; the sum telescopes back to the image)."""
        x = tf.constant(np.asarray(image, np.float32)[None])
        if self.colour is not None:
            x = tf.einsum("bhwc,dc->bhwd", x, tf.constant(np.linalg.inv(COLOUR).astype(np.float32)))
        gauss = [x]
        for h, w in self.shapes[1:]:
            gauss.append(tf.image.resize(gauss[-1], (h, w), method="area"))
        coeffs = [g - tf.image.resize(coarser, g.shape[1:3], method="bilinear")
                  for g, coarser in zip(gauss[:-1], gauss[1:])] + [gauss[-1]]
        return np.concatenate([c.numpy().ravel() for c in coeffs]).astype(np.float32)

    def decode(self, params: np.ndarray) -> np.ndarray:
        """z -> the (H, W, 3) float32 image the objective sees (clipped to 0..255 when bounded)."""
        x = self._synth(tf.constant(np.asarray(params, np.float32).ravel()))[0].numpy()
        return np.clip(x, 0.0, 255.0) if self.bounded else x

    def adjoint(self, g: tf.Tensor) -> tf.Tensor:
        """P^T g for an image-shaped g (1, H, W, 3): the vector-Jacobian product of the (linear) synthesis."""
        z = tf.zeros([self.size], tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(z)
            x = self.synthesize(z)
        return tape.gradient(x, z, output_gradients=tf.cast(g, tf.float32))

    def optimizer_config(self, opt):
        """No box bounds on z (see the module docstring); the synthesis clips instead."""
        return dataclasses.replace(opt, bounds=False)

    def wrap(self, step: Step) -> Step:
        """The image step as a step over z: (terms of the image P z, P^T g), g masked where the clip acts."""
        bounded = self.bounded

        @tf.function(reduce_retracing=True)
        def over_params(z: tf.Tensor):
            z = tf.reshape(z, [-1])
            with tf.GradientTape() as tape:
                tape.watch(z)
                raw = self.synthesize(z)
            image = tf.clip_by_value(raw, 0.0, 255.0) if bounded else raw
            terms, grad = step(image)
            if bounded:  # d clip / d raw: 1 inside the range (ends included, so a pixel at 0 or 255 can leave it)
                grad = tf.where((raw >= 0.0) & (raw <= 255.0), grad, tf.zeros_like(grad))
            gz = tape.gradient(raw, z, output_gradients=tf.cast(grad, tf.float32))
            return terms, tf.reshape(gz, [1, -1])

        return over_params


def make(name: str, hw: tuple[int, int], levels: int, bounded: bool) -> Pixels | Linear:
    """The parameterisation ``name`` (one of NAMES) for an image of ``hw`` = (h, w)."""
    if name == "pixels":
        return Pixels()
    if name not in NAMES:
        raise ValueError(f"unknown parameterization {name!r}; known: {', '.join(NAMES)}")
    pyramid = name.startswith("laplacian")
    return Linear(hw, levels if pyramid else 1, colour=name.endswith("decorrelated"), bounded=bounded)
