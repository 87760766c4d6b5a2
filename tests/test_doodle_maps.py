"""Tests for doodle/maps.py: semantic maps -> label maps (Champandard 2016 neural doodles)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from doodle.maps import (
    LabelSet,
    find_labels,
    label_masks,
    load_map,
    match_map_to_image,
    pair_map_path,
    render_labels_png,
    to_hex,
)
from nst.errors import UserError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "doodle"
needs_data = pytest.mark.skipif(not (DATA / "Monet_sem.png").is_file(),
                                reason=f"sample semantic maps not found in {DATA}")

# Black and red are neighbours; dark red (#800000) is their sRGB midpoint but is painted elsewhere,
# so a plain nearest-colour rule would label the red/black anti-aliased edge as dark red.
COLOURS = np.array([[0, 0, 0], [255, 0, 0], [128, 0, 0], [0, 0, 255]], dtype=np.uint8)


def _layout(h: int, w: int, s: int = 1, flip: bool = False) -> np.ndarray:
    """Truth labels at s-times supersampling: background 0, disk 1, rectangle 2, sloped sea 3."""
    yy, xx = (np.mgrid[0:h * s, 0:w * s] + 0.5) / s
    if flip:
        xx = w - xx
    lab = np.zeros(yy.shape, dtype=np.int64)
    lab[yy > 0.7 * h + 0.15 * (xx - w / 2)] = 3
    lab[(yy - 0.35 * h) ** 2 + (xx - 0.3 * w) ** 2 < (0.2 * h) ** 2] = 1
    lab[(np.abs(yy - 0.3 * h) < 0.15 * h) & (np.abs(xx - 0.75 * w) < 0.12 * w)] = 2
    return lab


def _antialiased(h=96, w=128, s=4, flip=False):
    """Map rendered at 4x and box-downsampled (real anti-aliasing) + per-pixel sets of covering labels."""
    big = _layout(h, w, s, flip)
    rgb = COLOURS[big].reshape(h, s, w, s, 3).astype(np.float64).mean(axis=(1, 3))
    blocks = big.reshape(h, s, w, s).transpose(0, 2, 1, 3).reshape(h, w, s * s)
    return np.rint(rgb).astype(np.uint8), blocks


def _blurred(h=96, w=128, sigma=1.2, flip=True):
    """Hard-edged map blurred with a Gaussian (a soft brush) + its hard truth labels."""
    truth = _layout(h, w, 1, flip)
    rgb = ndimage.gaussian_filter(COLOURS[truth].astype(np.float64), sigma=(sigma, sigma, 0))
    return np.rint(rgb).astype(np.uint8), truth


def _palette_index(label_set: LabelSet) -> np.ndarray:
    """truth colour index -> label id (asserts every COLOURS entry is in the palette)."""
    hexes = [to_hex(c) for c in label_set.palette]
    return np.array([hexes.index(to_hex(c)) for c in COLOURS])


def _flat_map(spec: list[tuple[tuple[int, int, int], slice, slice]], h=64, w=64, bg=(255, 255, 255)):
    """A hard-edged map: background colour, then rectangles of given colours."""
    rgb = np.empty((h, w, 3), dtype=np.uint8)
    rgb[:] = bg
    for colour, ys, xs in spec:
        rgb[ys, xs] = colour
    return rgb


def _two_region(h=64, w=64, a=(255, 0, 0), b=(0, 0, 255)):
    """Left half colour a, right half colour b."""
    return _flat_map([(b, slice(None), slice(w // 2, None))], h, w, bg=a)


# --------------------------------------------------------------------------- palette mode, synthetic


@pytest.fixture(scope="module")
def synthetic():
    """Anti-aliased style map, blurred target map and their palette-mode labels."""
    style, blocks = _antialiased()
    target, truth = _blurred()
    label_set, warns = find_labels({"style_map": style, "target_map": target})
    return style, blocks, target, truth, label_set, warns


def test_palette_recovers_exactly_the_painted_colours(synthetic):
    style, _, target, _, label_set, warns = synthetic
    assert sorted(to_hex(c) for c in label_set.palette) == sorted(to_hex(c) for c in COLOURS)
    assert len(np.unique(style.reshape(-1, 3), axis=0)) > 20  # the edges really are anti-aliased
    assert len(np.unique(target.reshape(-1, 3), axis=0)) > 50
    assert label_set.palette.dtype == np.uint8 and label_set.palette.shape == (4, 3)
    assert warns == []


def test_palette_labels_interior_pixels_exactly(synthetic):
    _, blocks, _, truth, label_set, _ = synthetic
    to_label = _palette_index(label_set)
    pure = (blocks == blocks[..., :1]).all(axis=-1)
    assert (label_set.maps["style_map"][pure] == to_label[blocks[..., 0][pure]]).all()
    # Blurred target: pixels at least 4 px from any boundary are interior.
    inner = np.ones(truth.shape, dtype=bool)
    for k in range(len(COLOURS)):
        region = truth == k
        inner &= ~(ndimage.binary_dilation(region, iterations=4) & ~ndimage.binary_erosion(region, iterations=4))
    assert inner.mean() > 0.5
    assert (label_set.maps["target_map"][inner] == to_label[truth[inner]]).all()


def test_palette_edge_pixels_take_a_neighbouring_label(synthetic):
    _, blocks, _, truth, label_set, _ = synthetic
    to_label = _palette_index(label_set)
    style_labels = label_set.maps["style_map"]
    mixed = ~(blocks == blocks[..., :1]).all(axis=-1)
    assert mixed.sum() > 200
    for y, x in zip(*np.nonzero(mixed)):
        covering = set(to_label[np.unique(blocks[y, x])])
        assert style_labels[y, x] in covering, (y, x, blocks[y, x])
        counts = np.bincount(blocks[y, x], minlength=len(COLOURS))
        if counts.max() >= 12:  # a clear majority (3/4 of the sub-pixels) wins
            assert style_labels[y, x] == to_label[np.argmax(counts)]
    # Blurred target: each pixel's label is a truth label within 4 px of it.
    target_labels = label_set.maps["target_map"]
    near = np.stack([ndimage.binary_dilation(truth == k, iterations=4) for k in range(len(COLOURS))], axis=-1)
    allowed = near[..., np.argsort(to_label)]  # reorder truth index -> label id
    assert np.take_along_axis(allowed, target_labels[..., None], axis=-1).all()


def test_red_black_edge_is_not_labelled_as_dark_red(synthetic):
    _, blocks, _, _, label_set, _ = synthetic
    dark_red = _palette_index(label_set)[2]
    near_rect = ndimage.binary_dilation((blocks == 2).any(axis=-1), iterations=1)
    assert (label_set.maps["style_map"][~near_rect] != dark_red).all()


def test_label_set_shapes_dtypes_shares_and_describe(synthetic):
    style, _, target, _, label_set, _ = synthetic
    assert label_set.maps["style_map"].shape == style.shape[:2]
    assert label_set.maps["target_map"].shape == target.shape[:2]
    for name, labels in label_set.maps.items():
        assert labels.dtype == np.int32
        assert labels.min() >= 0 and labels.max() < len(label_set.palette)
        shares = label_set.shares[name]
        assert shares.shape == (4,)
        assert shares.sum() == pytest.approx(1.0)
        assert np.allclose(shares, np.bincount(labels.ravel(), minlength=4) / labels.size)
    mean = (label_set.shares["style_map"] + label_set.shares["target_map"]) / 2
    assert (np.diff(mean) <= 0).all()  # labels ordered by mean share
    text = label_set.describe()
    lines = text.splitlines()
    assert len(lines) == 2 + 4 and "style_map" in lines[1] and "target_map" in lines[1]
    for k, colour in enumerate(label_set.palette):
        assert to_hex(colour) in lines[2 + k]
        assert f"{100 * label_set.shares['target_map'][k]:.1f}%" in lines[2 + k]


def test_near_duplicate_flat_colours_merge_into_one_label():
    style = _flat_map([((0, 0, 255), slice(0, 40), slice(None))])
    target = _flat_map([((0, 0, 251), slice(0, 20), slice(None))])
    label_set, _ = find_labels({"style_map": style, "target_map": target})
    assert sorted(to_hex(c) for c in label_set.palette) == ["#0000ff", "#ffffff"]
    blue = [to_hex(c) for c in label_set.palette].index("#0000ff")
    assert (label_set.maps["target_map"][:20] == blue).all()


def test_count_in_palette_mode_keeps_the_most_frequent_colours():
    style = _flat_map([((255, 0, 0), slice(0, 30), slice(None)), ((0, 255, 0), slice(30, 50), slice(None)),
                       ((0, 0, 255), slice(50, 54), slice(None))])
    label_set, warns = find_labels({"style_map": style, "target_map": style}, count=3)
    assert sorted(to_hex(c) for c in label_set.palette) == ["#00ff00", "#ff0000", "#ffffff"]
    assert any("#0000ff" in w for w in warns)
    label_set, warns = find_labels({"style_map": style, "target_map": style}, count=6)
    assert len(label_set.palette) == 4 and any("only 4" in w for w in warns)


# --------------------------------------------------------------------------- k-means mode


def test_kmeans_recovers_regions_up_to_permutation_and_is_deterministic():
    style, blocks = _antialiased()
    target, truth = _blurred()
    maps = {"style_map": style, "target_map": target}
    first, _ = find_labels(maps, mode="kmeans", count=4)
    second, _ = find_labels(maps, mode="kmeans", count=4)
    assert np.array_equal(first.palette, second.palette)
    for name in maps:
        assert np.array_equal(first.maps[name], second.maps[name])
    pure = (blocks == blocks[..., :1]).all(axis=-1)
    got, want = first.maps["style_map"][pure], blocks[..., 0][pure]
    table = np.zeros((4, 4), dtype=np.int64)
    np.add.at(table, (want, got), 1)
    assert (np.count_nonzero(table, axis=1) == 1).all()  # every region is one cluster...
    assert len(set(np.argmax(table, axis=1))) == 4  # ...and a different one for each region
    # Rounded centres stay within a few levels of the painted colours.
    cluster_of = np.argmax(table, axis=1)
    assert np.abs(first.palette[cluster_of].astype(int) - COLOURS.astype(int)).max() <= 12


def test_kmeans_needs_a_count_and_enough_colours():
    style = _two_region()
    with pytest.raises(UserError, match="needs a label count"):
        find_labels({"style_map": style, "target_map": style}, mode="kmeans")
    with pytest.raises(UserError, match="only 2 distinct colours"):
        find_labels({"style_map": style, "target_map": style}, mode="kmeans", count=3)


# --------------------------------------------------------------------------- validation


def test_unknown_mode_and_bad_count_are_user_errors():
    style = _two_region()
    with pytest.raises(UserError, match="unknown semantic label mode 'hsv'"):
        find_labels({"style_map": style, "target_map": style}, mode="hsv")
    with pytest.raises(UserError, match="at least 2"):
        find_labels({"style_map": style, "target_map": style}, count=1)
    with pytest.raises(UserError, match="min_share"):
        find_labels({"style_map": style, "target_map": style}, min_share=0)


def test_doodle_colour_absent_from_style_map_is_an_error_naming_it():
    style = _flat_map([((255, 0, 0), slice(0, 32), slice(None))])
    target = _flat_map([((255, 0, 0), slice(0, 16), slice(None)), ((255, 128, 0), slice(40, 60), slice(None))])
    with pytest.raises(UserError) as err:
        find_labels({"style_map": style, "target_map": target},
                    paths={"style_map": "/x/Monet_sem.png", "target_map": "/x/Coast_sem.png"})
    msg = str(err.value)
    assert "\n" not in msg
    assert "#ff8000" in msg and "#ff0000" in msg and "#ffffff" in msg
    assert "Coast_sem.png" in msg and "Monet_sem.png" in msg


def test_content_map_colour_absent_from_style_map_is_an_error_too():
    style = _two_region()
    content = _flat_map([((0, 255, 0), slice(0, 20), slice(None))], bg=(255, 0, 0))
    with pytest.raises(UserError, match=r"content_map uses .*#00ff00"):
        find_labels({"style_map": style, "target_map": style, "content_map": content})


def test_tiny_style_region_still_counts_as_a_counterpart():
    # 8x8 of 128x128 = 0.39% is fine; the doodle may use the colour a lot.
    style = _flat_map([((0, 0, 255), slice(0, 64), slice(None)), ((0, 255, 0), slice(100, 108), slice(8, 16))],
                      h=128, w=128)
    target = _flat_map([((0, 255, 0), slice(0, 32), slice(None))], bg=(0, 0, 255))
    label_set, _ = find_labels({"style_map": style, "target_map": target})
    assert "#00ff00" in [to_hex(c) for c in label_set.palette]


@pytest.mark.parametrize("kind", ["noise", "gradient", "gradient2d"])
def test_photo_like_map_is_an_error_naming_it(kind):
    rng = np.random.default_rng(1)
    h, w = 64, 256
    if kind == "noise":
        photo = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    elif kind == "gradient":  # each column its own colour
        photo = np.broadcast_to(np.arange(w, dtype=np.uint8)[None, :, None], (h, w, 3)).copy()
    else:
        yy, xx = np.mgrid[0:h, 0:w]
        photo = np.stack([xx, yy * 4, 255 - xx], axis=-1).astype(np.uint8)
    style = _two_region(h, w)
    with pytest.raises(UserError, match=r"^target_map \(photo\.png\) does not look like a semantic map"):
        find_labels({"style_map": style, "target_map": photo}, paths={"target_map": "photo.png"})
    with pytest.raises(UserError, match="does not look like a semantic map"):
        find_labels({"style_map": photo, "target_map": style}, mode="kmeans", count=2)


@needs_data
def test_a_real_photo_given_as_style_map_is_an_error():
    photo = load_map(DATA / "Monet.jpg")
    target = load_map(DATA / "Coastline_sem.png")
    with pytest.raises(UserError, match=r"style_map \(Monet\.jpg\) does not look like a semantic map"):
        find_labels({"style_map": photo, "target_map": target}, paths={"style_map": DATA / "Monet.jpg"})


def test_one_colour_style_map_is_an_error():
    style = np.full((32, 32, 3), 200, dtype=np.uint8)
    with pytest.raises(UserError, match=r"style_map has one colour \(#c8c8c8\); a semantic map needs at least two"):
        find_labels({"style_map": style, "target_map": _two_region()})


def test_one_colour_target_map_is_fine():
    style = _two_region()
    target = np.full((32, 32, 3), 255, dtype=np.uint8)
    target[..., 1:] = 0
    label_set, _ = find_labels({"style_map": style, "target_map": target})
    red = [to_hex(c) for c in label_set.palette].index("#ff0000")
    assert (label_set.maps["target_map"] == red).all()


def test_close_palette_colours_give_a_warning_not_an_error():
    style = _flat_map([((255, 0, 0), slice(0, 20), slice(None)), ((240, 20, 16), slice(20, 40), slice(None))])
    label_set, warns = find_labels({"style_map": style, "target_map": style})
    assert len(label_set.palette) == 3
    assert len(warns) == 1 and "#ff0000" in warns[0] and "#f01410" in warns[0]
    _, warns = find_labels({"style_map": style, "target_map": style}, close_distance=10)
    assert warns == []


def test_programming_errors_are_value_errors():
    with pytest.raises(ValueError, match="source"):
        find_labels({"target_map": _two_region()})
    with pytest.raises(ValueError, match="uint8"):
        find_labels({"style_map": _two_region().astype(np.float32)})


# --------------------------------------------------------------------------- real sample maps


@pytest.fixture(scope="module")
def monet_coastline():
    if not (DATA / "Monet_sem.png").is_file():
        pytest.skip(f"sample semantic maps not found in {DATA}")
    maps = {"style_map": load_map(DATA / "Monet_sem.png"), "target_map": load_map(DATA / "Coastline_sem.png")}
    return maps, find_labels(maps)


MONET_PALETTE = ["#ffffff", "#ff331f", "#0000ff", "#00ff00", "#c00000"]


def test_monet_coastline_palette(monet_coastline):
    maps, (label_set, warns) = monet_coastline
    assert [to_hex(c) for c in label_set.palette] == MONET_PALETTE  # sky, rocks, sea, grass, sun/cave
    assert warns == []
    for name in maps:
        assert label_set.shares[name].sum() == pytest.approx(1.0)
        assert len(np.unique(maps[name].reshape(-1, 3), axis=0)) > 250  # hundreds of edge colours in the file
    used = label_set.shares["target_map"] > 0
    assert (label_set.shares["style_map"][used] > 0.05).all()  # every Coastline label exists in Monet
    assert label_set.shares["style_map"] == pytest.approx([0.388, 0.270, 0.174, 0.094, 0.074], abs=0.003)
    assert label_set.shares["target_map"] == pytest.approx([0.401, 0.255, 0.230, 0.052, 0.061], abs=0.003)


def test_monet_coastline_flat_pixels_keep_their_colour(monet_coastline):
    maps, (label_set, _) = monet_coastline
    for name, rgb in maps.items():
        painted = label_set.palette[label_set.maps[name]]
        exact = (rgb[..., None, :] == label_set.palette).all(axis=-1).any(axis=-1)
        assert exact.mean() > 0.97
        changed = exact & (painted != rgb).any(axis=-1)
        # Only a few stray exact-coloured pixels inside anti-aliased edges (e.g. a 1-px sliver of rock
        # on the top border) may join the region around them; none of them is an interior pixel.
        assert changed.sum() <= 10
        codes = rgb.astype(np.int32) @ np.array([65536, 256, 1])
        p = np.pad(codes, 1, mode="edge")
        same4 = ((p[1:-1, 1:-1] == p[:-2, 1:-1]) & (p[1:-1, 1:-1] == p[2:, 1:-1])
                 & (p[1:-1, 1:-1] == p[1:-1, :-2]) & (p[1:-1, 1:-1] == p[1:-1, 2:]))
        assert not (changed & same4).any()


def test_monet_coastline_count_4_drops_the_rarest(monet_coastline):
    maps, _ = monet_coastline
    label_set, warns = find_labels(maps, count=4)
    assert [to_hex(c) for c in label_set.palette] == MONET_PALETTE[:4]
    assert any("#c00000" in w for w in warns)


def test_monet_map_saved_as_jpeg_still_matches_coastline(monet_coastline):
    maps, _ = monet_coastline
    buf = io.BytesIO()
    Image.fromarray(maps["style_map"]).save(buf, format="JPEG", quality=75)
    jpeg = np.asarray(Image.open(buf).convert("RGB"))
    assert len(np.unique(jpeg.reshape(-1, 3), axis=0)) > 1000  # compression noise everywhere
    label_set, warns = find_labels({"style_map": jpeg, "target_map": maps["target_map"]})
    assert warns == []
    want = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in MONET_PALETTE])
    assert np.abs(label_set.palette.astype(int) - want).max() <= 2  # near-duplicates merged
    assert label_set.shares["style_map"] == pytest.approx([0.388, 0.270, 0.174, 0.094, 0.074], abs=0.005)


@needs_data
def test_portrait_maps_frame_and_small_regions():
    maps = {"style_map": load_map(DATA / "Freddie_sem.png"), "target_map": load_map(DATA / "Mia_sem.png")}
    label_set, warns = find_labels(maps)
    hexes = [to_hex(c) for c in label_set.palette]
    assert sorted(hexes) == sorted(["#ff0000", "#00ff00", "#0000ff", "#ffff00",  # background, face, body, hair
                                    "#00c040", "#40c040", "#c0ffc0", "#bfbfbf"])  # ears, mouth, nose, eyes
    assert "#000000" not in hexes  # the 1-px black frame is an outline, not a region
    assert warns == []
    labels = label_set.maps["style_map"]
    frame = np.concatenate([labels[:2].ravel(), labels[-2:].ravel(), labels[:, :2].ravel(), labels[:, -2:].ravel()])
    assert set(np.unique(frame)) <= {hexes.index("#ff0000"), hexes.index("#0000ff")}


@needs_data
def test_gogh_tiny_flat_regions_are_reported():
    gogh = load_map(DATA / "Gogh_sem.png")
    label_set, warns = find_labels({"style_map": gogh, "target_map": gogh})
    assert sorted(to_hex(c) for c in label_set.palette) == ["#0000ff", "#00ff00", "#ff0000", "#ffff00"]
    assert len(warns) == 1 and "#c0ff00" in warns[0] and "#bfbfbf" in warns[0]


# --------------------------------------------------------------------------- load_map


def _png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def test_load_map_bad_files_are_user_errors_naming_the_file(tmp_path):
    missing = tmp_path / "nowhere_sem.png"
    with pytest.raises(UserError, match="not found.*nowhere_sem.png"):
        load_map(missing)
    text = tmp_path / "notes_sem.png"
    text.write_text("this is not a picture\n")
    with pytest.raises(UserError, match="not an image.*notes_sem.png"):
        load_map(text)
    empty = tmp_path / "empty_sem.png"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="empty file.*empty_sem.png"):
        load_map(empty)
    data = _png_bytes(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    cut = tmp_path / "cut_sem.png"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cut_sem.png.*truncated"):
        load_map(cut)
    with pytest.raises(UserError, match="folder"):
        load_map(tmp_path)


def test_load_map_converts_modes_to_rgb(tmp_path):
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half fully transparent
    (tmp_path / "rgba.png").write_bytes(_png_bytes(rgba))
    got = load_map(tmp_path / "rgba.png")
    assert got.shape == (4, 6, 3) and got.dtype == np.uint8
    assert (got[:2] == [255, 0, 0]).all() and (got[2:] == 255).all()

    grey = np.array([[0, 128, 255]], dtype=np.uint8).repeat(5, axis=0)
    (tmp_path / "grey.png").write_bytes(_png_bytes(grey))
    got = load_map(tmp_path / "grey.png")
    assert got.shape == (5, 3, 3) and (got == grey[..., None]).all()

    deep = (grey.astype(np.uint16) * 257)
    Image.fromarray(deep).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I")
    got = load_map(tmp_path / "grey16.png")
    assert got.shape == (5, 3, 3) and (got == grey[..., None]).all()

    pal = Image.fromarray(_two_region(8, 8)).convert("P", palette=Image.Palette.ADAPTIVE, colors=2)
    pal.save(tmp_path / "pal.png")
    got = load_map(tmp_path / "pal.png")
    assert got.shape == (8, 8, 3) and (got == _two_region(8, 8)).all()


# --------------------------------------------------------------------------- match_map_to_image, masks, paths


def test_match_map_to_image_resizes_by_scale_with_nearest():
    small, _ = _antialiased(48, 64, s=4)
    big = np.asarray(Image.fromarray(small).resize((128, 96), Image.BILINEAR))  # a 2x map with extra blends
    out, note = match_map_to_image(big, (48, 64), "target_map")
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    before = set(map(tuple, big.reshape(-1, 3)))
    assert set(map(tuple, out.reshape(-1, 3))) <= before  # nearest: no new colours
    assert "target_map" in note and "128x96" in note and "64x48" in note
    up, note = match_map_to_image(small, (96, 129), "style_map")  # 0.8% aspect difference is tolerated
    assert up.shape == (96, 129, 3) and note is not None
    assert set(map(tuple, up.reshape(-1, 3))) <= set(map(tuple, small.reshape(-1, 3)))
    same, note = match_map_to_image(small, (48, 64), "style_map")
    assert note is None and same is small


def test_match_map_to_image_rejects_other_aspect_ratios():
    with pytest.raises(UserError, match=r"style_map is 64x48 px but its image is 64x64 px"):
        match_map_to_image(_two_region(48, 64), (64, 64), "style_map")


def test_label_masks_are_one_hot():
    labels = np.random.default_rng(0).integers(0, 5, size=(7, 9)).astype(np.int32)
    masks = label_masks(labels, 5)
    assert masks.shape == (7, 9, 5) and masks.dtype == np.float32
    assert (masks.sum(axis=-1) == 1).all()
    assert (np.argmax(masks, axis=-1) == labels).all()
    assert label_masks(labels, 7)[..., 5:].sum() == 0
    with pytest.raises(ValueError):
        label_masks(labels, 4)


def test_pair_map_path(tmp_path):
    image = tmp_path / "Monet.jpg"
    image.write_bytes(b"")
    assert pair_map_path(image) is None
    (tmp_path / "Monet_sem.png").write_bytes(b"")
    assert pair_map_path(str(image)) == tmp_path / "Monet_sem.png"
    assert pair_map_path(tmp_path / "Other.png") is None


# --------------------------------------------------------------------------- render_labels_png


def test_render_labels_png_draws_maps_and_palette(tmp_path, synthetic):
    _, _, _, _, label_set, _ = synthetic
    out = tmp_path / "sub" / "labels.png"
    render_labels_png(label_set, ["style_map", "target_map"], out)
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape[1] >= 2 * 128 and img.shape[0] > 96 + 4 * 20
    # The style map is pasted unchanged at (pad + title) = (10 + 18, 10): every pixel in its palette colour.
    panel = img[28:28 + 96, 10:10 + 128]
    assert (panel == label_set.palette[label_set.maps["style_map"]]).all()
    target = img[28:28 + 96, 10 + 128 + 10:10 + 128 + 10 + 128]
    assert (target == label_set.palette[label_set.maps["target_map"]]).all()
    below = img[28 + 96:]
    for colour in label_set.palette:  # a swatch for each label
        assert (below == colour).all(axis=-1).sum() >= 50
    with pytest.raises(ValueError, match="unknown"):
        render_labels_png(label_set, ["content_map"], out)


@needs_data
def test_render_monet_coastline_preview(monet_coastline, tmp_path):
    _, (label_set, _) = monet_coastline
    out = tmp_path / "monet_coastline_labels.png"
    render_labels_png(label_set, ["style_map", "target_map"], out)
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width >= 1024 and img.height > 384 + 5 * 20
