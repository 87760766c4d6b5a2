"""Automatic semantic maps (doodle/automap.py, doodle/automatch.py, ``python -m doodle.segment``) and the
``auto`` map config: synthetic images with known regions are found (IoU ~ 1), a seed makes maps
reproducible, the region matching pairs regions by what they are (not by label order), the IoU metric
and the Hungarian pairing agree with brute-force oracles, and bad input is one clear error line."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from doodle.automap import (AutoMapOptions, auto_map, drop_thin, guided_filter, merge_thin_regions, merge_tree,
                            pixel_descriptors, remove_small_regions, segment_labels)
from doodle.automatch import auto_pair, match_regions, matched_iou
from nst.errors import UserError

SIZE = 96


def textured(shape_hw, colour, kind: str, rng) -> np.ndarray:
    """A (H, W, 3) float patch of ``colour`` with a texture: 'stripes', 'noise' or 'dots'."""
    h, w = shape_hw
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == "stripes":
        tex = 8 * np.sin(xx * 1.3)
    elif kind == "dots":
        tex = 10 * ((yy % 6 < 2) & (xx % 6 < 2))
    else:
        tex = rng.normal(0, 5, (h, w))
    return np.clip(np.asarray(colour, float) + tex[..., None], 0, 255)


def three_regions(rng, split: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """An image with three known regions (sky-blue stripes on top, green noise bottom-left, brown dots
    bottom-right) and its (H, W) truth labels; ``split`` = the top region's share of the height."""
    truth = np.zeros((SIZE, SIZE), np.int32)
    top = int(SIZE * split)
    truth[top:, : SIZE // 2] = 1
    truth[top:, SIZE // 2:] = 2
    parts = [textured((SIZE, SIZE), c, k, rng) for c, k in
             (((90, 150, 230), "stripes"), ((40, 160, 60), "noise"), ((140, 90, 40), "dots"))]
    image = np.choose(truth[..., None], parts)
    return image.astype(np.float32), truth


def save(rgb: np.ndarray, path: Path) -> Path:
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path)
    return path


# ---------------------------------------------------------------- oracles for the metric and the pairing


def test_matched_iou_equals_brute_force_over_permutations():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, (20, 20))
    pred = np.where(rng.random((20, 20)) < 0.7, (truth + 1) % 3, rng.integers(0, 3, (20, 20)))
    iou, partner = matched_iou(pred, truth)

    def naive(p, t):
        inter = np.logical_and(pred == p, truth == t).sum()
        return inter / np.logical_or(pred == p, truth == t).sum()

    best = max(itertools.permutations(range(3)), key=lambda perm: sum(naive(perm[t], t) for t in range(3)))
    assert [partner[t] for t in range(3)] == list(best)
    assert np.allclose(iou, [naive(best[t], t) for t in range(3)])


def test_matched_iou_unmatched_reference_labels_score_zero():
    truth = np.repeat(np.arange(4), 25).reshape(10, 10)
    iou, partner = matched_iou(np.zeros_like(truth), truth)  # one predicted label for four
    assert (partner >= 0).sum() == 1 and np.count_nonzero(iou) == 1


def test_match_regions_is_the_cheapest_one_to_one_pairing():
    cost = np.random.default_rng(3).random((4, 4))
    m = match_regions(cost)
    best = min(itertools.permutations(range(4)), key=lambda perm: sum(cost[perm[j], j] for j in range(4)))
    assert list(m.b_to_a) == list(best)
    more_b = match_regions(cost[:2])  # B has more regions than A: two stay unmatched
    assert sorted(more_b.b_to_a) == [-1, -1, 0, 1]


# ---------------------------------------------------------------- the method's parts


def test_guided_filter_keeps_edges_that_a_box_filter_blurs():
    guide = np.zeros((40, 40, 3))
    guide[:, 20:] = 1.0
    src = np.zeros((40, 40, 1))
    src[:, 20:] = 1.0
    src_noisy = src + np.random.default_rng(0).normal(0, 0.2, src.shape)
    out = guided_filter(guide, src_noisy, 4, 1e-3)[..., 0]
    assert abs(out[:, 19].mean() - 0.0) < 0.1 and abs(out[:, 20].mean() - 1.0) < 0.1  # the edge stays sharp
    assert out[:, :15].std() < src_noisy[:, :15].std() / 3  # the noise inside is smoothed


def test_thin_regions_are_merged_into_their_neighbours():
    labels = np.zeros((40, 40), np.int32)
    labels[20:, :] = 1
    labels[18:22, :] = 2  # a 4-px seam along the boundary
    labels[:1, :] = 3  # a 1-px strip along the frame
    out = merge_thin_regions(labels, 4, 2.5)
    assert set(np.unique(out)) == {0, 1}
    assert (out[:18] == 0).all() and (out[22:] == 1).all()  # the seam went to the nearer side, row by row
    assert (merge_thin_regions(labels, 4, 1.5) == np.where(labels == 3, 0, labels)).all()  # only the strip is thin


def test_remove_small_regions_fills_speckle_and_holes():
    labels = np.zeros((30, 30), np.int32)
    labels[:, 15:] = 1
    labels[5, 5] = 1  # speckle in region 0
    labels[10:12, 20:22] = 0  # a hole in region 1
    out = remove_small_regions(labels, 10)
    expect = np.zeros((30, 30), np.int32)
    expect[:, 15:] = 1
    assert np.array_equal(out, expect)


def test_descriptors_upsample_every_layer_and_weight_each_group_by_its_variance():
    # layers from conv2_2 (1/2 of the working size) to conv5_3 (1/16): every layer's PCA'd
    # channels are brought to the working size, and each group (layers, Lab, x-y) has total variance = its weight
    opts = AutoMapOptions(layers=("conv2_2", "conv3_3", "conv4_3", "conv5_3"), layer_weights=(1.0, 1.0, 2.0, 3.0),
                          colour_weight=0.7, position_weight=0.5)
    rng = np.random.default_rng(0)
    h, w = 64, 48
    feats = {name: rng.random((h // f, w // f, 12)) for name, f in zip(opts.layers, (2, 4, 8, 16))}
    image = rng.random((h, w, 3)) * 255
    desc = pixel_descriptors(image, feats, opts, seed=0)
    assert desc.shape == (h, w, 4 * opts.pca_dims + 3 + 2)
    groups = np.split(desc.reshape(h * w, -1), np.cumsum([opts.pca_dims] * 4 + [3]), axis=1)
    weights = list(opts.layer_weights) + [opts.colour_weight, opts.position_weight]
    for group, weight in zip(groups, weights):
        assert np.isclose(group.var(axis=0).sum(), weight, rtol=1e-6)
        assert np.allclose(group.mean(axis=0), 0, atol=1e-6)
    # the coarse conv5_3 grid (4x3 cells) is interpolated, not repeated in blocks: neighbours differ smoothly
    conv5 = groups[3].reshape(h, w, -1)
    assert len(np.unique(conv5[..., 0].round(9))) > 4 * 3 * 4


def test_drop_thin_drops_border_strips_and_outlines_not_blobs():
    lab = np.zeros((60, 60), np.int64)
    lab[:, 30:] = 1
    lab[:3, :] = 2  # a strip along the top border
    lab[20:40, 28:32] = 3  # an outline along the edge between 0 and 1
    d2 = np.stack([(lab != i).astype(float) for i in range(4)], -1)
    assert list(drop_thin(d2, 2, 3, 0.3)) == [0, 1]
    kept = list(drop_thin(d2, 3, 3, 0.3))  # never fewer than k: one thin one stays
    assert len(kept) == 3 and kept[:2] == [0, 1]


def test_merge_tree_joins_the_sub_clusters_that_look_alike():
    lab = np.repeat(np.arange(4), 10)[None].repeat(20, 0)  # four vertical bands
    desc = np.zeros((20, 40, 3))
    desc[..., 0] = np.array([0.0, 0.1, 5.0, 5.2])[lab]  # bands 0-1 alike, 2-3 alike; last two = position
    for merge in ("ward", "average", "single", "spectral"):
        levels = merge_tree(desc, lab, 4, AutoMapOptions(merge=merge), 0)
        assert [len(g) for g in levels] == [4, 3, 2, 1]
        assert sorted(sorted(int(i) for i in g) for g in levels[-2]) == [[0, 1], [2, 3]], merge


# ---------------------------------------------------------------- synthetic images with known regions


@pytest.fixture(scope="module")
def synthetic():
    return three_regions(np.random.default_rng(0))


@pytest.mark.slow
def test_known_regions_are_found_with_the_count_chosen_automatically(synthetic):
    image, truth = synthetic
    labels, info = segment_labels(image, None, seed=0)
    # k comes from the silhouette; strips along the frame and seams along the texture boundary, which k-means
    # makes clusters of their own, are dropped (drop_thin) or merged away (merge_thin_regions): three remain
    assert info.k == 3 and info.chosen == "silhouette" and len(info.scores) >= 2
    iou, _ = matched_iou(labels, truth)
    assert iou.min() > 0.95, iou
    assert labels.shape == truth.shape and np.isclose(info.shares.sum(), 1.0)


@pytest.mark.slow
def test_auto_map_is_flat_colours_and_reproducible_with_a_seed(synthetic):
    image, _ = synthetic
    a, info = auto_map(image, 3, seed=5)
    b, _ = auto_map(image, 3, seed=5)
    assert a.dtype == np.uint8 and a.shape == image.shape
    assert np.array_equal(a, b)
    colours = np.unique(a.reshape(-1, 3), axis=0)
    assert len(colours) == 3 and {tuple(c) for c in colours} == {tuple(c) for c in info.palette}


@pytest.mark.slow
def test_pair_matching_follows_the_regions_not_the_label_order():
    """A's top region is its largest (label 0); B's top region is its smallest. Same texture = same colour."""
    rng = np.random.default_rng(2)
    a, truth_a = three_regions(rng, split=0.6)
    b, truth_b = three_regions(rng, split=0.25)
    map_a, map_b, notes = auto_pair(a, None, b, None, labels=3, seed=0)
    for region in range(3):
        colour_a = np.median(map_a[truth_a == region], axis=0)
        colour_b = np.median(map_b[truth_b == region], axis=0)
        assert np.array_equal(colour_a, colour_b), (region, colour_a, colour_b)
    assert any("region matching" in n for n in notes)
    # a hand-painted reference keeps its own colours; the automatic map takes them
    hand = np.choose(truth_a[..., None], [np.array(c, np.uint8) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))])
    _, auto_b, _ = auto_pair(a, hand.astype(np.uint8), b, None, seed=0)
    for region, colour in enumerate(((255, 0, 0), (0, 0, 255), (0, 255, 0))):
        assert tuple(np.median(auto_b[truth_b == region], axis=0)) == colour


# ---------------------------------------------------------------- the CLI


@pytest.fixture
def segment_cli(capsys):
    from conftest import CliResult
    from doodle.segment import main
    from nst.cli import run_main

    def run(argv: list):
        capsys.readouterr()
        rc = run_main(main, [str(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(rc, captured.out, captured.err)

    return run


@pytest.mark.slow
def test_cli_writes_matched_maps_and_a_preview(tmp_path, segment_cli, synthetic):
    image, truth = synthetic
    other, other_truth = three_regions(np.random.default_rng(7), split=0.4)  # same kinds, another layout
    first = save(image, tmp_path / "first.png")
    second = save(other, tmp_path / "second.png")
    res = segment_cli([first, "--labels", "3", "--with", second, "--output", tmp_path / "a_sem.png",
                       "--with-output", tmp_path / "b_sem.png", "--preview", tmp_path / "labels.png"])
    assert res.rc == 0, res.err
    a = np.asarray(Image.open(tmp_path / "a_sem.png").convert("RGB"))
    b = np.asarray(Image.open(tmp_path / "b_sem.png").convert("RGB"))
    for region in range(3):  # the same kind of region has the same colour in both maps
        assert np.array_equal(np.median(a[truth == region], 0), np.median(b[other_truth == region], 0)), region
    assert (tmp_path / "labels.png").is_file() and "region matching" in res.err


def _bad_cases(tmp: Path) -> dict[str, tuple[list, tuple[str, ...]]]:
    two = np.zeros((32, 32, 3))
    two[:, 16:] = 255
    one = np.full((40, 40, 3), 120.0)
    existing = save(two, tmp / "existing_sem.png")
    return {
        "more labels than colours": ([save(two, tmp / "two.png"), "--labels", "5", "--output", tmp / "o.png"],
                                     ("5 labels", "2 distinct colours")),
        "too many labels": ([save(two, tmp / "two.png"), "--labels", "40", "--output", tmp / "o.png"],
                            ("--labels", "between 2 and")),
        "one label": ([save(two, tmp / "two.png"), "--labels", "1", "--output", tmp / "o.png"], ("at least 2",)),
        "one colour": ([save(one, tmp / "one.png"), "--output", tmp / "o.png"], ("one colour", "one.png")),
        "tiny": ([save(two[:8, :8], tmp / "tiny.png"), "--output", tmp / "o.png"], ("too small", "8x8")),
        "missing file": ([tmp / "nope.jpg", "--output", tmp / "o.png"], ("not found", "nope.jpg")),
        "not an image": ([tmp / "notes.txt", "--output", tmp / "o.png"], ("not an image",)),
        "no output folder": ([save(two, tmp / "two.png"), "--output", tmp / "no" / "o.png"], ("does not exist",)),
        "jpeg output": ([save(two, tmp / "two.png"), "--output", tmp / "o.jpg"], (".png",)),
        "existing map": ([save(two, tmp / "two.png"), "--output", existing], ("exists", "--force")),
        "missing --with": ([save(two, tmp / "two.png"), "--with", tmp / "gone.png", "--output", tmp / "o.png",
                            "--with-output", tmp / "p.png"], ("not found", "gone.png")),
        # issue 18
        "seed too large": ([save(two, tmp / "two.png"), "--seed", "4294967296", "--output", tmp / "o.png"],
                           ("--seed", "0..4294967295")),
        "negative seed": ([save(two, tmp / "two.png"), "--seed", "-1", "--output", tmp / "o.png"], ("--seed",)),
        "preview exists": ([save(two, tmp / "two.png"), "--output", tmp / "o.png", "--preview", existing],
                           ("exists", "--force", "--preview")),
        "preview is the input": ([save(two, tmp / "two.png"), "--output", tmp / "o.png", "--preview",
                                  tmp / "two.png", "--force"], ("--preview", "input image")),
        "output is the input": ([save(two, tmp / "two.png"), "--output", tmp / "two.png", "--force"],
                                ("--output", "input image")),
        "with-output is an input": ([save(two, tmp / "two.png"), "--with", existing, "--output", tmp / "o.png",
                                     "--with-output", tmp / "two.png", "--force"], ("--with-output", "input image")),
        "preview is the map": ([save(two, tmp / "two.png"), "--output", tmp / "o.png", "--preview", tmp / "o.png"],
                               ("--preview", "own name")),
        "preview not png": ([save(two, tmp / "two.png"), "--output", tmp / "o.png", "--preview", tmp / "l.jpg"],
                            (".png",)),
        "output links to the input": ([save(two, tmp / "two.png"), "--output", _link(tmp / "two.png", tmp / "k.png"),
                                       "--force"], ("--output", "input image")),
        "output is a folder": ([save(two, tmp / "two.png"), "--output", _folder(tmp / "dir.png"), "--force"],
                               ("--output", "folder")),
    }


def _link(target: Path, link: Path) -> Path:
    if not link.is_symlink():
        link.symlink_to(target)
    return link


def _folder(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    return path


BAD_CASES = ["more labels than colours", "too many labels", "one label", "one colour", "tiny", "missing file",
             "not an image", "no output folder", "jpeg output", "existing map", "missing --with",
             "seed too large", "negative seed", "preview exists", "preview is the input", "output is the input",
             "with-output is an input", "preview is the map", "preview not png", "output links to the input",
             "output is a folder"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_cli_bad_input_is_one_error_line(tmp_path, segment_cli, clean_error, case):
    (tmp_path / "notes.txt").write_text("not a picture")
    cases = _bad_cases(tmp_path)
    assert sorted(cases) == sorted(BAD_CASES)
    argv, needles = cases[case]
    files = lambda: {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}  # noqa: E731
    before = files()
    clean_error(segment_cli(argv), *needles)
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "p.png").exists()
    assert not (tmp_path / "l.jpg").exists()
    # never overwritten without --force, never an input even with it, nothing new
    assert files() == before


def test_labels_beyond_what_the_pixels_allow_is_refused():
    image = np.random.default_rng(0).uniform(0, 255, (16, 16, 3))  # 256 px, 1% min region = 2 px each
    opts = AutoMapOptions(min_region=0.1)  # 25 px per region: at most 10 regions in 256 px
    with pytest.raises(UserError, match="more than a 16x16 px image allows"):
        segment_labels(image, 11, 0, opts)


# ---------------------------------------------------------------- doodle.style_map / content_map: auto


def test_auto_stays_literal_in_a_config_file_and_in_overrides(tmp_path):
    from doodle.config import load_doodle_config

    cfg_path = tmp_path / "sub" / "run.yaml"
    cfg_path.parent.mkdir()
    cfg_path.write_text("style: s.jpg\ncontent: c.jpg\ndoodle:\n  style_map: auto\n  content_map: auto\n")
    cfg = load_doodle_config(cfg_path)
    assert (cfg.doodle.style_map, cfg.doodle.content_map) == ("auto", "auto")
    assert cfg.style == str((cfg_path.parent / "s.jpg").resolve())  # other paths still resolve
    cfg = load_doodle_config(cfg_path, ["doodle.style_map=auto", "doodle.content_map=auto"])
    assert cfg.doodle.style_map == "auto"


@pytest.mark.parametrize("text, needles", [
    ("doodle:\n  target_map: auto\n", ("target_map", "cannot be 'auto'")),
    ("doodle:\n  style_map: auto\n  target_map: doodle.png\n", ("style_map", "doodle.segment")),
])
def test_auto_config_refusals(tmp_path, text, needles):
    from doodle.config import load_doodle_config

    path = tmp_path / "run.yaml"
    path.write_text("style: s.jpg\n" + text)
    with pytest.raises(UserError) as err:
        load_doodle_config(path)
    for needle in needles:
        assert needle in str(err.value)


def test_auto_style_map_without_content_is_refused(tmp_path):
    from doodle.config import load_doodle_config

    path = tmp_path / "run.yaml"
    path.write_text("style: s.jpg\ndoodle:\n  style_map: auto\n")
    with pytest.raises(UserError, match="no content photo"):
        load_doodle_config(path)


@pytest.mark.slow
def test_doodle_run_with_both_maps_auto(tmp_path):
    """load_inputs makes both maps and shares their labels; a tiny doodle run finishes with labels.png."""
    from conftest import CliResult  # noqa: F401  (same helpers as the other CLI tests)
    from doodle.config import load_doodle_config
    from doodle.inputs import load_inputs
    from doodle.run import main
    from nst.cli import run_main

    rng = np.random.default_rng(4)
    style, truth_s = three_regions(rng, split=0.5)
    content, truth_c = three_regions(rng, split=0.35)
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(f"style: {save(style, tmp_path / 'style.png')}\ncontent: {save(content, tmp_path / 'c.png')}\n"
                        "doodle:\n  style_map: auto\n  content_map: auto\n")
    sets = ["image.size=64", "optimizer.iterations=2", "doodle.phases=1", "progress.quiet=true",
            "model.download=false"]
    cfg = load_doodle_config(cfg_path, sets)
    inputs = load_inputs(cfg)
    assert inputs.map_names == ["style_map", "content_map"] and len(inputs.labels.palette) == 3
    for region in range(3):  # the same kind of region has the same label in both maps
        ls = inputs.labels.maps
        assert np.median(ls["style_map"][truth_s == region]) == np.median(ls["content_map"][truth_c == region])
    assert any("region matching" in n for n in inputs.notes)
    out = tmp_path / "out"
    argv = [str(cfg_path), "--output", str(out)] + [a for s in sets for a in ("--set", s)]
    assert run_main(main, argv) == 0
    assert (out / "result.png").is_file() and (out / "labels.png").is_file()
