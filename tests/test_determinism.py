"""Same seed, same image, bit for bit; another seed, another image (the seed enters through the init).

In-process runs of the engine (nst.transfer.stylize, real VGG16, 64 px, 5 iterations) seeded the way the CLI
seeds (nst.determinism.seed_everything), plus one pair of CLI runs in two separate processes.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from nst.config import load_config
from nst.images import load_image
from nst.determinism import seed_everything
from nst.events import Control
from nst.recipe import TransferRecipe
from nst.transfer import initial_image, make_extractors, stylize


@pytest.fixture(scope="module")
def inputs(content_path, style_path):
    return load_image(content_path, 64), load_image(style_path, 64)


def engine_run(weights, inputs, content_path, style_path, seed: int, *settings: str):
    cfg = load_config(None, [f"content={content_path}", f"style={style_path}", "model.network=vgg16",
                             "image.size=64", "optimizer.iterations=5", f"seed={seed}", *settings])
    seed_everything(cfg.seed)
    extractors = make_extractors(TransferRecipe.of(cfg, "vgg16"), weights)  # fresh, as in a new run
    events = []
    content, style = inputs
    image = stylize(content, [(style, 1.0)], cfg, extractors=extractors, control=Control([events.append])).image
    return image, [(e.content, e.style, e.tv, e.total) for e in events]


@pytest.mark.parametrize("method", ["lbfgs", "adam"])
def test_same_seed_is_bit_identical(vgg16_weights, inputs, content_path, style_path, method):
    a, log_a = engine_run(vgg16_weights, inputs, content_path, style_path, 7, f"optimizer.method={method}")
    b, log_b = engine_run(vgg16_weights, inputs, content_path, style_path, 7, f"optimizer.method={method}")
    assert a.shape == (48, 64, 3)
    assert len(log_a) == 5
    assert np.array_equal(a, b)
    assert log_a == log_b
    assert log_a[-1][3] < log_a[0][3]  # it did optimise


def test_other_seed_differs_with_noise_init(vgg16_weights, inputs, content_path, style_path):
    a, _ = engine_run(vgg16_weights, inputs, content_path, style_path, 0, "init.method=noise")
    b, _ = engine_run(vgg16_weights, inputs, content_path, style_path, 1, "init.method=noise")
    assert np.abs(a - b).max() > 1.0
    assert np.abs(a - b).mean() > 0.1


def test_seed_only_enters_through_the_init(vgg16_weights, inputs, content_path, style_path):
    """init.method content has no randomness: two seeds give the same image (a control for the test above)."""
    a, _ = engine_run(vgg16_weights, inputs, content_path, style_path, 0, "init.method=content")
    b, _ = engine_run(vgg16_weights, inputs, content_path, style_path, 1, "init.method=content")
    assert np.array_equal(a, b)


@pytest.mark.parametrize("method", ["noise", "random"])
def test_initial_image_is_reproducible(inputs, content_path, style_path, method):
    content, _ = inputs

    def init(seed):
        cfg = load_config(None, [f"content={content_path}", f"style={style_path}", f"seed={seed}",
                                 f"init.method={method}"])
        return initial_image(cfg, content)

    a, b, c = init(3), init(3), init(4)
    assert a.shape == content.shape and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert 0 <= a.min() and a.max() <= 255


@pytest.mark.slow
def test_two_cli_processes_give_the_same_result(tmp_path, run_cli, make_config):
    cfg = make_config()
    args = ["--set", "model.network=vgg16", "--set", "image.size=48", "--set", "optimizer.iterations=4",
            "--set", "seed=5", "--set", "snapshots=[]", "--set", "progress.quiet=true"]
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        res = run_cli([cfg, "--output", out, *args])
        assert res.rc == 0, res.err
    images = [np.asarray(Image.open(o / "result.png")) for o in outs]
    assert np.array_equal(*images)

    def losses(o):
        with open(o / "losses.csv", newline="") as f:
            return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]

    assert losses(outs[0]) == losses(outs[1])
    assert len(losses(outs[0])) == 4
