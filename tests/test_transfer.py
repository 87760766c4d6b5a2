"""Engine pieces: style blending, colour preservation, initial images, style scale."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from nst.colors import RGB_TO_YIQ, luminance_transfer, match_color_histogram
from nst.config import load_config
from nst.terms import style_targets
from nst.transfer import RGB_MEAN, initial_image


class StubExtractor:
    """A fixed 1x1 conv 'network' with one layer: enough to check how Grams are blended."""

    network = "vgg16"

    def __init__(self, channels: int = 4, seed: int = 0):
        self.kernel = tf.constant(np.random.default_rng(seed).normal(size=(1, 1, 3, channels)), tf.float32)

    def __call__(self, image):
        return {"block1_conv1": tf.nn.relu(tf.nn.conv2d(tf.constant(image, tf.float32), self.kernel, 1, "SAME"))}


def _gram_over_m(feats: np.ndarray) -> np.ndarray:
    f = feats.reshape(-1, feats.shape[-1]).astype(np.float64)
    return f.T @ f / f.shape[0]


def test_style_blend_is_the_weighted_mean_of_per_image_grams():
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 255, (8, 10, 3)).astype(np.float32)
    b = rng.uniform(0, 255, (12, 6, 3)).astype(np.float32)  # another size: Grams are divided by their own M
    ext = StubExtractor()
    blended = style_targets(ext, [(a, 3.0), (b, 1.0)], ["block1_conv1"])["block1_conv1"].numpy()
    ga = _gram_over_m(ext(a[None])["block1_conv1"].numpy())
    gb = _gram_over_m(ext(b[None])["block1_conv1"].numpy())
    np.testing.assert_allclose(blended, 0.75 * ga + 0.25 * gb, rtol=1e-4)
    only_a = style_targets(ext, [(a, 1.0)], ["block1_conv1"])["block1_conv1"].numpy()
    assert not np.allclose(only_a, blended, rtol=1e-2)


def test_luminance_transfer_keeps_result_luma_and_content_chroma():
    rng = np.random.default_rng(2)
    result = rng.uniform(100, 160, (16, 16, 3))  # in gamut after mixing: no clipping.astype(np.float32)
    content = rng.uniform(100, 160, (16, 16, 3)).astype(np.float32)
    out = luminance_transfer(result, content).astype(np.float64)
    yiq_out, yiq_res, yiq_con = (x.astype(np.float64) @ RGB_TO_YIQ.T for x in (out, result, content))
    np.testing.assert_allclose(yiq_out[..., 0], yiq_res[..., 0], atol=1e-3)
    np.testing.assert_allclose(yiq_out[..., 1:], yiq_con[..., 1:], atol=1e-3)


def test_histogram_matching_gives_the_style_the_contents_colour_statistics():
    rng = np.random.default_rng(3)
    style = np.clip(rng.normal([200, 60, 40], [20, 15, 10], (32, 32, 3)), 0, 255).astype(np.float32)
    content = np.clip(rng.normal([60, 110, 180], [25, 20, 30], (24, 24, 3)), 0, 255).astype(np.float32)
    out = match_color_histogram(style, content).reshape(-1, 3).astype(np.float64)
    c = content.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(out.mean(0), c.mean(0), atol=1.0)
    np.testing.assert_allclose(np.cov(out, rowvar=False), np.cov(c, rowvar=False), rtol=0.05, atol=5.0)


def _cfg(**sets):
    return load_config(None, ["content=x.jpg", "style=y.jpg", *[f"{k}={v}" for k, v in sets.items()]])


def test_initial_images():
    content = np.full((8, 8, 3), 100.0, np.float32)
    np.testing.assert_array_equal(initial_image(_cfg(**{"init.method": "content"}), content), content)
    noise = initial_image(_cfg(**{"init.method": "noise", "init.noise_ratio": 1.0}), content)
    assert np.all(np.abs(noise - RGB_MEAN) <= 20.0)  # the original: uniform(-20, 20) around the mean
    half = initial_image(_cfg(**{"init.method": "noise", "init.noise_ratio": 0.5}), content)
    np.testing.assert_allclose(half, 0.5 * noise + 50.0, atol=1e-4)  # same seed, same noise
    white = initial_image(_cfg(**{"init.method": "random"}), content)
    assert white.min() >= 0 and white.max() <= 255 and white.std() > 50
    other_seed = initial_image(_cfg(**{"init.method": "random", "seed": 1}), content)
    assert not np.array_equal(white, other_seed)
    with pytest.raises(Exception, match="init.path"):
        _cfg(**{"init.method": "file"})
