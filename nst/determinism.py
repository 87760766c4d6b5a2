"""Bit-identical reruns on one machine: one seed for every RNG, deterministic TensorFlow kernels."""

from __future__ import annotations


def seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
