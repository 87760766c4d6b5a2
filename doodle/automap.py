"""Automatic semantic maps: a photo or a painting in, a flat-colour map (one colour per region) out.

The future work named in Champandard 2016 (arXiv:1603.01768, section 6): add semantic recognition so that
no hand-painted map is needed. No segmentation network can be downloaded here, so the map is built from
what the project has, the ImageNet VGG16 (blocks 1-4; see nst/weights.py):

1. **Features.** The image at ``work_size`` (long side) through VGG16; at each of ``layers`` the channels
   are reduced by PCA, upsampled bilinearly to the working size and scaled to unit total variance; plus
   CIELAB colour and (x, y) position, each group with its weight. Pixels -> (H*W, D) descriptors.
2. **Clustering.** k-means (scikit-learn) on a seeded subsample, every pixel costed by its distance
   to each centre. When the label count is not given, k in ``k_range`` (3..6) is the one with the best
   mean silhouette of the subsample (over 2..6 the silhouette chose 2, figure/ground, on every sample).
   When the count is given, k-means finds one cluster more; clusters that are thin strips (image
   borders, outlines) are dropped and the rest merged to k (Ward cost, lowered by a shared boundary).
3. **Edge-aware refinement** (a dense-CRF-like mean field we wrote in numpy): label probabilities
   Q = softmax(-d^2 / T) from the k-means distances; each iteration smooths Q with a colour guided filter
   (He et al. 2010, guided by the image itself, so smoothing stops at colour edges) and adds it back as a
   Potts message: Q <- softmax(-d^2/T + w * guided(Q)). Then Q is upsampled to the image's full size and
   guided-filtered there once, so boundaries follow the full-resolution edges.
4. **Cleaning** (scipy.ndimage): a majority filter, then every connected piece smaller than
   ``min_region`` of the image (speckle and small holes alike) is given to the region around it.

Labels are ordered by area (largest first) and painted in :data:`PALETTE`. Every choice and its default
is measured by ``experiments/automap_iou.py`` against the hand-painted maps in ``shared/data/doodle``.
Nothing here reads or writes files; :func:`auto_map` is the in-memory API (CLI: ``doodle/segment.py``).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from nst.errors import UserError

# Flat, far-apart colours, the hand maps' own first: label i is painted PALETTE[i].
PALETTE = np.array([
    (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 0), (255, 0, 255), (0, 255, 255),
    (255, 128, 0), (128, 0, 255), (255, 255, 255), (128, 128, 128), (0, 128, 0), (128, 64, 0),
], dtype=np.uint8)
MAX_LABELS = len(PALETTE)
# Images smaller than this (either side) are too small for the network and for regions.
MIN_IMAGE_SIDE = 16
# An image whose colours vary less than this (std, 0..255) has nothing to segment.
MIN_COLOUR_STD = 1.0


@dataclass(frozen=True)
class AutoMapOptions:
    """Every knob of the method; the defaults are the measured best (experiments/automap_iou.py)."""

    work_size: int = 256  # long side (px) at which features are taken and clustered
    network: str = "vgg16"
    pooling: str = "max"  # VGG as trained: its features separate objects better than the avg-pooled ones
    # conv5_3 tells regions of one colour apart by what they are (Freddie's hair from his black shirt): the
    # four-seed mean mIoU on the hand-painted samples went 0.524 -> 0.604 at weight 1 and 0.631 at 0.5; at
    # weight 1 it split a striped texture of the synthetic test images, at 0.5 it does not. docs/DOODLES.md.
    layers: tuple[str, ...] = ("conv2_2", "conv3_3", "conv4_3", "conv5_3")
    pca_dims: int = 8  # per layer
    feature_weight: float = 1.0  # each layer's share of the descriptor (unit total variance x weight)
    layer_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 0.5)  # per layer, x feature_weight (empty: all 1)
    colour_weight: float = 1.0  # CIELAB
    position_weight: float = 0.5  # (x, y)
    l2_normalise: bool = False  # divide each pixel's features by their norm before PCA (cosine-like)
    cluster: str = "kmeans"  # kmeans | gmm (diagonal) | ward (connectivity-constrained, at ward_size)
    ward_size: int = 64
    blur: float = 0.0  # Gaussian sigma (px at the working size) over the feature and colour fields: local statistics
    sample: int = 6000  # pixels k-means and the silhouette are fitted on
    # Sub-clusters, used when the label count is given (--labels, or the content side of an auto pair):
    # k-means to k + overseg_extra (or overseg) clusters, thin ones dropped, the rest merged down to k.
    # Measured (experiments/automap_iou.py --labels hand, seeds 0-3): mean mIoU 0.541 vs 0.520 for plain
    # k-means, better on every seed; with the silhouette's k it was worse (0.500 vs 0.515), so it is off there.
    overseg: int = 0  # sub-clusters to start from (0: k + overseg_extra)
    overseg_extra: int = 1
    merge: str = "ward"  # average | single | ward | spectral: how sub-clusters are merged
    merge_boundary: float = 1.0  # a shared boundary lowers the merge cost: cost / (1 + this x shared share)
    merge_position: bool = False  # count (x, y) in the merge distance (it always counts in the assignment)
    thin_radius: int = 3  # px at the working size: a sub-cluster mostly erased by an opening this wide is a
    thin_keep: float = 0.3  # strip or an outline (opening keeps < thin_keep of it) and is dropped before merging
    k_range: tuple[int, int] = (3, 6)  # automatic label count: the best silhouette in this range (inclusive)
    refine_iters: int = 5  # mean-field iterations at the working size (0 = plain k-means labels)
    refine_weight: float = 4.0  # Potts message weight
    guide_radius: int = 4  # guided filter window radius, at the working size
    guide_eps: float = 0.01  # guided filter regulariser (colours 0..1)
    majority: int = 5  # majority filter window (0 = none)
    min_region: float = 0.005  # connected pieces under this fraction of the image are merged away
    thin: float = 0.05  # regions no thicker than this x the short side are seams or frame strips: merged away
    max_size: int = 1024  # the full-resolution step runs at most at this long side (memory: (H, W, 3, k) floats)


@dataclass(frozen=True)
class AutoMapInfo:
    """What :func:`auto_map` decided: label count, how it was chosen, palette and each label's share."""

    k: int
    chosen: str  # "given" | "silhouette"
    scores: dict[int, float] = field(default_factory=dict)  # k -> penalised silhouette (automatic k only)
    palette: np.ndarray = field(default_factory=lambda: PALETTE[:0])  # (k, 3) uint8
    shares: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (k,) fraction of pixels per label
    seconds: float = 0.0

    def describe(self) -> str:
        from doodle.maps import to_hex

        how = ("given" if self.chosen == "given" else
               "chosen by silhouette (" + ", ".join(f"k={k}: {s:.3f}" for k, s in self.scores.items()) + ")")
        best = max(self.scores, key=self.scores.get) if self.scores else self.k
        thin = f", {best - self.k} thin strip(s) dropped" if best > self.k else ""
        lines = [f"{self.k} regions, {how}{thin}"]
        lines += [f"  {i}  {to_hex(c)}  {100 * s:5.1f}%" for i, (c, s) in enumerate(zip(self.palette, self.shares))]
        return "\n".join(lines)


# --------------------------------------------------------------------------- image helpers


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) sRGB 0..255 -> CIELAB (D65): L in 0..100, a and b roughly -100..100."""
    c = np.asarray(rgb, np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def _resize_float(arr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(h, w, C) float -> (H, W, C) bilinear (half-pixel centres, as tf.image.resize)."""
    import tensorflow as tf

    return tf.image.resize(arr[None].astype(np.float32), hw, method="bilinear").numpy()[0]


def _box(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window on the first two axes (edges: reflected)."""
    return ndimage.uniform_filter(x, size=(2 * r + 1, 2 * r + 1) + (1,) * (x.ndim - 2), mode="reflect")


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """Colour guided filter (He, Sun & Tang 2010): smooth ``src`` (H, W, K) except across edges of ``guide``.

    ``guide`` (H, W, 3) in 0..1. Per window, src ~ a^T guide + b by ridge regression (``eps``); the
    output averages the windows' a and b. Edge-preserving, O(1) per pixel in r.
    """
    I = guide.astype(np.float64)
    p = src.astype(np.float64)
    mean_I = _box(I, r)  # (H, W, 3)
    mean_p = _box(p, r)  # (H, W, K)
    corr_II = _box(I[..., :, None] * I[..., None, :], r)  # (H, W, 3, 3)
    corr_Ip = _box(I[..., :, None] * p[..., None, :], r)  # (H, W, 3, K)
    cov_II = corr_II - mean_I[..., :, None] * mean_I[..., None, :] + eps * np.eye(3)
    cov_Ip = corr_Ip - mean_I[..., :, None] * mean_p[..., None, :]
    a = np.linalg.solve(cov_II, cov_Ip)  # (H, W, 3, K)
    b = mean_p - np.einsum("hwc,hwck->hwk", mean_I, a)
    return np.einsum("hwc,hwck->hwk", I, _box(a, r)) + _box(b, r)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------- features


@functools.lru_cache(maxsize=2)
def default_extractor(network: str = "vgg16", pooling: str = "max", layers: tuple[str, ...] = AutoMapOptions.layers):
    """The real ImageNet VGG (nst.weights), built once per process: the studio calls auto_map repeatedly."""
    from nst.features import FeatureExtractor
    from nst.weights import load_weights

    weights, _info = load_weights(network)
    return FeatureExtractor(weights, network, pooling, list(layers))


def working_size(hw: tuple[int, int], long_side: int) -> tuple[int, int]:
    h, w = hw
    f = long_side / max(h, w)
    return max(MIN_IMAGE_SIDE, round(h * f)), max(MIN_IMAGE_SIDE, round(w * f))


def deep_features(image: np.ndarray, opts: AutoMapOptions, extractor=None) -> dict[str, np.ndarray]:
    """{layer: (h, w, C)} VGG features of ``image`` (H, W, 3) float 0..255 at the working size."""
    from nst.features import canonical_layer

    extractor = extractor or default_extractor(opts.network, opts.pooling, tuple(opts.layers))
    hw = working_size(image.shape[:2], opts.work_size)
    small = _resize_float(image, hw)
    feats = extractor.numpy(small)
    return {n: feats[canonical_layer(n, extractor.network)][0] for n in opts.layers}


def pixel_descriptors(image_small: np.ndarray, feats: dict[str, np.ndarray], opts: AutoMapOptions,
                      seed: int) -> np.ndarray:
    """(H, W, D) per-pixel descriptors: PCA'd upsampled VGG layers + CIELAB + (x, y), each group weighted."""
    from sklearn.decomposition import PCA

    h, w = image_small.shape[:2]
    groups = []
    layer_weights = opts.layer_weights or (1.0,) * len(opts.layers)
    for layer, layer_weight in zip(opts.layers, layer_weights):
        f = feats[layer]
        flat = f.reshape(-1, f.shape[-1]).astype(np.float64)  # (h'*w', C)
        flat = flat[:, flat.std(axis=0) > 0]  # dead ReLU channels carry nothing
        if opts.l2_normalise:
            flat = flat / (np.linalg.norm(flat, axis=1, keepdims=True) + 1e-6)
        dims = min(opts.pca_dims, flat.shape[1], flat.shape[0])
        if dims == 0:
            continue
        red = PCA(dims, random_state=seed).fit_transform(flat).reshape(f.shape[0], f.shape[1], dims)
        groups.append((_resize_float(red, (h, w)), opts.feature_weight * layer_weight))
    groups.append((rgb_to_lab(image_small), opts.colour_weight))
    if opts.blur > 0:  # local means of the responses: texture statistics rather than single pixels
        groups = [(ndimage.gaussian_filter(g, (opts.blur, opts.blur, 0), mode="reflect"), wt) for g, wt in groups]
    yy, xx = np.mgrid[0:h, 0:w]
    groups.append((np.stack([yy, xx], -1) / max(h, w), opts.position_weight))
    parts = []
    for g, weight in groups:
        g = g.astype(np.float64) - g.reshape(-1, g.shape[-1]).mean(axis=0)
        total_var = float(g.reshape(-1, g.shape[-1]).var(axis=0).sum())
        parts.append(g * np.sqrt(weight / total_var) if total_var > 0 else g * 0.0)
    return np.concatenate(parts, axis=-1)  # (H, W, D)


# --------------------------------------------------------------------------- clustering


def _kmeans(x: np.ndarray, k: int, seed: int):
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x)


def _centres(desc: np.ndarray, sample: np.ndarray, k: int, seed: int, opts: AutoMapOptions) -> np.ndarray:
    """(k, D) cluster centres of the descriptors by ``opts.cluster``."""
    if opts.cluster == "kmeans":
        return _kmeans(sample, k, seed).cluster_centers_
    if opts.cluster == "gmm":
        from sklearn.mixture import GaussianMixture

        return GaussianMixture(k, covariance_type="diag", random_state=seed, n_init=2).fit(sample).means_
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.feature_extraction.image import grid_to_graph

    hw = working_size(desc.shape[:2], opts.ward_size)
    small = _resize_float(desc, hw)
    flat = small.reshape(-1, small.shape[-1])
    lab = AgglomerativeClustering(k, linkage="ward", connectivity=grid_to_graph(*hw)).fit_predict(flat)
    return np.stack([flat[lab == i].mean(0) for i in range(k)])


def _sq_dist(desc: np.ndarray, centres: np.ndarray) -> np.ndarray:
    flat = desc.reshape(-1, desc.shape[-1])
    return ((flat[:, None, :] - centres[None]) ** 2).sum(-1).reshape(desc.shape[:2] + (len(centres),))


def _disk(r: int) -> np.ndarray:
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return yy ** 2 + xx ** 2 <= r * r


def drop_thin(d2: np.ndarray, k: int, radius: int, keep: float) -> np.ndarray:
    """Indices of the sub-clusters (columns of ``d2``) that are not thin, at least ``k`` of them.

    Thin: an opening with a disk of ``radius`` (the image outside counts as background, so a strip
    along the border is thin too) keeps under ``keep`` of its pixels: outlines and border strips,
    which the hand maps give to the region beside them. The thinnest go first.
    """
    lab = np.argmin(d2, axis=-1)
    kept_share = np.ones(d2.shape[-1])
    for i in range(d2.shape[-1]):
        mask = lab == i
        if mask.any():
            kept_share[i] = ndimage.binary_opening(mask, _disk(radius)).sum() / mask.sum()
    order = np.argsort(kept_share)
    drop = [i for i in order if kept_share[i] < keep][: max(0, d2.shape[-1] - k)]
    return np.array(sorted(set(range(d2.shape[-1])) - set(drop)))


def merge_tree(desc: np.ndarray, lab: np.ndarray, n: int, opts: AutoMapOptions, seed: int) -> list[list[list[int]]]:
    """Greedy merging of ``n`` sub-clusters (``lab`` (H, W) in [0, n)): the groups at n, n-1, ..., 1.

    Distances between sub-clusters are those of their mean descriptors (position left out unless
    ``merge_position``); a pair of groups costs their ``merge`` linkage divided by
    1 + merge_boundary x (shared 4-neighbour boundary / the smaller group's boundary).
    """
    flat = desc.reshape(-1, desc.shape[-1])
    if not opts.merge_position:
        flat = flat[:, :-2]  # position is the last group (pixel_descriptors)
    counts = np.bincount(lab.ravel(), minlength=n).astype(np.float64)
    means = np.stack([flat[lab.ravel() == i].mean(0) if counts[i] else np.zeros(flat.shape[1]) for i in range(n)])
    dist = np.linalg.norm(means[:, None] - means[None], axis=-1)
    shared = np.zeros((n, n))
    for a, b in ((lab[1:], lab[:-1]), (lab[:, 1:], lab[:, :-1])):
        diff = a != b
        np.add.at(shared, (a[diff], b[diff]), 1)
    shared = shared + shared.T
    perimeter = shared.sum(1)
    if opts.merge == "spectral":
        return _spectral_levels(dist, shared, n, seed)
    groups = [[i] for i in range(n)]
    levels = [[g[:] for g in groups]]
    while len(groups) > 1:
        best, pair = np.inf, None
        for x in range(len(groups)):
            for y in range(x + 1, len(groups)):
                gx, gy = groups[x], groups[y]
                block = dist[np.ix_(gx, gy)]
                if opts.merge == "single":
                    cost = block.min()
                elif opts.merge == "ward":
                    nx, ny = counts[gx].sum(), counts[gy].sum()
                    mx = (counts[gx, None] * means[gx]).sum(0) / max(nx, 1)
                    my = (counts[gy, None] * means[gy]).sum(0) / max(ny, 1)
                    cost = np.sqrt(nx * ny / max(nx + ny, 1)) * np.linalg.norm(mx - my)
                else:
                    w = counts[gx, None] * counts[gy][None]
                    cost = (block * w).sum() / max(w.sum(), 1e-12)
                edge = shared[np.ix_(gx, gy)].sum() / max(min(perimeter[gx].sum(), perimeter[gy].sum()), 1)
                cost = cost / (1 + opts.merge_boundary * edge)
                if cost < best:
                    best, pair = cost, (x, y)
        x, y = pair
        groups[x] = groups[x] + groups[y]
        del groups[y]
        levels.append([g[:] for g in groups])
    return levels


def _spectral_levels(dist: np.ndarray, shared: np.ndarray, n: int, seed: int) -> list[list[list[int]]]:
    from sklearn.cluster import SpectralClustering

    sigma = max(float(np.median(dist[dist > 0])) if (dist > 0).any() else 1.0, 1e-8)
    affinity = np.exp(-dist ** 2 / (2 * sigma ** 2)) * (1 + shared / max(shared.max(), 1))
    levels = [[[i] for i in range(n)]]
    for k in range(n - 1, 0, -1):
        lab = np.zeros(n, int) if k == 1 else SpectralClustering(k, affinity="precomputed", random_state=seed
                                                                  ).fit_predict(affinity)
        levels.append([list(np.flatnonzero(lab == g)) for g in np.unique(lab)])
    return levels


def _unary(desc: np.ndarray, sample: np.ndarray, k: int, seed: int, opts: AutoMapOptions,
           given: bool, thin_radius: int) -> np.ndarray:
    """(H, W, k') label costs of every pixel: squared distance to the centres / 2T (T: the median nearest).

    Thin clusters (border strips, outlines; :func:`drop_thin`) are dropped. With a ``given`` count, k-means
    finds sub-clusters (see AutoMapOptions.overseg), thin ones are dropped and the rest merged to k = k'
    (a label's cost is its nearest member's); with the silhouette's k, dropping them leaves k' < k labels.
    """
    n_sub = max(opts.overseg, k + opts.overseg_extra) if given else k
    centres = _kmeans(sample, n_sub, seed).cluster_centers_ if n_sub > k else _centres(desc, sample, k, seed, opts)
    d2 = _sq_dist(desc, centres)
    if opts.thin_radius > 0:
        d2 = d2[..., drop_thin(d2, k if given else 2, thin_radius, opts.thin_keep)]
    if d2.shape[-1] > k:
        groups = merge_tree(desc, np.argmin(d2, axis=-1), d2.shape[-1], opts, seed)[-k]
        d2 = np.stack([d2[..., g].min(axis=-1) for g in groups], -1)
    temperature = max(float(np.median(d2.min(axis=-1))), 1e-8)
    return d2 / (2 * temperature)


def choose_k(sample: np.ndarray, opts: AutoMapOptions, seed: int) -> tuple[int, dict[int, float]]:
    """The k in ``opts.k_range`` with the best mean silhouette of the sample's k-means labels.

    The range starts at 3: over 2..6 the silhouette picked 2 (figure/ground) on every sample image
    (experiments/automap_iou.py). The search stops at a k the sample has too few distinct points for;
    2 when no k of the range fits.
    """
    from sklearn.metrics import silhouette_score

    lo, hi = opts.k_range
    scores: dict[int, float] = {}
    distinct = len(np.unique(np.round(sample, 6), axis=0))
    for k in range(lo, hi + 1):
        if k > distinct:
            break
        labels = _kmeans(sample, k, seed).labels_
        if len(np.unique(labels)) < k:
            break
        sil = silhouette_score(sample, labels, sample_size=min(len(sample), 3000), random_state=seed)
        scores[k] = round(float(sil), 4)
    if not scores:
        return 2, scores
    return max(scores, key=lambda k: (scores[k], -k)), scores


# --------------------------------------------------------------------------- refinement and cleaning


def mean_field(unary: np.ndarray, guide: np.ndarray, opts: AutoMapOptions, iters: int, radius: int) -> np.ndarray:
    """Q (H, W, K) after ``iters`` Potts mean-field steps with a guided-filter kernel; ``unary`` = -log-ish."""
    q = _softmax(-unary)
    for _ in range(iters):
        q = _softmax(-unary + opts.refine_weight * guided_filter(guide, q, radius, opts.guide_eps))
    return q


def majority_filter(labels: np.ndarray, k: int, size: int) -> np.ndarray:
    """Each pixel takes the most common label in its size x size window (ties: the lower label)."""
    if size <= 1:
        return labels
    votes = np.stack([ndimage.uniform_filter((labels == i).astype(np.float32), size, mode="nearest")
                      for i in range(k)], -1)
    return np.argmax(votes, axis=-1).astype(np.int32)


def remove_small_regions(labels: np.ndarray, min_pixels: int) -> np.ndarray:
    """Connected pieces (4-connected) under ``min_pixels`` take the label of the nearest larger piece.

    Covers speckle and holes alike: a small island of label A inside region B becomes B. A label whose
    pieces are all small vanishes (the info then reports fewer regions than asked).
    """
    keep = np.zeros(labels.shape, bool)
    for lab in np.unique(labels):
        pieces, n = ndimage.label(labels == lab)
        if n == 0:
            continue
        sizes = np.bincount(pieces.ravel())[1:]
        keep |= (sizes >= min_pixels)[pieces - 1] & (pieces > 0)
    if keep.all():
        return labels
    if not keep.any():  # every piece is small (a tiny image): keep the largest one
        return np.full_like(labels, np.bincount(labels.ravel()).argmax())
    _, (iy, ix) = ndimage.distance_transform_edt(~keep, return_indices=True)
    return labels[iy, ix]


def merge_thin_regions(labels: np.ndarray, k: int, min_thickness: float) -> np.ndarray:
    """Give every region whose largest inscribed disc has a radius <= ``min_thickness`` px to its neighbours.

    Such regions are seams along a boundary between two textures, or strips along the frame, where VGG's
    features mix both sides or carry the convolutions' zero padding: k-means makes them clusters of their own.
    """
    from scipy import ndimage

    out = labels.copy()
    for label in range(k):
        mask = out == label
        if not mask.any() or mask.all():
            continue
        if ndimage.distance_transform_edt(mask).max() <= min_thickness:
            _, (iy, ix) = ndimage.distance_transform_edt(mask, return_indices=True)  # nearest pixel outside
            out[mask] = out[iy[mask], ix[mask]]
    return out


def _relabel_by_area(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels renumbered 0..k-1 by area (largest first; empty labels dropped); returns (labels, shares)."""
    counts = np.bincount(labels.ravel())
    present = np.flatnonzero(counts)
    order = present[np.lexsort((present, -counts[present]))]
    new = np.full(len(counts), -1, np.int32)
    new[order] = np.arange(len(order), dtype=np.int32)
    out = new[labels]
    return out, counts[order] / labels.size


# --------------------------------------------------------------------------- public API


def check_image(image: np.ndarray, labels: int | None, opts: AutoMapOptions, name: str = "image") -> None:
    """UserError for what cannot be segmented: too small, one colour, more labels than the pixels allow."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"auto_map needs an (H, W, 3) array, got {getattr(image, 'shape', type(image))}")
    h, w = image.shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE:
        raise UserError(f"{name} is {w}x{h} px: too small to segment (each side needs at least "
                        f"{MIN_IMAGE_SIDE} px)")
    if float(image.reshape(-1, 3).std(axis=0).max()) < MIN_COLOUR_STD:
        raise UserError(f"{name} is one colour: there are no regions to find")
    if labels is None:
        return
    if not 2 <= labels <= MAX_LABELS:
        raise UserError(f"--labels must be between 2 and {MAX_LABELS}, got {labels}")
    min_pixels = max(1, int(opts.min_region * h * w))
    if labels * min_pixels > h * w:
        raise UserError(f"{labels} labels are more than a {w}x{h} px {name} allows: each region needs at least "
                        f"{opts.min_region:.1%} of the image ({min_pixels} px); use at most {h * w // min_pixels}")
    distinct = len(np.unique(np.asarray(image, np.uint8).reshape(-1, 3), axis=0))
    if labels > distinct:
        raise UserError(f"{labels} labels are more than {name} allows: it has only {distinct} distinct colours")


def segment_labels(image: np.ndarray, labels: int | None = None, seed: int = 0,
                   opts: AutoMapOptions = AutoMapOptions(), extractor=None) -> tuple[np.ndarray, AutoMapInfo]:
    """(H, W) int32 labels 0..k-1 (largest region first) and the info; ``image`` (H, W, 3) float 0..255."""
    start = time.perf_counter()
    check_image(image, labels, opts)
    image = np.asarray(image, np.float32)
    h, w = image.shape[:2]
    feats = deep_features(image, opts, extractor)
    small = _resize_float(image, working_size((h, w), opts.work_size))
    desc = pixel_descriptors(small, feats, opts, seed)  # (hs, ws, D)
    flat = desc.reshape(-1, desc.shape[-1])
    rng = np.random.default_rng(seed)
    sample = flat[rng.choice(len(flat), min(opts.sample, len(flat)), replace=False)]
    if labels is None:
        k, scores = choose_k(sample, opts, seed)
        chosen = "silhouette"
    else:
        k, scores, chosen = labels, {}, "given"
    # an image upsampled to the working size has proportionally wider strips (a 96 px one: 11 px at 256)
    thin_radius = round(opts.thin_radius * max(1.0, opts.work_size / max(h, w)))
    unary = _unary(desc, sample, k, seed, opts, labels is not None, thin_radius)  # (hs, ws, k')
    guide_small = np.clip(small / 255.0, 0, 1)
    q = mean_field(unary, guide_small, opts, opts.refine_iters, opts.guide_radius)
    # to full size (at most max_size), once more edge-aware there: boundaries follow the fine edges
    fh, fw = (h, w) if max(h, w) <= opts.max_size else working_size((h, w), opts.max_size)
    q = _resize_float(q, (fh, fw))
    scale = max(fh, fw) / opts.work_size
    guide = np.clip(_resize_float(image, (fh, fw)) / 255.0, 0, 1) if (fh, fw) != (h, w) else image / 255.0
    q = guided_filter(np.clip(guide, 0, 1), q, max(1, round(opts.guide_radius * scale)), opts.guide_eps)
    lab = np.argmax(q, axis=-1).astype(np.int32)
    lab = majority_filter(lab, unary.shape[-1], opts.majority)
    lab = remove_small_regions(lab, max(1, int(opts.min_region * fh * fw)))
    lab = merge_thin_regions(lab, k, opts.thin * min(fh, fw))
    if (fh, fw) != (h, w):  # a very large image: nearest-neighbour up to its size
        lab = lab[(np.arange(h) * fh // h)[:, None], (np.arange(w) * fw // w)[None, :]]
    lab, shares = _relabel_by_area(lab)
    info = AutoMapInfo(k=len(shares), chosen=chosen, scores=scores, palette=PALETTE[: len(shares)].copy(),
                       shares=shares, seconds=time.perf_counter() - start)
    return lab, info


def auto_map(image: np.ndarray, labels: int | None = None, seed: int = 0, opts: AutoMapOptions = AutoMapOptions(),
             extractor=None) -> tuple[np.ndarray, AutoMapInfo]:
    """A semantic map of ``image`` ((H, W, 3) float 0..255): ((H, W, 3) uint8 flat colours, info).

    ``labels``: the number of regions, or None to choose it (silhouette). Deterministic for a ``seed``.
    Raises UserError for an image that cannot be segmented (see :func:`check_image`).
    """
    lab, info = segment_labels(image, labels, seed, opts, extractor)
    return info.palette[lab], info


def with_options(**changes) -> AutoMapOptions:
    """AutoMapOptions with some fields changed (for experiments)."""
    return replace(AutoMapOptions(), **changes)
