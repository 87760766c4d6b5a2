"""Gatys et al. 2017's controls without the network: the masked Gram against a numpy oracle, the masks of
spatial control (splits, images, label maps, the rest), the shared mask code, scale control's per-scale
targets, luminance-only inputs, and the config's refusals (one line each)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from nst.colors import luminance, luminance_image, match_luminance
from nst.config import MaskSpec, StyleImage, load_config
from nst.errors import UserError
from nst.masks import layer_masks
from nst.recipe import TransferRecipe
from nst.region_masks import StyleSet, region_masks, split_mask
from nst.spatial import MaskedGramTerm, RegionsTerm, spatial_targets, spatial_terms
from nst.terms import GramTerm

from tests.conftest import CONTENT, STYLE

REPO = Path(__file__).resolve().parents[1]
L1, L2 = "block1_conv1", "block2_conv1"


class StubExtractor:
    """A fixed 1x1 conv 'network' at block1_conv1 and, after a 2x2 average pooling, block2_conv1."""

    network = "vgg16"
    layers = [L1, L2]

    def __init__(self, channels: int = 4, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.k1 = tf.constant(rng.normal(size=(1, 1, 3, channels)), tf.float32)
        self.k2 = tf.constant(rng.normal(size=(1, 1, channels, channels)), tf.float32)

    def __call__(self, image):
        f1 = tf.nn.relu(tf.nn.conv2d(tf.constant(image, tf.float32) / 255.0, self.k1, 1, "SAME"))
        f2 = tf.nn.relu(tf.nn.conv2d(tf.nn.avg_pool2d(f1, 2, 2, "VALID"), self.k2, 1, "SAME"))
        return {L1: f1, L2: f2}


def recipe(form: str = "gram", layers=(L1,)) -> TransferRecipe:
    return TransferRecipe("vgg16", "avg", {L1: 1.0}, {n: 1.0 for n in layers}, 1.0, 1000.0, 0.0, "paper", form)


def oracle_region_loss(f: np.ndarray, m: np.ndarray, a: np.ndarray) -> float:
    """sum (G - A)^2 / (4 C^2) with G = sum_p m_p f_p f_p^T / sum_p m_p, as a loop over positions."""
    c = f.shape[-1]
    g = np.zeros((c, c))
    for p in range(f.shape[0]):
        g += m[p] * np.outer(f[p], f[p])
    g /= m.sum()
    return float(((g - a) ** 2).sum() / (4 * c * c))


# ---------------------------------------------------------------- one mask code


def test_the_mask_code_lives_once_in_nst():
    assert not (REPO / "doodle" / "masks.py").exists()  # (an editable install elsewhere may still map the name)
    import doodle.losses
    import nst.masks

    for name in ("masked_grams", "label_weights", "masked_gram_losses", "masked_gram_loss"):
        assert getattr(doodle.losses, name) is getattr(nst.masks, name), name
    defs = [p for p in [*REPO.glob("nst/**/*.py"), *REPO.glob("doodle/**/*.py")]
            if "def layer_masks" in p.read_text(encoding="utf-8") or "def masked_grams" in p.read_text(encoding="utf-8")]
    assert [p.relative_to(REPO).as_posix() for p in defs] == ["nst/masks.py"]


# ---------------------------------------------------------------- the masked Gram term


def test_masked_gram_term_against_a_numpy_loop():
    rng = np.random.default_rng(0)
    h, w, c, k = 5, 6, 3, 3
    f = rng.normal(size=(1, h, w, c)).astype(np.float32)
    masks = rng.uniform(0, 1, (h, w, k)).astype(np.float32)
    masks[..., 2] = 0.0
    masks[0, 0, 2] = 0.5  # region 3 covers half a position: under MIN_AREA, left out
    targets = rng.normal(size=(k, c, c)).astype(np.float32)
    term = MaskedGramTerm({L1: 0.7}, {L1: masks}, {L1: targets}, [1.0, 0.5, 2.0], weight=10.0)
    got = float(term({L1: tf.constant(f)}, None))
    flat, mflat = f.reshape(-1, c).astype(np.float64), masks.reshape(-1, k).astype(np.float64)
    want = 10.0 * 0.7 * sum(r * oracle_region_loss(flat, mflat[:, i], targets[i])
                            for i, r in enumerate([1.0, 0.5]))
    assert got == pytest.approx(want, rel=1e-4)


def test_a_mask_of_ones_is_the_papers_gram_term():
    rng = np.random.default_rng(1)
    f = tf.constant(rng.normal(size=(1, 6, 7, 4)), tf.float32)
    target = rng.normal(size=(4, 4)).astype(np.float32)
    ones = np.ones((6, 7, 1), np.float32)
    masked = MaskedGramTerm({L1: 1.0}, {L1: ones}, {L1: target[None]}, [1.0], 5.0)({L1: f}, None)
    paper = GramTerm({L1: 1.0}, {L1: target}, 5.0)({L1: f}, None)
    assert float(masked) == pytest.approx(float(paper), rel=1e-5)


def test_spatial_terms_compare_each_region_with_its_own_style_and_pool_the_masks_like_the_network():
    rng = np.random.default_rng(2)
    ext = StubExtractor()
    a, b = (rng.uniform(0, 255, (8, 8, 3)).astype(np.float32) for _ in range(2))
    image = rng.uniform(0, 255, (1, 8, 10, 3)).astype(np.float32)
    masks = np.stack([split_mask(MaskSpec(split="vertical", at=0.4, side="left", feather=0.2), (8, 10)),
                      np.zeros((8, 10), np.float32)], -1)
    masks[..., 1] = 1.0 - masks[..., 0]
    r = recipe(layers=(L1, L2))
    targets = spatial_targets(ext, [(a, 1.0), (b, 3.0)], r)
    term = spatial_terms(targets, r, masks, [1.0, 3.0], "vgg16")["style"]
    pooled = masks.reshape(4, 2, 5, 2, 2).mean(axis=(1, 3))  # the 2x2 average the network's pooling does
    np.testing.assert_allclose(term.masks[L2].numpy(), pooled, atol=1e-6)
    np.testing.assert_allclose(term.masks[L2].numpy(), layer_masks(masks, "vgg16", [L2])[L2].numpy())
    feats = ext(image)
    want = 0.0
    for n in (L1, L2):
        f = feats[n].numpy().reshape(-1, 4).astype(np.float64)
        m = term.masks[n].numpy().reshape(-1, 2).astype(np.float64)
        for i, (style, rw) in enumerate([(a, 1.0), (b, 3.0)]):
            s = ext(style[None])[n].numpy().reshape(-1, 4).astype(np.float64)
            want += rw * oracle_region_loss(f, m[:, i], s.T @ s / s.shape[0])
    assert float(term(feats, image)) == pytest.approx(1000.0 * want, rel=1e-4)


@pytest.mark.parametrize("form", ["covariance", "wasserstein", "sliced_wasserstein", "histogram"])
def test_other_forms_take_one_term_per_region(form):
    rng = np.random.default_rng(3)
    ext = StubExtractor()
    styles = [(rng.uniform(0, 255, (8, 8, 3)).astype(np.float32), 1.0) for _ in range(2)]
    masks = np.zeros((8, 8, 2), np.float32)
    masks[:4, :, 0], masks[4:, :, 1] = 1.0, 1.0
    r = recipe(form)
    terms = spatial_terms(spatial_targets(ext, styles, r), r, masks, [1.0, 1.0], "vgg16")
    regional = terms["style.histogram" if form == "histogram" else "style"]
    assert isinstance(regional, RegionsTerm) and len(regional.terms) == 2
    value = float(regional(ext(styles[0][0][None].repeat(1, 0)), None))
    assert np.isfinite(value) and value >= 0


# ---------------------------------------------------------------- masks from the config


def test_a_horizontal_split_and_its_feather():
    hard = split_mask(MaskSpec(split="horizontal", at=0.5, side="top", feather=0.0), (10, 4))
    assert (hard[:5] == 1).all() and (hard[5:] == 0).all()
    soft = split_mask(MaskSpec(split="horizontal", at=0.5, side="bottom", feather=0.4), (10, 4))[:, 0]
    assert soft[0] == 0 and soft[-1] == 1 and (np.diff(soft) >= 0).all()
    assert 0 < soft[4] < 0.5 < soft[5] < 1  # the border ramps through 0.5 between rows 4 and 5
    right = split_mask(MaskSpec(split="vertical", at=0.25, side="right", feather=0.0), (3, 8))
    assert (right[:, :2] == 0).all() and (right[:, 2:] == 1).all()


def _png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


def test_image_masks_grey_levels_and_label_colours(tmp_path):
    bw = np.zeros((30, 40, 3))
    bw[:, :20] = 255
    m = region_masks([StyleImage("a", mask=MaskSpec(path=str(_png(tmp_path / "bw.png", bw))))], (60, 80))
    assert m.shape == (60, 80, 1)
    assert m[:, :39].min() > 0.99 and m[:, 41:].max() < 0.01
    labels = np.zeros((30, 40, 3))
    labels[:10] = [255, 0, 0]
    labels[10:] = [0, 0, 255]
    path = str(_png(tmp_path / "map.png", labels))
    m = region_masks([StyleImage("a", mask=MaskSpec(path=path, color="#ff0000")),
                      StyleImage("b", mask=MaskSpec(path=path, color="#0000ff"))], (30, 40))
    assert (m[:10, :, 0] == 1).all() and (m[10:, :, 0] == 0).all()
    np.testing.assert_array_equal(m[..., 1], 1 - m[..., 0])


def test_an_entry_without_a_mask_takes_the_rest():
    top = MaskSpec(split="horizontal", at=0.3, side="top", feather=0.1)
    m = region_masks([StyleImage("a", mask=top), StyleImage("b")], (20, 10))
    np.testing.assert_allclose(m[..., 1], 1 - m[..., 0], atol=1e-6)
    assert region_masks([StyleImage("a"), StyleImage("b")], (20, 10)) is None  # no mask anywhere: today's path


def test_mask_refusals(tmp_path):
    black = str(_png(tmp_path / "black.png", np.zeros((30, 40, 3))))
    wide = str(_png(tmp_path / "wide.png", np.full((20, 80, 3), 255)))
    labels = str(_png(tmp_path / "labels.png", np.full((30, 40, 3), [0, 255, 0])))
    text = tmp_path / "not.png"
    text.write_text("not an image")
    cases = {
        "not an image": [StyleImage("a", mask=MaskSpec(path=str(text)))],
        "not found": [StyleImage("a", mask=MaskSpec(path=str(tmp_path / "none.png")))],
        "aspect ratio": [StyleImage("a", mask=MaskSpec(path=wide))],
        "selects nothing": [StyleImage("a", mask=MaskSpec(path=black))],
        "colour #ff0000": [StyleImage("a", mask=MaskSpec(path=labels, color="#ff0000"))],
        "nothing is left": [StyleImage("a", mask=MaskSpec(split="horizontal", at=0.5, side="top", feather=0)),
                            StyleImage("b", mask=MaskSpec(split="horizontal", at=0.5, side="bottom", feather=0)),
                            StyleImage("c")],
    }
    for needle, styles in cases.items():
        with pytest.raises(UserError) as exc:
            region_masks(styles, (60, 80))
        assert needle in str(exc.value) and "\n" not in str(exc.value), (needle, str(exc.value))
        assert "style[" in str(exc.value)


# ---------------------------------------------------------------- config


def _load(tmp_path: Path, *sets: str):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"content: {CONTENT}\nstyle: {STYLE}\noutput_dir: {tmp_path / 'o'}\n", encoding="utf-8")
    return load_config(cfg, list(sets))


def test_mask_shorthand_and_paths_resolve_against_the_config_folder(tmp_path):
    sub = tmp_path / "cfgs"
    sub.mkdir()
    (sub / "c.yaml").write_text(
        f"content: {CONTENT}\nstyle:\n  - path: {STYLE}\n    mask: masks/top.png\n"
        f"scales:\n  - {{size: 0.5, iterations: 10, style: [{{path: s.jpg, mask: {{path: m.png, color: '#00ff00'}}}}]}}\n"
        f"  - {{size: 1.0, iterations: 990}}\n", encoding="utf-8")
    cfg = load_config(sub / "c.yaml")
    assert cfg.style[0].mask == MaskSpec(path=str(sub / "masks" / "top.png"))
    s = cfg.scales[0].style[0]
    assert s.path == str(sub / "s.jpg") and s.mask.path == str(sub / "m.png") and s.mask.color == "#00ff00"
    assert cfg.scales[1].style == []


@pytest.mark.parametrize("setting, needle", [
    ("style=[{path: x.jpg, mask: {}}]", "exactly one of style[0].mask.path"),
    ("style=[{path: x.jpg, mask: {path: m.png, split: horizontal}}]", "got both"),
    ("style=[{path: x.jpg, mask: {path: m.png, color: red}}]", "'#rrggbb'"),
    ("style=[{path: x.jpg, mask: {split: diagonal}}]", "horizontal or vertical"),
    ("style=[{path: x.jpg, mask: {split: horizontal, side: left}}]", "top or bottom"),
    ("style=[{path: x.jpg, mask: {split: vertical, at: 1.5, side: left}}]", "style[0].mask.at"),
    ("style=[{path: x.jpg, mask: {split: vertical, feather: 0.7, side: left}}]", "feather"),
    ("style=[{path: x.jpg, mask: {split: vertical, side: middle}}]", "style[0].mask.side"),
    ("style=[{path: x.jpg, mask: {spilt: vertical}}]", "did you mean 'style[0].mask.split'"),
    ("color.preserve=luminance_onyl", "did you mean 'luminance_only'"),
])
def test_bad_mask_keys_are_one_line(tmp_path, setting, needle):
    with pytest.raises(UserError) as exc:
        _load(tmp_path, setting)
    assert needle in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_mrf_takes_no_masks_and_scales_styles_are_checked_too(tmp_path):
    with pytest.raises(UserError, match=r"style\[0\]\.mask': loss.style_form mrf takes no masks"):
        _load(tmp_path, "loss.style_form=mrf", "style=[{path: x.jpg, mask: {split: vertical, side: left}}]")
    with pytest.raises(UserError, match=r"scales\[0\]\.style\[0\]\.weight' must not be negative"):
        _load(tmp_path, "optimizer.iterations=20",
              "scales=[{size: 0.5, iterations: 10, style: [{path: x.jpg, weight: -1}]}, {size: 1.0, iterations: 10}]")
    for form in ("gram", "covariance", "wasserstein", "sliced_wasserstein", "histogram"):
        _load(tmp_path, f"loss.style_form={form}", "style=[{path: x.jpg, mask: {split: vertical, side: left}}]")


def test_the_video_refuses_the_controls_in_one_line(tmp_path):
    from nst.video.config import load_video_config

    cfg = tmp_path / "v.yaml"
    cfg.write_text(f"content: clip.mp4\nstyle: {STYLE}\noutput_dir: {tmp_path / 'o'}\n", encoding="utf-8")
    for setting, needle in [("color.preserve=luminance_only", "luminance_only is not supported for video"),
                            ("style=[{path: x.jpg, mask: {split: vertical, side: left}}]", "style[].mask"),
                            ("scales=[{size: 0.5, iterations: 500, style: [x.jpg]}, {size: 1.0, iterations: 500}]",
                             "scales[].style")]:
        with pytest.raises(UserError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            load_video_config(cfg, [setting])


# ---------------------------------------------------------------- scale control and luminance, unit level


def test_scale_control_gives_each_scale_its_own_targets():
    from nst.transfer import TransferImages, TransferTask

    rng = np.random.default_rng(4)
    ext = StubExtractor()
    content = rng.uniform(0, 255, (32, 40, 3)).astype(np.float32)
    run_style = rng.uniform(0, 255, (32, 32, 3)).astype(np.float32)
    coarse_style = rng.uniform(0, 80, (32, 32, 3)).astype(np.float32)  # another painting: darker
    task = TransferTask(TransferImages(content, [(run_style, 1.0)], None, [StyleSet([(coarse_style, 1.0)]), None]),
                        recipe())

    def gram(img):
        f = ext(img[None])[L1].numpy().reshape(-1, 4).astype(np.float64)
        return f.T @ f / f.shape[0]

    coarse = task.whole(0, (16, 20), ext).terms["style"].targets[L1].numpy()
    fine = task.whole(1, (32, 40), ext).terms["style"].targets[L1].numpy()
    small = np.asarray(Image.fromarray(coarse_style.astype(np.uint8)).resize((16, 16), Image.LANCZOS), np.float32)
    np.testing.assert_allclose(coarse, gram(small), rtol=1e-4)  # the named style, scaled with the content
    np.testing.assert_allclose(fine, gram(run_style), rtol=1e-4)  # the run's style at the scale naming none


def test_luminance_only_inputs_are_grey_and_the_styles_luminance_is_the_contents():
    from nst.transfer import luminance_only

    rng = np.random.default_rng(5)
    content = np.clip(rng.normal([90, 140, 60], 30, (20, 24, 3)), 0, 255).astype(np.float32)
    style = np.clip(rng.normal([200, 80, 40], 15, (18, 18, 3)), 0, 255).astype(np.float32)
    grey, [(grey_style, w)] = luminance_only(content, [(style, 2.0)])
    assert w == 2.0
    for img in (grey, grey_style):
        assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
    np.testing.assert_allclose(grey[..., 0], np.clip(luminance(content), 0, 255), atol=1e-3)
    ys = grey_style[..., 0].astype(np.float64)
    yc = luminance(content)
    assert ys.mean() == pytest.approx(yc.mean(), abs=0.5) and ys.std() == pytest.approx(yc.std(), rel=0.02)
    np.testing.assert_allclose(luminance_image(grey)[..., 0], grey[..., 0], atol=1e-3)  # grey stays grey
    np.testing.assert_allclose(match_luminance(content, content)[..., 0], luminance(content), atol=1e-3)
