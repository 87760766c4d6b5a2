"""Semantic maps -> integer label maps, for neural doodles.

This module owns everything between a hand-painted semantic map on disk and the per-pixel
labels the doodle loss consumes: reading map files, fitting them to their image's size,
finding the shared palette of flat colours, labelling every pixel (anti-aliased edges
included), checking that the doodle only uses colours the style map has, and drawing a
preview of the result. It never touches TensorFlow.

Background: Champandard 2016, "Semantic Style Transfer and Turning Two-Bit Doodles into
Fine Artworks" (arXiv:1603.01768). A style painting comes with a semantic map painted in a
few flat colours; the user paints a doodle in the same colours, and each colour becomes a
semantic channel that steers which style patches go where.

Two ways to turn colours into labels (``find_labels``):

* ``"palette"`` (default): the palette is the set of *flat* colours — exact colours that
  cover at least ``min_share`` of some map and whose pixels are mostly interior (all four
  neighbours the same colour), which rules out the hundreds of anti-aliasing colours along
  edges. Flat colours closer than ``MERGE_DISTANCE`` are merged. Pixels close to a palette
  colour, with close neighbours, are "core"; every other (edge) pixel takes the
  RGB-nearest colour among the labels whose core lies within ``EDGE_SLACK_PX`` of the
  nearest core. Distances are Euclidean in sRGB on purpose: paint programs blend edges in
  sRGB, so an edge pixel lies on the segment between its two neighbouring colours and the
  nearer end is the region that covers most of it. Restricting to neighbouring labels stops
  an edge blend from landing on an unrelated third colour (red/black blends look like a
  dark red region, for instance).
* ``"kmeans"``: the approach of the Keras neural-doodle example — k-means on the RGB
  pixels of all maps together; labels are cluster ids, the palette the rounded centres.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from nst.errors import UserError
from nst.images import read_image, save_png

# Flat colours closer than this (Euclidean RGB, 0..255) are one colour painted twice.
MERGE_DISTANCE = 8.0
# A colour is flat in a map when at least this fraction of its pixels are interior ones.
FLAT_FRACTION = 0.25
# Below this fraction of pixels in flat colours, a "map" is a photo or a gradient.
MIN_FLAT_COVERAGE = 0.5
# Edge pixels may take any label whose core is at most this many pixels further than the nearest core.
EDGE_SLACK_PX = 2.0
# Small flat regions (below min_share everywhere) are reported when they have this many interior pixels.
MIN_REPORTED_INTERIOR = 9
# A label is missing from the source map when it covers under this fraction of min_share there.
ABSENT_FRACTION = 0.25
# k-means is fitted on at most this many pixels, drawn with a fixed seed.
KMEANS_SAMPLE = 20_000
KMEANS_SEED = 0
# match_map_to_image accepts aspect ratios that differ by at most this fraction.
ASPECT_TOLERANCE = 0.02

_CROSS = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class LabelSet:
    """Labels shared by a set of semantic maps.

    ``palette`` is (K, 3) uint8, one colour per label; ``maps`` holds name -> (H, W) int32
    labels in [0, K); ``shares`` holds name -> (K,) float64 fraction of that map's pixels per
    label (each sums to 1). Labels are ordered by mean share over the maps, largest first.
    """

    palette: np.ndarray
    maps: dict[str, np.ndarray]
    shares: dict[str, np.ndarray]

    def describe(self) -> str:
        """A small table: one line per label with its hex colour and its share of each map."""
        names = list(self.maps)
        widths = [max(len(n), 6) for n in names]
        head = "label  colour   " + "  ".join(n.rjust(w) for n, w in zip(names, widths))
        lines = [f"{len(self.palette)} labels over {', '.join(names)}:", head]
        for k, colour in enumerate(self.palette):
            cells = "  ".join(f"{100 * self.shares[n][k]:.1f}%".rjust(w) for n, w in zip(names, widths))
            lines.append(f"{k:5d}  {to_hex(colour)}  {cells}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- small helpers


def to_hex(rgb) -> str:
    """(r, g, b) -> '#rrggbb'."""
    r, g, b = (int(v) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def _pack(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...) int32 colour codes 0xRRGGBB."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _unpack(codes: np.ndarray) -> np.ndarray:
    """(...) colour codes -> (..., 3) uint8."""
    codes = np.asarray(codes, dtype=np.int64)
    return np.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], axis=-1).astype(np.uint8)


def _label(name: str, paths: Mapping[str, str | Path] | None) -> str:
    """How error messages name a map: 'style_map (Monet_sem.png)' when its file is known."""
    if paths and name in paths:
        return f"{name} ({Path(paths[name]).name})"
    return name


def _check_rgb(name: str, arr: np.ndarray) -> None:
    """Programming errors, not user errors: maps must be non-empty (H, W, 3) uint8 arrays."""
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"map {name!r} must be a (H, W, 3) uint8 array, got "
                         f"{getattr(arr, 'dtype', type(arr))} {getattr(arr, 'shape', '')}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"map {name!r} is empty: shape {arr.shape}")


def _rgb_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean RGB distances between (..., 3) colours ``a`` and (K, 3) colours ``b``: (..., K)."""
    diff = a.astype(np.float32)[..., None, :] - b.astype(np.float32)
    return np.sqrt(np.einsum("...c,...c->...", diff, diff))


# --------------------------------------------------------------------------- colour statistics


@dataclass(frozen=True)
class _Stats:
    """Exact-colour histogram of one map: sorted codes, pixel counts, interior-pixel counts."""

    codes: np.ndarray
    counts: np.ndarray
    interior: np.ndarray
    size: int

    def shares_of(self, codes: np.ndarray) -> np.ndarray:
        """Fraction of this map's pixels having each of ``codes`` exactly (0 where absent)."""
        idx = np.clip(np.searchsorted(self.codes, codes), 0, len(self.codes) - 1)
        found = self.codes[idx] == codes
        return np.where(found, self.counts[idx], 0) / self.size


def _stats(rgb: np.ndarray) -> _Stats:
    """Histogram of exact colours with, per colour, how many pixels have 4 same-colour neighbours."""
    codes = _pack(rgb)
    p = np.pad(codes, 1, mode="edge")
    c = p[1:-1, 1:-1]
    interior = (c == p[:-2, 1:-1]) & (c == p[2:, 1:-1]) & (c == p[1:-1, :-2]) & (c == p[1:-1, 2:])
    uniq, inverse, counts = np.unique(codes.ravel(), return_inverse=True, return_counts=True)
    inner = np.bincount(inverse.ravel(), weights=interior.ravel(), minlength=len(uniq)).astype(np.int64)
    return _Stats(uniq, counts.astype(np.int64), inner, codes.size)


def _flat_codes(st: _Stats, min_share: float) -> np.ndarray:
    """Codes of the colours that are flat regions of this map and cover at least ``min_share`` of it."""
    keep = (st.counts >= min_share * st.size) & (st.interior >= FLAT_FRACTION * st.counts)
    return st.codes[keep]


def _mean_shares(stats: dict[str, _Stats], codes: np.ndarray) -> np.ndarray:
    """Mean over maps of each code's exact share, so big and small maps weigh the same."""
    return np.mean([st.shares_of(codes) for st in stats.values()], axis=0)


def _merge_near_duplicates(codes: np.ndarray, freq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy merge of colours within MERGE_DISTANCE: the most frequent colour of a group represents it.

    Returns the representatives' codes and their group frequencies (sums of members' ``freq``).
    """
    order = np.lexsort((codes, -freq))
    reps: list[int] = []
    totals: list[float] = []
    for i in order:
        rgb = _unpack(codes[i])
        if reps:
            d = _rgb_distances(rgb, _unpack(np.array(reps)))
            j = int(np.argmin(d))
            if d[j] <= MERGE_DISTANCE:
                totals[j] += float(freq[i])
                continue
        reps.append(int(codes[i]))
        totals.append(float(freq[i]))
    return np.array(reps, dtype=np.int64), np.array(totals)


# --------------------------------------------------------------------------- checks


def _check_flat(stats, flat_all, paths) -> None:
    """UserError for a map that is mostly not flat colours (a photo, a gradient, noise)."""
    for name, st in stats.items():
        covered = float(st.shares_of(flat_all).sum()) if len(flat_all) else 0.0
        if covered < MIN_FLAT_COVERAGE:
            raise UserError(
                f"{_label(name, paths)} does not look like a semantic map: flat colour regions cover only "
                f"{covered:.0%} of it ({len(st.codes):,} distinct colours in {st.size:,} pixels); paint it in a "
                f"few solid colours and save it as PNG")


def _check_two_regions(source, stats, min_share, paths) -> None:
    """UserError when the source (style) map has fewer than two flat colours of at least ``min_share``."""
    st = stats[source]
    flat = _flat_codes(st, min_share)
    reps, _ = _merge_near_duplicates(flat, st.shares_of(flat))
    if len(reps) < 2:
        colour = to_hex(_unpack(reps[0])) if len(reps) else to_hex(_unpack(st.codes[np.argmax(st.counts)]))
        raise UserError(f"{_label(source, paths)} has one colour ({colour}); a semantic map needs at "
                        f"least two regions")


def _check_counterparts(label_set: LabelSet, source: str, min_share: float, paths) -> None:
    """UserError when another map uses a label (>= min_share of it) that covers (almost) none of the source map.

    "Almost none" is under ABSENT_FRACTION * min_share of the source: a style map's tiny eyes still count.
    """
    src = label_set.shares[source]
    for name, shares in label_set.shares.items():
        if name == source:
            continue
        bad = np.flatnonzero((shares >= min_share) & (src < ABSENT_FRACTION * min_share))
        if len(bad):
            used = ", ".join(f"{to_hex(label_set.palette[k])} ({shares[k]:.1%} of it, {src[k]:.2%} of {source})"
                             for k in bad)
            have = ", ".join(to_hex(label_set.palette[k]) for k in np.flatnonzero(src >= ABSENT_FRACTION * min_share))
            raise UserError(f"{_label(name, paths)} uses colour(s) with no counterpart in "
                            f"{_label(source, paths)}: {used}; {source} has {have}; repaint those regions "
                            f"in the style map's colours")


def _close_warnings(palette: np.ndarray, close_distance: float) -> list[str]:
    """One warning per pair of palette colours closer than ``close_distance`` in RGB."""
    d = _rgb_distances(palette, palette)
    out = []
    for i, j in zip(*np.nonzero(np.triu(d < close_distance, k=1))):
        out.append(f"palette colours {to_hex(palette[i])} and {to_hex(palette[j])} are only {d[i, j]:.1f} apart "
                   f"in RGB (close_distance {close_distance:g}); regions painted in them are easy to confuse")
    return out


# --------------------------------------------------------------------------- palette mode


def _small_flat_warning(stats, palette_codes, min_share) -> list[str]:
    """Warn about flat colours too small to be labels (under ``min_share`` of every map), largest first."""
    found: dict[int, tuple[float, str]] = {}
    pal = _unpack(palette_codes)
    for name, st in stats.items():
        keep = (st.interior >= MIN_REPORTED_INTERIOR) & (st.interior >= FLAT_FRACTION * st.counts)
        codes, counts = st.codes[keep], st.counts[keep]
        far = _rgb_distances(_unpack(codes), pal).min(axis=-1) > MERGE_DISTANCE
        for code, count in zip(codes[far], counts[far]):
            share = count / st.size
            if share > found.get(int(code), (0.0, ""))[0]:
                found[int(code)] = (share, name)
    if not found:
        return []
    items = sorted(found.items(), key=lambda kv: -kv[1][0])
    listed = ", ".join(f"{to_hex(_unpack(c))} ({s:.2%} of {n})" for c, (s, n) in items[:5])
    more = f" and {len(items) - 5} more" if len(items) > 5 else ""
    return [f"ignoring small flat regions under min_share {min_share:g} of every map: {listed}{more}; "
            f"their pixels take the nearest label"]


def _palette_codes(stats, min_share, count) -> tuple[np.ndarray, list[str]]:
    """The flat colours of all maps, near-duplicates merged, optionally the ``count`` most frequent."""
    flat = np.unique(np.concatenate([_flat_codes(st, min_share) for st in stats.values()]))
    reps, freq = _merge_near_duplicates(flat, _mean_shares(stats, flat))
    reps = reps[np.lexsort((reps, -freq))]  # most frequent group first
    warn: list[str] = []
    if count is not None and count < len(reps):
        dropped = ", ".join(to_hex(_unpack(c)) for c in reps[count:])
        warn.append(f"keeping the {count} most frequent of {len(reps)} flat colours; dropped {dropped} "
                    f"(their pixels take the nearest label)")
        reps = reps[:count]
    elif count is not None and count > len(reps):
        warn.append(f"asked for {count} labels but the maps have only {len(reps)} flat colours; using "
                    f"{len(reps)}")
    return reps, warn


def _assign_palette(rgb: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Label every pixel: core pixels by colour, edge pixels by colour among nearby labels (see module doc)."""
    pix = rgb.astype(np.float32)
    dist = np.empty(rgb.shape[:2] + (len(palette),), dtype=np.float32)  # one label at a time: less memory
    core_dist = np.full(dist.shape, np.inf, dtype=np.float32)
    for k in range(len(palette)):
        diff = pix - palette[k].astype(np.float32)
        dist[..., k] = np.sqrt(np.einsum("hwc,hwc->hw", diff, diff))
        core = ndimage.binary_erosion(dist[..., k] <= MERGE_DISTANCE, structure=_CROSS, border_value=1)
        if core.any():
            core_dist[..., k] = ndimage.distance_transform_edt(~core)
    allowed = core_dist <= core_dist.min(axis=-1, keepdims=True) + EDGE_SLACK_PX
    return np.argmin(np.where(allowed, dist, np.inf), axis=-1).astype(np.int32)


# --------------------------------------------------------------------------- k-means mode


def _kmeans(maps: dict[str, np.ndarray], count: int) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    """k-means on the RGB pixels of all maps together; deterministic (fixed seed and subsample)."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    pixels = np.concatenate([m.reshape(-1, 3) for m in maps.values()])
    distinct = len(np.unique(_pack(pixels)))
    if distinct < count:
        raise UserError(f"kmeans mode asked for {count} labels but the maps have only {distinct} distinct "
                        f"colours")
    rng = np.random.default_rng(KMEANS_SEED)
    sample = pixels if len(pixels) <= KMEANS_SAMPLE else pixels[rng.choice(len(pixels), KMEANS_SAMPLE,
                                                                            replace=False)]
    warn: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        km = KMeans(n_clusters=count, n_init=4, random_state=KMEANS_SEED).fit(sample.astype(np.float64))
    warn += [f"kmeans: {w.message}" for w in caught if issubclass(w.category, ConvergenceWarning)]
    palette = np.clip(np.rint(km.cluster_centers_), 0, 255).astype(np.uint8)
    labels = {n: km.predict(m.reshape(-1, 3).astype(np.float64)).reshape(m.shape[:2]).astype(np.int32)
              for n, m in maps.items()}
    return palette, labels, warn


# --------------------------------------------------------------------------- public API


def _sorted_label_set(palette: np.ndarray, labels: dict[str, np.ndarray]) -> LabelSet:
    """Build the LabelSet with labels renumbered by mean share (largest first, ties by colour)."""
    k = len(palette)
    shares = {n: np.bincount(l.ravel(), minlength=k) / l.size for n, l in labels.items()}
    mean = np.mean(list(shares.values()), axis=0)
    order = np.lexsort((_pack(palette), -mean))
    new_id = np.empty(k, dtype=np.int32)
    new_id[order] = np.arange(k, dtype=np.int32)
    return LabelSet(palette=palette[order].copy(),
                    maps={n: new_id[l] for n, l in labels.items()},
                    shares={n: s[order] for n, s in shares.items()})


def find_labels(maps: dict[str, np.ndarray], mode: str = "palette", count: int | None = None, *,
                source: str = "style_map", min_share: float = 0.002, close_distance: float = 30.0,
                paths: Mapping[str, str | Path] | None = None) -> tuple[LabelSet, list[str]]:
    """Labels shared by semantic maps, plus warnings; raises UserError for unusable maps.

    ``maps``: name -> (H, W, 3) uint8 RGB (sizes may differ), including ``source`` (the style
    map). ``mode``: "palette" (flat colours, see module doc; ``count`` keeps the most frequent)
    or "kmeans" (``count`` clusters, required). ``paths``: optional name -> file, only used to
    name files in error messages.
    """
    if source not in maps:
        raise ValueError(f"source {source!r} is not among the maps {list(maps)}")
    for name, arr in maps.items():
        _check_rgb(name, arr)
    if mode not in ("palette", "kmeans"):
        raise UserError(f"unknown semantic label mode {mode!r}; use 'palette' or 'kmeans'")
    if mode == "kmeans" and count is None:
        raise UserError("semantic label mode 'kmeans' needs a label count (how many colours the maps use)")
    if not 0.0 < min_share < 1.0:
        raise UserError(f"semantic min_share must lie between 0 and 1, got {min_share}")
    if count is not None and count < 2:
        raise UserError(f"semantic label count must be at least 2, got {count}")

    stats = {name: _stats(arr) for name, arr in maps.items()}
    flat_all = np.unique(np.concatenate([_flat_codes(st, min_share) for st in stats.values()]))
    _check_flat(stats, flat_all, paths)
    _check_two_regions(source, stats, min_share, paths)

    if mode == "palette":
        codes, warn = _palette_codes(stats, min_share, count)
        palette = _unpack(codes)
        warn += _small_flat_warning(stats, codes, min_share)
        labels = {name: _assign_palette(arr, palette) for name, arr in maps.items()}
    else:
        palette, labels, warn = _kmeans(maps, count)

    label_set = _sorted_label_set(palette, labels)
    _check_counterparts(label_set, source, min_share, paths)
    return label_set, warn + _close_warnings(label_set.palette, close_distance)


def load_map(path) -> np.ndarray:
    """Read a semantic map file as (H, W, 3) uint8 RGB (nst's reader: RGBA on white, clear errors)."""
    return read_image(path, "semantic map")


def match_map_to_image(map_rgb: np.ndarray, image_hw: tuple[int, int], name: str) -> tuple[np.ndarray, str | None]:
    """Fit a map to its image's (H, W): nearest-neighbour resize if only the scale differs.

    Returns the map and a note for the log (None when already the right size). Aspect ratios
    differing by more than ASPECT_TOLERANCE are a UserError naming both sizes.
    """
    _check_rgb(name, map_rgb)
    mh, mw = map_rgb.shape[:2]
    ih, iw = int(image_hw[0]), int(image_hw[1])
    if (mh, mw) == (ih, iw):
        return map_rgb, None
    ratio_map, ratio_img = mw / mh, iw / ih
    if abs(ratio_map / ratio_img - 1.0) > ASPECT_TOLERANCE:
        raise UserError(f"{name} is {mw}x{mh} px but its image is {iw}x{ih} px: aspect ratios "
                        f"{ratio_map:.3f} and {ratio_img:.3f} differ by more than {ASPECT_TOLERANCE:.0%}; "
                        f"crop or repaint the map to match")
    resized = np.asarray(Image.fromarray(map_rgb).resize((iw, ih), Image.NEAREST), dtype=np.uint8)
    return resized, f"{name}: resized from {mw}x{mh} to {iw}x{ih} px (nearest neighbour) to match its image"


def label_masks(labels: np.ndarray, k: int) -> np.ndarray:
    """(H, W) integer labels in [0, k) -> (H, W, k) float32 one-hot masks."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"labels must lie in [0, {k}), got {labels.min()}..{labels.max()}")
    return (labels[..., None] == np.arange(k)).astype(np.float32)


def _font() -> ImageFont.ImageFont:
    """PIL's built-in default font (a scalable one where Pillow ships it)."""
    try:
        return ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def labels_preview(label_set: LabelSet, names: list[str]) -> np.ndarray:
    """The picture of labels.png, (H, W, 3) uint8: the named label maps side by side, painted in palette
    colours, over a palette key.

    Each map has its name above it; below, one row per label: swatch, index, hex colour and
    its share of each named map.
    """
    if not names:
        raise ValueError("render_labels_png needs at least one map name")
    unknown = [n for n in names if n not in label_set.maps]
    if unknown:
        raise ValueError(f"unknown map names {unknown}; have {list(label_set.maps)}")
    font, pad, title_h, row_h = _font(), 10, 18, 20
    panels = [Image.fromarray(label_set.palette[label_set.maps[n]]) for n in names]
    rows = [f"{k}  {to_hex(c)}   " + "   ".join(f"{n} {100 * label_set.shares[n][k]:5.1f}%" for n in names)
            for k, c in enumerate(label_set.palette)]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max(int(probe.textlength(r, font=font)) for r in rows) + 40 + 3 * pad
    width = max(sum(p.width for p in panels) + pad * (len(panels) + 1), text_w)
    panels_h = max(p.height for p in panels)
    height = pad + title_h + panels_h + pad + row_h * len(rows) + pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    x = pad
    for n, p in zip(names, panels):
        draw.text((x, pad), f"{n}  {p.width}x{p.height}", fill="black", font=font)
        canvas.paste(p, (x, pad + title_h))
        draw.rectangle([x - 1, pad + title_h - 1, x + p.width, pad + title_h + p.height], outline=(128, 128, 128))
        x += p.width + pad
    y = pad + title_h + panels_h + pad
    for k, row in enumerate(rows):
        draw.rectangle([pad, y + 2, pad + 36, y + row_h - 3], fill=tuple(int(v) for v in label_set.palette[k]),
                       outline="black")
        draw.text((pad + 36 + pad, y + 3), row, fill="black", font=font)
        y += row_h
    return np.asarray(canvas)


def render_labels_png(label_set: LabelSet, names: list[str], path) -> None:
    """Write :func:`labels_preview` as a PNG (atomically; a run's folder gets it through its recorder)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_png(labels_preview(label_set, names), path)
    except OSError as exc:
        raise UserError(f"cannot write label preview {path}: {exc.strerror or exc}") from None


def pair_map_path(image_path) -> Path | None:
    """The semantic map beside an image by naming convention: Monet.jpg -> Monet_sem.png, if it exists."""
    p = Path(image_path)
    candidate = p.with_name(f"{p.stem}_sem.png")
    return candidate if candidate.is_file() else None
