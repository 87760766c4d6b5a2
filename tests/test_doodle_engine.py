"""The doodle engine end to end on Monet -> Coastline at 160 px with the real VGG weights (Champandard 2016).

THE region test: for every label, the mean CIELAB colour of the result inside that label's region is nearer
to the mean colour of Monet's same-label region than to any other label's region — for both methods. Plus:
each region's style loss falls, progress is numbered across phases, phases are planned as documented, and
with no maps the engine still paints (texture synthesis).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from doodle.config import load_doodle_config
from doodle.engine import Scene, initial_image, make_extractors, paint, phase_plan, region_style_losses
from doodle.recipe import DoodleRecipe
from nst.events import Control
from doodle.inputs import load_inputs
from nst.errors import UserError
from nst.features import FeatureExtractor

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SIZE = 160
# method -> overrides for a fast run. gram: 2 phases, since at 160 px a third phase would start at 40 px,
# where conv4_1 has 5x4 positions and the regional Grams cannot place the small rock.
RUNS = {
    "patch": ["optimizer.iterations=100"],
    "gram": ["doodle.method=gram", "doodle.phases=2", "optimizer.iterations=100"],
}

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------- sRGB -> CIELAB (D65), written out


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) sRGB 0..255 -> (..., 3) CIE L*a*b* (D65 white)."""
    c = np.asarray(rgb, np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = linear @ m.T / np.array([0.95047, 1.0, 1.08883])
    d = 6.0 / 29.0
    f = np.where(xyz > d ** 3, np.cbrt(xyz), xyz / (3 * d * d) + 4.0 / 29.0)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def test_srgb_to_lab_known_values():
    np.testing.assert_allclose(srgb_to_lab([255, 255, 255]), [100.0, 0.0, 0.0], atol=0.01)
    np.testing.assert_allclose(srgb_to_lab([0, 0, 0]), [0.0, 0.0, 0.0], atol=0.01)
    np.testing.assert_allclose(srgb_to_lab([255, 0, 0]), [53.24, 80.09, 67.20], atol=0.05)
    np.testing.assert_allclose(srgb_to_lab([128, 128, 128]), [53.59, 0.0, 0.0], atol=0.05)


def region_means(image: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    lab = srgb_to_lab(image)
    return np.array([lab[labels == i].mean(axis=0) for i in range(k)])


# ---------------------------------------------------------------- one run per method, shared by the tests


@pytest.fixture(scope="module")
def weights():
    from nst.weights import load_weights

    return load_weights("auto", None, download=False)


@pytest.fixture(scope="module", params=list(RUNS))
def painted(request, weights):
    from nst.determinism import seed_everything

    method = request.param
    cfg = load_doodle_config(CONFIGS / "doodle_coastline.yaml", [f"image.size={SIZE}", *RUNS[method]])
    inputs = load_inputs(cfg)
    w, info = weights
    seed_everything(cfg.seed)
    extractors = make_extractors(DoodleRecipe.of(cfg, info.network, has_content=False), w)
    events = []
    res = paint(inputs.scene, cfg, extractors=extractors, control=Control([events.append]))
    image, stop = res.image, res.stop
    return method, cfg, inputs, image, events


def test_every_region_takes_the_colour_of_its_style_region(painted):
    method, _, inputs, image, _ = painted
    scene = inputs.scene
    k = scene.target_masks.shape[-1]
    style = region_means(scene.style, scene.style_masks.argmax(-1), k)
    result = region_means(image, scene.target_masks.argmax(-1), k)
    dist = np.linalg.norm(result[:, None, :] - style[None, :, :], axis=-1)  # (result label, style label)
    nearest = dist.argmin(axis=1)
    palette = [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in inputs.labels.palette]
    assert nearest.tolist() == list(range(k)), (
        f"{method}: result regions nearest to style regions {nearest.tolist()} (labels {palette}); "
        f"Lab distances:\n{np.round(dist, 1)}")


def test_every_region_style_loss_falls(painted, weights):
    _, cfg, inputs, image, _ = painted
    w, info = weights
    extractor = FeatureExtractor(w, info.network, cfg.model.pooling, list(cfg.layers.style))
    recipe = DoodleRecipe.of(cfg, info.network, has_content=False)
    start = region_style_losses(extractor, inputs.scene, recipe, initial_image(cfg, inputs.scene))
    end = region_style_losses(extractor, inputs.scene, recipe, image)
    assert np.all(end < 0.5 * start), f"per-label style loss: start {start}, end {end}"


def test_progress_is_numbered_across_phases(painted):
    _, cfg, inputs, image, events = painted
    assert [e.iteration for e in events] == list(range(1, len(events) + 1))
    assert all(b.seconds >= a.seconds for a, b in zip(events, events[1:]))
    sizes = [e.image.shape[:2] for e in events]
    assert sizes[0] < sizes[-1] == inputs.scene.size == image.shape[:2]
    assert len(set(sizes)) == cfg.doodle.phases
    assert image.shape == (*inputs.scene.size, 3) and image.min() >= 0 and image.max() <= 255


# ---------------------------------------------------------------- phases, no maps


def test_phase_plan_halves_sizes_and_splits_iterations():
    cfg = load_doodle_config(None, ["style=a.jpg", "optimizer.iterations=140"])
    plan = phase_plan(cfg, (384, 512), DoodleRecipe.of(cfg, "vgg16", False))
    assert [(s.hw, s.iterations) for s in plan] == [((96, 128), 97), ((192, 256), 32), ((384, 512), 11)]
    even = load_doodle_config(None, ["style=a.jpg", "optimizer.iterations=10", "doodle.phase_iteration_ratio=1"])
    assert [s.iterations for s in phase_plan(even, (384, 512), DoodleRecipe.of(even, "vgg16", False))] == [4, 3, 3]
    tiny = load_doodle_config(None, ["style=a.jpg", "optimizer.iterations=3"])
    assert sum(s.iterations for s in phase_plan(tiny, (384, 512), DoodleRecipe.of(tiny, "vgg16", False))) == 3


def test_phase_plan_refuses_phases_too_small_for_the_network():
    cfg = load_doodle_config(None, ["style=a.jpg", "doodle.phases=4"])
    with pytest.raises(UserError, match="phase 1 would be 20x15 px"):
        phase_plan(cfg, (120, 160), DoodleRecipe.of(cfg, "vgg16", False))  # patch: 3x3 patches at conv4_1 need 24 px


def test_without_maps_it_paints_a_texture(weights):
    from nst.images import load_image

    w, info = weights
    style = load_image(Path(__file__).resolve().parents[1].parent / "shared/data/style/starry_night.jpg", 64)
    cfg = load_doodle_config(None, ["style=a.jpg", "optimizer.iterations=6", "doodle.phases=1"])
    scene = Scene.without_maps(style, (40, 56))
    assert scene.style_masks.shape[-1] == 1 == scene.target_masks.shape[-1]
    events = []
    image = paint(scene, cfg, extractors=make_extractors(DoodleRecipe.of(cfg, info.network, False), w),
                  control=Control([events.append])).image
    assert image.shape == (40, 56, 3) and len(events) >= 1 and events[-1].style < events[0].style
