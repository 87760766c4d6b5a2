"""Keras VGG feature extractor: layers by name, avg or max pooling, Caffe preprocessing.

The network is rebuilt layer by layer with Keras' own layer names (``block4_conv2``) so that
weights load by name, the pooling layers can be average (Gatys et al. 2015, section 2: "improves
the gradient flow") or max (as trained), and the model stops at the deepest layer a run needs.
Layers may be named the paper's way (``conv4_2``, ``pool1``) or Keras' way.
"""

from __future__ import annotations

import difflib
import re

import keras
import numpy as np
import tensorflow as tf

from nst.errors import UserError
from nst.weights import BLOCKS, Weights

# Keras' vgg16/vgg19 preprocess_input ("caffe"): RGB -> BGR, minus the ImageNet mean.
BGR_MEAN = (103.939, 116.779, 123.68)
CHANNELS = (64, 128, 256, 512, 512)


def all_layers(network: str) -> list[str]:
    """Every nameable layer, input to output: block1_conv1, block1_conv2, block1_pool, ..."""
    names = []
    for b, n in enumerate(BLOCKS[network], 1):
        names += [f"block{b}_conv{c}" for c in range(1, n + 1)] + [f"block{b}_pool"]
    return names


def pools_before(layer: str, network: str) -> int:
    """How many 2x2 poolings lie before ``layer`` (its features are 1/2^n of the image)."""
    order = all_layers(network)
    return sum(1 for n in order[: order.index(layer)] if n.endswith("pool"))


def canonical_layer(name: str, network: str) -> str:
    """``conv4_2`` / ``relu4_2`` / ``block4_conv2`` -> ``block4_conv2``; ``pool1`` -> ``block1_pool``."""
    m = re.fullmatch(r"(?:conv|relu)(\d)_(\d)", name)
    canon = f"block{m[1]}_conv{m[2]}" if m else name
    m = re.fullmatch(r"pool(\d)", name)
    canon = f"block{m[1]}_pool" if m else canon
    valid = all_layers(network)
    if canon not in valid:
        paper = [re.sub(r"block(\d)_conv(\d)", r"conv\1_\2", v) for v in valid if "conv" in v]
        close = difflib.get_close_matches(name, paper + valid, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UserError(f"unknown layer '{name}' for {network}: {hint}valid are conv1_1..conv5_{BLOCKS[network][-1]}"
                        " (or block1_conv1 ...) and pool1..pool5")
    return canon


def preprocess(image: tf.Tensor) -> tf.Tensor:
    """(N, H, W, 3) RGB 0..255 -> the BGR, mean-subtracted input VGG was trained on."""
    return image[..., ::-1] - tf.constant(BGR_MEAN, dtype=image.dtype)


def build_vgg(weights: Weights, network: str, pooling: str = "avg", outputs: list[str] | None = None,
              precision: str = "float32") -> keras.Model:
    """A Keras VGG (no top) with ImageNet ``weights``, truncated after the deepest of ``outputs``.

    ``outputs`` are canonical layer names; the model returns a list in that order.
    """
    order = all_layers(network)
    outputs = outputs or [order[-1]]
    last = max(order.index(o) for o in outputs)
    dtype = "mixed_bfloat16" if precision == "bfloat16" else "float32"
    pool_cls = keras.layers.AveragePooling2D if pooling == "avg" else keras.layers.MaxPooling2D
    x = inp = keras.Input(shape=(None, None, 3), name="bgr_input")
    tensors = {}
    for name in order[: last + 1]:
        if name.endswith("pool"):
            layer = pool_cls(2, strides=2, name=name, dtype=dtype)
        else:
            block = int(name[5])
            layer = keras.layers.Conv2D(CHANNELS[block - 1], 3, padding="same", activation="relu", name=name,
                                        dtype=dtype)
        x = tensors[name] = layer(x)
        if not name.endswith("pool"):
            layer.set_weights(list(weights[name]))
    return keras.Model(inp, [tensors[o] for o in outputs], name=f"{network}_{pooling}")


class FeatureExtractor:
    """Calls the VGG on RGB 0..255 images and returns float32 features by canonical layer name."""

    def __init__(self, weights: Weights, network: str, pooling: str, layers: list[str], precision: str = "float32"):
        self.network, self.precision, self.pooling = network, precision, pooling
        self.layers = list(dict.fromkeys(canonical_layer(n, network) for n in layers))
        self.model = build_vgg(weights, network, pooling, self.layers, precision)

    def __call__(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        """``image``: (N, H, W, 3) float32 RGB 0..255 -> {layer: (N, h, w, C) float32}."""
        feats = self.model(preprocess(tf.convert_to_tensor(image, tf.float32)))
        if not isinstance(feats, (list, tuple)):
            feats = [feats]
        return {n: tf.cast(f, tf.float32) for n, f in zip(self.layers, feats)}

    def numpy(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Convenience for one (H, W, 3) image, e.g. to compute targets."""
        return {k: v.numpy() for k, v in self(image[None]).items()}
