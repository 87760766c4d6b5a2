"""nst.features: our rebuilt VGG against Keras' own VGG16/VGG19, pooling, layer names, truncation."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from nst.errors import UserError
from nst.features import FeatureExtractor, all_layers, build_vgg, canonical_layer, preprocess
from nst.images import load_image
from nst.weights import conv_names


def keras_features(model: keras.Model, image: np.ndarray, layers: list[str]) -> dict[str, np.ndarray]:
    """Keras' model, fed keras' own preprocess_input (which edits its argument in place: pass a copy)."""
    probe = keras.Model(model.input, [model.get_layer(n).output for n in layers])
    pre = keras.applications.vgg16.preprocess_input(image[None].astype(np.float32).copy())
    outs = probe(pre)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return {n: np.asarray(o) for n, o in zip(layers, outs)}


def assert_features_close(ours: np.ndarray, ref: np.ndarray, name: str):
    assert ours.shape == ref.shape, name
    # rtol 1e-4; the absolute floor is 1e-4 of the layer's largest activation (ReLU zeros, summation order)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()), err_msg=name)


@pytest.fixture(scope="module")
def image64(content_path):
    return load_image(content_path, [64, 64])


def test_preprocess_equals_keras_preprocess_input(image64):
    ours = np.asarray(preprocess(image64[None]))
    ref = keras.applications.vgg16.preprocess_input(image64[None].copy())
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)


LAYERS16 = ["block1_conv1", "block2_conv2", "block3_conv3", "block4_conv2", "block5_conv3", "block5_pool"]


def test_vgg16_max_pooling_equals_keras_vgg16(vgg16_weights, keras_vgg16_imagenet, image64):
    """Real ImageNet VGG16 weights in both; pooling=max is VGG as Keras builds it."""
    ex = FeatureExtractor(vgg16_weights, "vgg16", "max", LAYERS16)
    ours = ex.numpy(image64)
    ref = keras_features(keras_vgg16_imagenet, image64, LAYERS16)
    assert list(ours) == LAYERS16
    for name in LAYERS16:
        assert_features_close(ours[name], ref[name], name)
        assert np.abs(ref[name]).max() > 0, name
    assert ours["block4_conv2"].shape == (1, 8, 8, 512)
    assert ours["block5_pool"].shape == (1, 2, 2, 512)


def random_vgg_weights(network: str, seed: int) -> dict:
    """He-scaled random kernels and random biases, so activations survive 16 layers."""
    rng = np.random.default_rng(seed)
    weights, c_in = {}, 3
    for name in conv_names(network):
        c_out = (64, 128, 256, 512, 512)[int(name[5]) - 1]
        kernel = rng.standard_normal((3, 3, c_in, c_out)).astype(np.float32) * np.sqrt(2.0 / (9 * c_in))
        weights[name] = (kernel, rng.uniform(-0.1, 0.1, c_out).astype(np.float32))
        c_in = c_out
    return weights


def test_vgg19_structure_equals_keras_vgg19_with_random_weights(image64):
    """STRUCTURE equivalence only: both models get the same random (not ImageNet) weights, so this proves our
    VGG19 has Keras' layers, order, padding and pooling. It is not style transfer and says nothing of weights."""
    weights = random_vgg_weights("vgg19", seed=0)
    ref_model = keras.applications.VGG19(weights=None, include_top=False)
    for name, (kernel, bias) in weights.items():
        ref_model.get_layer(name).set_weights([kernel, bias])
    layers = ["block1_conv2", "block2_pool", "block3_conv4", "block4_conv4", "block5_conv4", "block5_pool"]
    ours = FeatureExtractor(weights, "vgg19", "max", layers).numpy(image64)
    ref = keras_features(ref_model, image64, layers)
    for name in layers:
        assert np.abs(ref[name]).max() > 0, name
        assert_features_close(ours[name], ref[name], name)


def test_avg_pooling_differs_from_max_only_after_the_first_pool(vgg16_weights, image64):
    layers = ["block1_conv2", "block2_conv1", "block4_conv2"]
    avg = FeatureExtractor(vgg16_weights, "vgg16", "avg", layers).numpy(image64)
    mx = FeatureExtractor(vgg16_weights, "vgg16", "max", layers).numpy(image64)
    np.testing.assert_array_equal(avg["block1_conv2"], mx["block1_conv2"])  # no pooling before it
    for name in ("block2_conv1", "block4_conv2"):
        assert avg[name].shape == mx[name].shape
        rel = np.abs(avg[name] - mx[name]).mean() / np.abs(mx[name]).mean()
        assert rel > 0.05, (name, rel)
    pool = build_vgg(vgg16_weights, "vgg16", "avg", ["block1_pool"]).get_layer("block1_pool")
    assert isinstance(pool, keras.layers.AveragePooling2D)


@pytest.mark.parametrize("name, want", [
    ("conv4_2", "block4_conv2"), ("block4_conv2", "block4_conv2"), ("relu4_2", "block4_conv2"),
    ("pool1", "block1_pool"), ("conv1_1", "block1_conv1"), ("block5_pool", "block5_pool"),
])
def test_canonical_layer_accepts_paper_and_keras_names(name, want):
    assert canonical_layer(name, "vgg16") == want
    assert canonical_layer(name, "vgg19") == want


def test_canonical_layer_rejects_conv5_4_for_vgg16_with_did_you_mean():
    assert canonical_layer("conv5_4", "vgg19") == "block5_conv4"
    with pytest.raises(UserError) as exc:
        canonical_layer("conv5_4", "vgg16")
    msg = str(exc.value)
    assert "conv5_4" in msg and "vgg16" in msg
    assert "did you mean 'conv5_" in msg
    assert "conv5_3" in msg  # the valid range is named


@pytest.mark.parametrize("bad", ["conv6_1", "block4_conv9", "pool6", "conv4-2", ""])
def test_canonical_layer_rejects_nonsense(bad):
    with pytest.raises(UserError, match="unknown layer"):
        canonical_layer(bad, "vgg19")


def test_model_is_truncated_after_the_deepest_requested_layer(vgg16_weights, image64):
    ex = FeatureExtractor(vgg16_weights, "vgg16", "avg", ["conv1_1"])
    names = [layer.name for layer in ex.model.layers]
    assert "block1_conv1" in names
    assert not [n for n in names if n.startswith("block1_conv2") or "block2" in n or "pool" in n], names
    assert ex.numpy(image64)["block1_conv1"].shape == (1, 64, 64, 64)

    ex = FeatureExtractor(vgg16_weights, "vgg16", "avg", ["conv3_1", "conv1_2"])
    names = [layer.name for layer in ex.model.layers]
    assert names[-1] == "block3_conv1"
    assert "block3_conv2" not in names and "block2_pool" in names
    assert set(ex.layers) == {"block3_conv1", "block1_conv2"}


def test_extractor_dedupes_names_and_keeps_order(vgg16_weights, image64):
    ex = FeatureExtractor(vgg16_weights, "vgg16", "avg", ["conv4_2", "conv1_1", "block4_conv2", "relu1_1"])
    assert ex.layers == ["block4_conv2", "block1_conv1"]
    feats = ex.numpy(image64)
    assert list(feats) == ["block4_conv2", "block1_conv1"]
    assert all(v.dtype == np.float32 for v in feats.values())


def test_all_layers_lists_vgg_in_order():
    assert all_layers("vgg16")[:3] == ["block1_conv1", "block1_conv2", "block1_pool"]
    assert len([n for n in all_layers("vgg16") if "conv" in n]) == 13
    assert len([n for n in all_layers("vgg19") if "conv" in n]) == 16
    assert all_layers("vgg19")[-1] == "block5_pool"
