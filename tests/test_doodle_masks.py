"""nst.masks (moved from doodle.masks): label masks follow the network (Keras neural_doodle example; Champandard 2016).

2x2 average pooling at every pool, optional 3x3 smoothing (padding not counted) at every conv; the
masks must have exactly the feature maps' shapes, odd sizes included, and keep summing to 1.
"""

from __future__ import annotations

import numpy as np
import pytest

from nst.masks import layer_masks, resize_masks, semantic_channels
from nst.features import FeatureExtractor, all_layers

LAYERS = ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block3_pool"]


def one_hot(labels: np.ndarray, k: int) -> np.ndarray:
    return np.eye(k, dtype=np.float32)[labels]


@pytest.fixture(scope="module")
def weights():
    from nst.weights import load_weights

    return load_weights("auto", None, download=False)


@pytest.mark.parametrize("smoothing", [False, True])
def test_shapes_match_the_real_features_for_odd_sizes(weights, smoothing):
    w, info = weights
    extractor = FeatureExtractor(w, info.network, "avg", LAYERS)
    feats = extractor.numpy(np.zeros((37, 53, 3), np.float32))
    labels = np.random.default_rng(0).integers(0, 3, (37, 53))
    masks = layer_masks(one_hot(labels, 3), info.network, extractor.layers, smoothing)
    for name in extractor.layers:
        assert masks[name].shape == (*feats[name].shape[1:3], 3), name


@pytest.mark.parametrize("network", ["vgg16", "vgg19"])
@pytest.mark.parametrize("smoothing", [False, True])
def test_masks_keep_summing_to_one(network, smoothing):
    labels = np.random.default_rng(1).integers(0, 4, (33, 20))
    masks = layer_masks(one_hot(labels, 4), network, ["block1_conv2", "block3_conv1", "block5_conv1"], smoothing)
    for name, m in masks.items():
        np.testing.assert_allclose(m.numpy().sum(-1), 1.0, rtol=1e-5, err_msg=name)


def test_pooling_is_2x2_average_without_smoothing():
    m = np.zeros((4, 6, 1), np.float32)
    m[0, 0] = 1.0
    m[2:4, 4:6] = 1.0
    got = layer_masks(m, "vgg16", ["block1_conv2", "block2_conv1"], smoothing=False)
    np.testing.assert_array_equal(got["block1_conv2"].numpy(), m)  # convs leave it alone
    want = np.array([[0.25, 0.0, 0.0], [0.0, 0.0, 1.0]], np.float32)[..., None]
    np.testing.assert_allclose(got["block2_conv1"].numpy(), want)


def test_smoothing_is_3x3_average_over_pixels_inside_the_image():
    m = np.zeros((5, 5, 2), np.float32)
    m[..., 1] = 1.0
    m[2, 2] = [1.0, 0.0]  # one interior pixel of label 0
    m[0, 0] = [1.0, 0.0]  # one corner pixel of label 0
    got = layer_masks(m, "vgg16", ["block1_conv1"], smoothing=True)["block1_conv1"].numpy()
    assert got[2, 2, 0] == pytest.approx(1 / 9)  # the 3x3 around (2,2) holds one label-0 pixel
    assert got[1, 1, 0] == pytest.approx(2 / 9)  # both label-0 pixels are (1,1)'s neighbours
    assert got[0, 0, 0] == pytest.approx(1 / 4)  # a corner averages its 4 in-image pixels only
    assert got[4, 4, 1] == pytest.approx(1.0)  # padding does not dilute a uniform region


def test_smoothing_follows_every_conv_before_the_pool():
    """block1 has two convs: the mask is smoothed twice, then pooled."""
    m = np.zeros((8, 8, 1), np.float32)
    m[3, 3] = 1.0
    got = layer_masks(m, "vgg16", ["block1_conv1", "block1_conv2", "block1_pool"], smoothing=True)
    once, twice = got["block1_conv1"].numpy(), got["block1_conv2"].numpy()
    assert once[3, 3, 0] == pytest.approx(1 / 9)
    assert twice[3, 3, 0] == pytest.approx(9 * (1 / 9) ** 2)  # the 3x3 around (3,3) all hold 1/9 after once
    pooled = got["block1_pool"].numpy()
    np.testing.assert_allclose(pooled[..., 0], twice[..., 0].reshape(4, 2, 4, 2).mean(axis=(1, 3)), rtol=1e-6)
    assert all_layers("vgg16")[:3] == ["block1_conv1", "block1_conv2", "block1_pool"]


def test_semantic_channels_are_pooling_only_and_resize_is_area():
    labels = np.zeros((16, 16), np.int64)
    labels[:, 8:] = 1
    m = one_hot(labels, 2)
    sem = semantic_channels(m, "vgg16", "block3_conv1").numpy()  # two pools: 4x4
    assert sem.shape == (4, 4, 2)
    np.testing.assert_array_equal(sem[:, :2, 0], 1.0)
    np.testing.assert_array_equal(sem[:, 2:, 1], 1.0)
    small = resize_masks(m, (4, 3))  # 16 -> 3 columns: the middle one straddles the edge
    assert small.shape == (4, 3, 2)
    np.testing.assert_allclose(small.sum(-1), 1.0, rtol=1e-6)
    assert 0.0 < small[0, 1, 0] < 1.0
