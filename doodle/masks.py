"""Label masks through the network: the one helper that brings (H, W, K) masks to every layer's resolution.

Champandard 2016 (arXiv:1603.01768) and the Keras 2 ``neural_doodle`` example: a mask must cover the same
positions as the feature map it weighs, so it goes through the network's own resizing — a 2x2 average
pooling (stride 2, valid) at every pooling layer, and, as the original code did, optionally a 3x3 average
(stride 1, same padding, padding not counted) at every convolution, which widens the mask edge like a
receptive field. Masks of a pixel sum to 1 over the labels before and after.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from nst.features import all_layers


def layer_masks(masks: np.ndarray | tf.Tensor, network: str, layers: list[str],
                smoothing: bool = False) -> dict[str, tf.Tensor]:
    """(H, W, K) masks -> {layer: (h, w, K) float32} at the resolution of each canonical layer in ``layers``.

    Follows ``network``'s layers in order: every ``*_pool`` halves the mask by 2x2 averaging, and with
    ``smoothing`` every ``*_conv*`` averages it over 3x3 neighbours.
    """
    if not layers:
        return {}
    order = all_layers(network)
    last = max(order.index(n) for n in layers)
    x = tf.convert_to_tensor(masks, tf.float32)[None]  # (1, H, W, K)
    out = {}
    for name in order[: last + 1]:
        if name.endswith("pool"):
            x = tf.nn.avg_pool2d(x, 2, 2, "VALID")  # (1, H/2, W/2, K), floor like Keras' pooling
        elif smoothing:
            x = tf.nn.avg_pool2d(x, 3, 1, "SAME")  # TF averages over the in-image neighbours only
        if name in layers:
            out[name] = x[0]
    return out


def semantic_channels(masks: np.ndarray | tf.Tensor, network: str, layer: str) -> tf.Tensor:
    """The masks downsampled to ``layer`` by the network's pooling alone: (H, W, K) -> (h, w, K)."""
    return layer_masks(masks, network, [layer], smoothing=False)[layer]


def resize_masks(masks: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(H, W, K) masks -> (h, w, K) by area averaging (soft edges, still summing to 1 per pixel)."""
    if tuple(masks.shape[:2]) == tuple(hw):
        return masks.astype(np.float32)
    return tf.image.resize(tf.convert_to_tensor(masks, tf.float32), hw, method="area").numpy()
