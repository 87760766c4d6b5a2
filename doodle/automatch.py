"""Matching the regions of two semantic maps, and scoring a map against a reference.

Champandard 2016 (arXiv:1603.01768) pairs a style painting's map with a content photo's map by colour:
the same colour must mean the same kind of region (hair to hair, sky to sky). When a map is made
automatically (:mod:`doodle.automap`), its colours are arbitrary, so the regions of the two images are
paired by what they look like to the network:

* each region gets a descriptor: the mean over its pixels of VGG16 features (``MATCH_LAYERS``, each layer
  L2-normalised per pixel, so the texture/object kind counts, not its contrast), with its mean position
  and colour as smaller parts (``MatchWeights``);
* the cost of pairing region i of A with region j of B is the weighted sum of cosine distances of the
  feature means plus the distances of positions and colours;
* the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) finds the one-to-one pairing of
  least total cost; B's map is repainted in A's colours.

The same one-to-one matching (on pixel overlap instead of features) scores an automatic map against a
hand-painted one: :func:`matched_iou`, the metric of ``experiments/automap_iou.py`` and the README.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from doodle.automap import PALETTE, rgb_to_lab

MATCH_LAYERS = ("conv3_3", "conv4_3")


@dataclass(frozen=True)
class MatchWeights:
    """Parts of the pairing cost (measured on the portrait pairs in experiments/automap_iou.py)."""

    features: float = 1.0  # cosine distance of the regions' mean VGG features
    position: float = 1.0  # distance of the regions' centroids (image sides = 1)
    colour: float = 0.0  # distance of mean CIELAB colours / 100: off by default, paintings recolour things


@dataclass(frozen=True)
class Matching:
    """``b_to_a[j]``: the label of A paired with label j of B (-1: none, when B has more labels)."""

    b_to_a: np.ndarray
    cost: np.ndarray  # (Ka, Kb) pairing costs

    def describe(self, palette_a: np.ndarray, shares_b: np.ndarray, name_a: str = "style",
                 name_b: str = "content") -> str:
        """One line per region of B: its share of B, the colour of A's region it was paired with, the cost."""
        from doodle.maps import to_hex

        lines = [f"region matching, {name_b} -> {name_a} (Hungarian on VGG feature similarity and position):"]
        for j, i in enumerate(self.b_to_a):
            pair = f"{name_a} {to_hex(palette_a[i])} (cost {self.cost[i, j]:.3f})" if i >= 0 else "unmatched"
            lines.append(f"  {name_b} region {j} ({100 * shares_b[j]:.1f}%) -> {pair}")
        return "\n".join(lines)


def region_descriptors(image: np.ndarray, labels: np.ndarray, k: int, extractor=None) -> dict[str, np.ndarray]:
    """Per label: mean normalised VGG features 'features' (k, D), centroid 'position' (k, 2), 'colour' (k, 3).

    ``image`` (H, W, 3) float 0..255, ``labels`` (H, W) in [0, k). Features are taken at the automap
    working size; masks are area-averaged to each layer's resolution. A label with no pixels gets zeros.
    """
    from doodle.automap import AutoMapOptions, deep_features
    from nst.masks import resize_masks
    from doodle.maps import label_masks

    opts = AutoMapOptions()
    feats = deep_features(np.asarray(image, np.float32), opts, extractor)
    masks = label_masks(labels, k)  # (H, W, k)
    parts = []
    for layer in MATCH_LAYERS:
        f = feats[layer].astype(np.float64)  # (h, w, C)
        f = f / (np.linalg.norm(f, axis=-1, keepdims=True) + 1e-8)
        m = resize_masks(masks, f.shape[:2]).astype(np.float64)  # (h, w, k)
        mean = np.einsum("hwk,hwc->kc", m, f) / np.maximum(m.sum((0, 1)), 1e-8)[:, None]
        parts.append(mean / (np.linalg.norm(mean, axis=-1, keepdims=True) + 1e-8))
    area = np.maximum(masks.sum((0, 1)), 1e-8)[:, None]  # (k, 1)
    h, w = labels.shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h - 1, w - 1, 1)
    position = np.stack([np.einsum("hwk,hw->k", masks, yy), np.einsum("hwk,hw->k", masks, xx)], -1) / area
    colour = np.einsum("hwk,hwc->kc", masks, rgb_to_lab(image)) / area
    return {"features": np.concatenate(parts, -1) / np.sqrt(len(parts)), "position": position, "colour": colour}


def pairing_cost(a: dict[str, np.ndarray], b: dict[str, np.ndarray], weights: MatchWeights = MatchWeights()) -> np.ndarray:
    """(Ka, Kb) cost of pairing each region of A with each region of B (lower = more alike)."""
    cos = 1.0 - a["features"] @ b["features"].T
    pos = np.linalg.norm(a["position"][:, None] - b["position"][None], axis=-1)
    col = np.linalg.norm(a["colour"][:, None] - b["colour"][None], axis=-1) / 100.0
    return weights.features * cos + weights.position * pos + weights.colour * col


def match_regions(cost: np.ndarray) -> Matching:
    """One-to-one pairing of least total cost (Hungarian); B's labels beyond A's count stay unmatched (-1)."""
    rows, cols = linear_sum_assignment(cost)
    b_to_a = np.full(cost.shape[1], -1, np.int64)
    b_to_a[cols] = rows
    return Matching(b_to_a, cost)


def match_maps(image_a: np.ndarray, labels_a: np.ndarray, image_b: np.ndarray, labels_b: np.ndarray,
               extractor=None, weights: MatchWeights = MatchWeights()) -> Matching:
    """Pair the regions of B's label map with A's by VGG feature similarity (see module doc).

    ``image_*`` (H, W, 3) float 0..255; ``labels_*`` (H, W) ints from 0. Returns the :class:`Matching`;
    ``np.where(m.b_to_a[labels_b] >= 0, ...)`` recolours B in A's labels.
    """
    ka, kb = int(labels_a.max()) + 1, int(labels_b.max()) + 1
    da = region_descriptors(image_a, labels_a, ka, extractor)
    db = region_descriptors(image_b, labels_b, kb, extractor)
    return match_regions(pairing_cost(da, db, weights))


# --------------------------------------------------------------------------- scoring against a reference


def matched_iou(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU of each reference label after the best one-to-one matching of predicted labels to it.

    ``pred``, ``truth``: (H, W) int labels from 0. The matching maximises the summed IoU (Hungarian);
    a reference label left without a partner (more reference than predicted labels) scores 0.
    Returns (iou per truth label (Kt,), pred label matched to each truth label (Kt,), -1 if none).
    """
    kp, kt = int(pred.max()) + 1, int(truth.max()) + 1
    inter = np.zeros((kp, kt))
    np.add.at(inter, (pred.ravel(), truth.ravel()), 1)
    union = inter.sum(1)[:, None] + inter.sum(0)[None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    rows, cols = linear_sum_assignment(-iou)
    out, partner = np.zeros(kt), np.full(kt, -1)
    out[cols], partner[cols] = iou[rows, cols], rows
    return out, partner


# --------------------------------------------------------------------------- automatic maps for a pair of images

# A reference map's region counts for matching when it covers at least this share of its image (the
# portraits' eyes, nose and mouth, about 1% or less, are left to the hand).
MAJOR_SHARE = 0.02


def matched_auto_map(ref_image: np.ndarray, ref_labels: np.ndarray, ref_palette: np.ndarray, image: np.ndarray,
                     seed: int = 0, extractor=None, labels: int | None = None):
    """An automatic map of ``image`` painted in the colours of the reference's matching regions.

    The reference (an image with a label map, hand-painted or automatic) keeps its colours; ``image`` is
    segmented into as many regions as the reference has major ones (>= MAJOR_SHARE; or ``labels``), and
    each region takes the colour of the reference region it is paired with. Returns
    (map (H, W, 3) uint8, Matching over the major reference regions, AutoMapInfo, the major labels).
    """
    from doodle.automap import segment_labels

    shares = np.bincount(ref_labels.ravel(), minlength=len(ref_palette)) / ref_labels.size
    major = np.flatnonzero(shares >= MAJOR_SHARE)
    if len(major) < 2:
        major = np.argsort(-shares)[:2]
    k = labels or len(major)
    own, info = segment_labels(image, k, seed, extractor=extractor)
    da = region_descriptors(ref_image, ref_labels, len(ref_palette), extractor)
    db = region_descriptors(image, own, int(own.max()) + 1, extractor)
    matching = match_regions(pairing_cost({n: v[major] for n, v in da.items()}, db))
    spare = iter([c for c in PALETTE if not (ref_palette == c).all(axis=1).any()])  # for unmatched regions
    colours = np.array([ref_palette[major[i]] if i >= 0 else next(spare) for i in matching.b_to_a], np.uint8)
    return colours[own], matching, info, major


def auto_pair(style: np.ndarray, style_map: np.ndarray | None, content: np.ndarray, content_map: np.ndarray | None,
              labels: int | None = None, seed: int = 0, extractor=None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Maps for a style painting and a content photo, at least one made automatically, in shared colours.

    ``style_map`` / ``content_map``: (H, W, 3) uint8 hand-painted maps, or None for automatic. The
    reference is the style side (its map when given, else its automatic map with ``labels`` regions or
    the silhouette's choice); when only the content map is hand-painted it is the reference instead.
    Returns (style map, content map, log lines: regions found and the matching).
    """
    from doodle.automap import segment_labels
    from doodle.maps import find_labels

    if style_map is not None and content_map is not None:
        raise ValueError("auto_pair needs at least one automatic map")
    notes: list[str] = []
    ref_is_style = content_map is not None and style_map is None
    ref_image, ref_map, other = (content, content_map, style) if ref_is_style else (style, style_map, content)
    ref_name, other_name = ("content", "style") if ref_is_style else ("style", "content")
    if ref_map is None:
        ref_labels, info = segment_labels(ref_image, labels, seed, extractor=extractor)
        ref_palette = info.palette
        notes.append(f"automatic {ref_name} map: {info.describe()}")
        ref_map = ref_palette[ref_labels]
    else:
        label_set, _ = find_labels({f"{ref_name}_map": ref_map}, source=f"{ref_name}_map")
        ref_labels, ref_palette = label_set.maps[f"{ref_name}_map"], label_set.palette
    other_map, matching, other_info, major = matched_auto_map(ref_image, ref_labels, ref_palette, other, seed,
                                                              extractor)
    notes.append(f"automatic {other_name} map: {other_info.k} regions, as many as the {ref_name} map's major ones")
    notes.append(matching.describe(ref_palette[major], other_info.shares, ref_name, other_name))
    return (other_map, ref_map, notes) if ref_is_style else (ref_map, other_map, notes)
