"""Gatys et al. 2017's controls through real runs on VGG16 at 64 px: each region moves toward its own style,
luminance-only keeps the content's chroma, the shipped example configs run, and bad input through the CLI is
one ``error:`` line, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nst.colors import RGB_TO_YIQ
from nst.config import load_config

from tests.conftest import CONTENT, DATA, STYLE

REPO = Path(__file__).resolve().parents[1]
FAST = ["model.network=vgg16", "model.download=false", "precision=float32", "optimizer.xla=false", "snapshots=[]",
        "image.size=64"]


def _texture(path: Path, colour, seed: int) -> Path:
    """A 64 px stripe texture around one colour: a style whose colour statistics are unmistakable."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:64, :64]
    stripes = (np.sin((x + 2 * y) / 3.0) > 0)[..., None] * 60.0
    img = np.clip(np.array(colour) + stripes - 30 + rng.normal(0, 10, (64, 64, 3)), 0, 255)
    Image.fromarray(img.astype(np.uint8)).save(path)
    return path


def _run(cfg, vgg16, masks=None, scale_styles=None):
    from nst.events import Control
    from nst.inputs import load_controls, load_inputs
    from nst.recipe import TransferRecipe
    from nst.transfer import make_extractors, stylize

    content, styles, _ = load_inputs(cfg, log=lambda _s: None)
    masks, scale_styles = load_controls(cfg, content, log=lambda _s: None)
    events = []
    res = stylize(content, styles, cfg, extractors=make_extractors(TransferRecipe.of(cfg, "vgg16"), vgg16[0]),
                  control=Control([events.append]), masks=masks, scale_styles=scale_styles)
    return content, res, events


def test_each_region_moves_toward_its_own_style(vgg16, tmp_path):
    red = _texture(tmp_path / "red.png", (200, 50, 40), 0)
    blue = _texture(tmp_path / "blue.png", (40, 70, 200), 1)
    cfg = load_config(REPO / "configs" / "spatial_control.yaml", [
        *FAST, "optimizer.iterations=30", "init.method=content", f"output_dir={tmp_path / 'o'}",
        f"style=[{{path: {red}, mask: {{split: horizontal, at: 0.5, side: top, feather: 0.1}}}}, {{path: {blue}}}]"])
    content, res, events = _run(cfg, vgg16)
    h = content.shape[0]
    regions = {"top": slice(0, int(0.4 * h)), "bottom": slice(int(0.6 * h), h)}  # away from the soft border
    # red minus blue separates the two styles (red texture: +160, blue: -160); each region must move its own way
    # (measured at 64 px, 30 iterations: the top's R-B went -76 -> -24 while the content term holds the sky)
    moved = {}
    for region, rows in regions.items():
        start = float(content[rows][..., 0].mean() - content[rows][..., 2].mean())
        end = float(res.image[rows][..., 0].mean() - res.image[rows][..., 2].mean())
        moved[region] = end - start
    assert moved["top"] > 25, moved  # toward the red style
    assert moved["bottom"] < -25, moved  # toward the blue style
    assert events[-1].style < events[0].style / 5  # measured from noise: 9.7x in 20 iterations (docs/CONTROLS.md)


def test_luminance_only_keeps_the_contents_chroma_and_differs_from_the_post_hoc_option(vgg16, tmp_path):
    base = [*FAST, "optimizer.iterations=8", f"output_dir={tmp_path / 'o'}"]
    content, only, _ = _run(load_config(REPO / "configs" / "quick.yaml", [*base, "color.preserve=luminance_only"]),
                            vgg16)
    _, post, _ = _run(load_config(REPO / "configs" / "quick.yaml", [*base, "color.preserve=luminance"]), vgg16)
    yiq_out, yiq_content = only.image.astype(np.float64) @ RGB_TO_YIQ.T, content.astype(np.float64) @ RGB_TO_YIQ.T
    inside = (only.image > 1).all(-1) & (only.image < 254).all(-1)  # clipped pixels cannot keep their chroma
    assert inside.mean() > 0.8
    np.testing.assert_allclose(yiq_out[inside][:, 1:], yiq_content[inside][:, 1:], atol=0.05)
    assert np.abs(only.image - post.image).mean() > 1.0  # optimising on luminance is another image


def test_the_shipped_control_configs_run(vgg16, tmp_path, run_inprocess):
    spatial = run_inprocess([REPO / "configs" / "spatial_control.yaml", *sum((["--set", s] for s in FAST), []),
                             "--set", "optimizer.iterations=3", "--output", tmp_path / "spatial"])
    assert spatial.rc == 0, spatial.err
    assert (tmp_path / "spatial" / "result.png").is_file()
    starry = DATA / "style" / "starry_night.jpg"
    scale = run_inprocess([REPO / "configs" / "scale_control.yaml", *sum((["--set", s] for s in FAST), []),
                           "--set", "optimizer.iterations=4", "--set",
                           f"scales=[{{size: 0.5, iterations: 2, style: [{starry}]}}, {{size: 1.0, iterations: 2}}]",
                           "--output", tmp_path / "scale"])
    assert scale.rc == 0, scale.err
    assert (tmp_path / "scale" / "result.png").is_file()
    assert "starry_night.jpg" in scale.err  # the coarse scale's own style was loaded and named


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], list[str]]]:
    wide = tmp / "wide.png"
    Image.fromarray(np.full((20, 80, 3), 255, np.uint8)).save(wide)
    black = tmp / "black.png"
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(black)
    text = tmp / "text.png"
    text.write_text("not an image")
    split = "{split: horizontal, at: 0.4, side: top}"
    return {
        "mask_not_an_image": ([f"style=[{{path: {STYLE}, mask: {text}}}]"], ["style[0].mask image", "not an image"]),
        "mask_missing": ([f"style=[{{path: {STYLE}, mask: {tmp / 'none.png'}}}]"], ["style[0].mask image", "not found"]),
        "mask_aspect": ([f"style=[{{path: {STYLE}, mask: {wide}}}]"], ["style[0].mask", "aspect ratio"]),
        "mask_selects_nothing": ([f"style=[{{path: {STYLE}, mask: {black}}}]"], ["style[0].mask", "selects nothing"]),
        "nothing_left": ([f"style=[{{path: {STYLE}, mask: {{split: vertical, at: 0.5, side: left, feather: 0}}}}, "
                          f"{{path: {STYLE}, mask: {{split: vertical, at: 0.5, side: right, feather: 0}}}}, "
                          f"{{path: {STYLE}}}]"], ["style[2]", "nothing is left"]),
        "scale_style_missing": (["optimizer.iterations=20", f"scales=[{{size: 0.5, iterations: 10, style: "
                                 f"[{tmp / 'gone.jpg'}]}}, {{size: 1.0, iterations: 10}}]"],
                                ["scales[0].style image", "gone.jpg", "not found"]),
        "mrf_with_mask": (["loss.style_form=mrf", f"style=[{{path: {STYLE}, mask: {split}}}]"],
                          ["style[0].mask", "mrf takes no masks"]),
        "mask_in_tiles": (["image.size=300", "tiles.max_pixels=4096", "tiles.size=64", "tiles.overlap=16",
                           f"style=[{{path: {STYLE}, mask: {split}}}]"], ["cannot run in tiles"]),
        "bad_split": ([f"style=[{{path: {STYLE}, mask: {{split: diagonal}}}}]"], ["style[0].mask.split"]),
    }


CASES = ["bad_split", "mask_aspect", "mask_in_tiles", "mask_missing", "mask_not_an_image", "mask_selects_nothing",
         "mrf_with_mask", "nothing_left", "scale_style_missing"]


def test_the_case_list_is_complete(tmp_path):
    assert sorted(_bad_inputs(tmp_path)) == CASES


@pytest.mark.parametrize("case", CASES)
def test_bad_control_input_is_one_error_line_and_writes_nothing(case, tmp_path, make_config, run_inprocess,
                                                                clean_error):
    settings, needles = _bad_inputs(tmp_path)[case]
    cfg = make_config(name="cfg.yaml")
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.png").write_bytes(b"an earlier run's result")  # must survive a refused run
    argv = [cfg, "--output", out]
    for s in [*FAST, *settings]:
        argv += ["--set", s]
    res = run_inprocess(argv)
    clean_error(res, *needles)
    assert sorted(p.name for p in out.iterdir()) == ["result.png"]
    assert (out / "result.png").read_bytes() == b"an earlier run's result"
