"""Colour preservation (Gatys et al. 2016, "Preserving Color in Neural Artistic Style Transfer").

``luminance``: keep the result's luminance, put back the content's chroma (YIQ), after the run.
``histogram``: before the run, give each style image the content's colour mean and covariance.
``luminance_only`` (Gatys et al. 2017, sec. 5): run on luminance alone -- the content's Y and each style's Y
(its mean and spread matched to the content's, :func:`match_luminance`) as grey RGB images
(:func:`luminance_image`) -- then put the content's chroma back as ``luminance`` does. The style's colours
never reach the network, so only its strokes and light do.
"""

from __future__ import annotations

import numpy as np

RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                       [0.596, -0.274, -0.322],
                       [0.211, -0.523, 0.312]], dtype=np.float64)
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)


def luminance_transfer(result: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Result's Y with the content's I and Q; both (H, W, 3) RGB 0..255 of one size."""
    y = result.astype(np.float64) @ RGB_TO_YIQ.T  # (H, W, 3) YIQ
    iq = content.astype(np.float64) @ RGB_TO_YIQ.T
    mixed = np.concatenate([y[..., :1], iq[..., 1:]], axis=-1)
    return np.clip(mixed @ YIQ_TO_RGB.T, 0, 255).astype(np.float32)


def luminance(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB -> (H, W) float64 Y of YIQ."""
    return img.astype(np.float64) @ RGB_TO_YIQ[0]


def luminance_image(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB -> (H, W, 3) float32 grey image, Y in every channel (what VGG takes)."""
    y = np.clip(luminance(img), 0, 255).astype(np.float32)
    return np.repeat(y[..., None], 3, axis=-1)


def match_luminance(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The style with its luminance moved to the content's mean and standard deviation (the paper's
    L_s' = sigma_c / sigma_s (L_s - mu_s) + mu_c), as a grey RGB image."""
    ys, yc = luminance(style), luminance(content)
    matched = (ys - ys.mean()) * (yc.std() / max(ys.std(), 1e-6)) + yc.mean()
    return np.repeat(np.clip(matched, 0, 255).astype(np.float32)[..., None], 3, axis=-1)


def _sqrtm(cov: np.ndarray, inverse: bool = False) -> np.ndarray:
    vals, vecs = np.linalg.eigh(cov)
    vals = np.maximum(vals, 1e-5)
    return (vecs * (vals ** (-0.5 if inverse else 0.5))) @ vecs.T


def match_color_histogram(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Linear map x' = A (x - mu_s) + mu_c with A C_s A^T = C_c (the paper's Cholesky/PCA variant, eigen form)."""
    s = style.reshape(-1, 3).astype(np.float64)
    c = content.reshape(-1, 3).astype(np.float64)
    mu_s, mu_c = s.mean(0), c.mean(0)
    a = _sqrtm(np.cov(c, rowvar=False)) @ _sqrtm(np.cov(s, rowvar=False), inverse=True)
    out = (s - mu_s) @ a.T + mu_c
    return np.clip(out, 0, 255).reshape(style.shape).astype(np.float32)
