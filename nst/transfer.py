"""The style-transfer engine: images and a config in, an image out; progress through a callback.

Feature targets are computed once (content features at the content layers, one blended Gram per
style layer), then the image is optimised. No file is read or written here (an ``init.method: file``
image is handed in already loaded), so the CLI, notebooks, figure scripts and the grader all call
the same :func:`stylize`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from nst.colors import luminance_transfer, match_color_histogram
from nst.config import NSTConfig
from nst.events import Callback
from nst.features import FeatureExtractor, canonical_layer
from nst.losses import content_loss, gram_matrix, style_loss, total_variation
from nst.optimize import Objective, optimize
from nst.weights import Weights

# The ImageNet mean in RGB: the centre of the original's "noise" initialisation.
RGB_MEAN = np.array([123.68, 116.779, 103.939], dtype=np.float32)


@dataclass(frozen=True)
class Targets:
    content: dict[str, tf.Tensor]  # layer -> (1, h, w, C) features of the content photo
    grams: dict[str, tf.Tensor]  # layer -> (C, C) weight-blended Gram of the style images, divided by M


def layer_weights(cfg: NSTConfig, network: str) -> tuple[dict[str, float], dict[str, float]]:
    """Content and style layer weights by canonical name (paper names accepted)."""
    content = {canonical_layer(k, network): v for k, v in cfg.layers.content.items()}
    style = {canonical_layer(k, network): v for k, v in cfg.layers.style.items()}
    return content, style


def make_extractor(cfg: NSTConfig, weights: Weights, network: str) -> FeatureExtractor:
    content, style = layer_weights(cfg, network)
    return FeatureExtractor(weights, network, cfg.model.pooling, [*content, *style], cfg.precision)


def style_grams(extractor: FeatureExtractor, styles: list[tuple[np.ndarray, float]],
                layers: list[str]) -> dict[str, tf.Tensor]:
    """Per layer, sum_i w_i G_i / M_i over the style images, weights normalised to sum 1."""
    total = sum(w for _, w in styles)
    grams = {}
    for img, w in styles:
        feats = extractor(img[None])
        for name in layers:
            g = (w / total) * gram_matrix(feats[name], normalize=True)
            grams[name] = grams[name] + g if name in grams else g
    return grams


def compute_targets(extractor: FeatureExtractor, content: np.ndarray, styles: list[tuple[np.ndarray, float]],
                    cfg: NSTConfig) -> Targets:
    content_w, style_w = layer_weights(cfg, extractor.network)
    feats = extractor(content[None])
    return Targets({n: feats[n] for n in content_w}, style_grams(extractor, styles, list(style_w)))


def make_objective(extractor: FeatureExtractor, targets: Targets, cfg: NSTConfig) -> Objective:
    """alpha * sum_l w_l L_content + beta * L_style (eq. 2.7) + tv_weight * TV, as weighted terms."""
    content_w, style_w = layer_weights(cfg, extractor.network)
    alpha, beta, tv = cfg.loss.content_weight, cfg.loss.style_weight, cfg.loss.tv_weight

    def objective(image: tf.Tensor) -> dict[str, tf.Tensor]:
        feats = extractor(image)
        c = tf.constant(0.0)
        for name, w in content_w.items():
            c += w * content_loss(feats[name], targets.content[name], cfg.loss.content_form)
        return {"content": alpha * c,
                "style": beta * style_loss(feats, targets.grams, style_w),
                "tv": tv * total_variation(image)}

    return objective


def initial_image(cfg: NSTConfig, content: np.ndarray, init_file: np.ndarray | None = None) -> np.ndarray:
    """The starting image, reproducible from ``cfg.seed``."""
    rng = np.random.default_rng(cfg.seed)
    method = cfg.init.method
    if method == "content":
        return content.copy()
    if method == "random":  # white noise, as in the paper's figures
        return rng.uniform(0, 255, content.shape).astype(np.float32)
    if method == "file":
        return init_file.astype(np.float32)
    noise = RGB_MEAN + rng.uniform(-20, 20, content.shape).astype(np.float32)  # the original's noise image
    r = cfg.init.noise_ratio
    return np.clip(r * noise + (1 - r) * content, 0, 255).astype(np.float32)


def prepare_styles(cfg: NSTConfig, content: np.ndarray, styles: list[tuple[np.ndarray, float]]):
    if cfg.color.preserve == "histogram":
        return [(match_color_histogram(img, content), w) for img, w in styles]
    return styles


def stylize(content: np.ndarray, styles: list[tuple[np.ndarray, float]], cfg: NSTConfig,
            extractor: FeatureExtractor, callback: Callback, init_file: np.ndarray | None = None
            ) -> tuple[np.ndarray, str]:
    """Paint ``content`` (H, W, 3, 0..255) in the blended style of ``styles`` [(image, weight)].

    Returns the final image and the optimiser's stop reason.
    """
    styles = prepare_styles(cfg, content, styles)
    targets = compute_targets(extractor, content, styles, cfg)
    objective = make_objective(extractor, targets, cfg)
    image, stop = optimize(objective, initial_image(cfg, content, init_file), cfg.optimizer, callback,
                           precision=cfg.precision)
    if cfg.color.preserve == "luminance":
        image = luminance_transfer(image, content)
    return image, stop
