"""optimizer.xla and precision: bfloat16 compile through XLA and agree with the float32 objective."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from nst.config import load_config
from nst.objective import value_and_grad
from nst.recipe import TransferRecipe
from nst.transfer import compute_targets, make_extractors, make_objective


def _step(vgg16, content_path, style_path, precision: str, xla: bool):
    cfg = load_config(None, [f"content={content_path}", f"style={style_path}", f"precision={precision}",
                             "layers.style={conv1_1: 0.5, conv2_1: 0.5}", "layers.content={conv2_2: 1}"])
    rng = np.random.default_rng(0)
    content = rng.uniform(0, 255, (32, 32, 3)).astype(np.float32)
    style = rng.uniform(0, 255, (32, 32, 3)).astype(np.float32)
    recipe = TransferRecipe.of(cfg, "vgg16")
    ext = make_extractors(recipe, vgg16[0])(precision if precision != "auto" else "float32")
    objective = make_objective(ext, compute_targets(ext, content, [(style, 1.0)], recipe), recipe)
    x = tf.constant(rng.uniform(0, 255, (1, 32, 32, 3)).astype(np.float32))
    terms, grad = value_and_grad(objective, jit_compile=xla)(x)
    return float(terms["total"]), grad.numpy()


@pytest.mark.slow
def test_xla_and_bfloat16_match_float32(vgg16, content_path, style_path):
    total, grad = _step(vgg16, content_path, style_path, "float32", xla=False)
    total_xla, grad_xla = _step(vgg16, content_path, style_path, "float32", xla=True)
    assert total_xla == pytest.approx(total, rel=1e-4)
    np.testing.assert_allclose(grad_xla, grad, rtol=1e-3, atol=1e-3 * np.abs(grad).max())
    total_bf16, grad_bf16 = _step(vgg16, content_path, style_path, "bfloat16", xla=True)
    assert total_bf16 == pytest.approx(total, rel=0.05)  # bf16 keeps ~3 significant digits per activation
    cosine = (grad_bf16 * grad).sum() / np.linalg.norm(grad_bf16) / np.linalg.norm(grad)
    assert cosine > 0.95
