"""Automatic maps against the hand-painted ones: the IoU table of the README and the measurements behind
every default of :class:`doodle.automap.AutoMapOptions`.

    python experiments/automap_iou.py                          # the table (automatic label count)
    python experiments/automap_iou.py --labels hand            # k = the hand map's count of major regions
    python experiments/automap_iou.py --set refine_iters=0     # one variant
    python experiments/automap_iou.py --ablations              # the variants behind the defaults, mean IoU each
    python experiments/automap_iou.py --figure docs/automap.jpg   # image | hand map | automatic map

Metric: the automatic labels are matched one-to-one to the hand map's labels maximising the summed IoU
(Hungarian, :func:`doodle.automatch.matched_iou`). "mIoU major" averages over the hand regions covering at
least MAJOR_SHARE of the image (the regions a clustering can be asked to find; the portraits' eyes, nose,
mouth and ears are each about 1% or less); "mIoU all" over every hand label, unmatched ones counting 0;
"pixel acc" is the share of pixels whose matched label agrees.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from doodle.automap import AutoMapOptions, segment_labels  # noqa: E402
from doodle.automatch import matched_iou  # noqa: E402
from doodle.maps import find_labels, load_map  # noqa: E402
from nst.images import read_image  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "doodle"
NAMES = ("Monet", "Gogh", "Mia", "Freddie")
MAJOR_SHARE = 0.02

ABLATIONS = {
    "defaults": {},
    "no refinement (k-means labels)": {"refine_iters": 0, "majority": 0},
    "no VGG (colour + position only)": {"feature_weight": 0.0},
    "no colour": {"colour_weight": 0.0},
    "no position": {"position_weight": 0.0},
    "avg pooling": {"pooling": "avg"},
    "layers conv3_3+conv4_3": {"layers": ("conv3_3", "conv4_3")},
    "layers conv1_2..conv4_3": {"layers": ("conv1_2", "conv2_2", "conv3_3", "conv4_3")},
    "work size 192": {"work_size": 192},
    "work size 384": {"work_size": 384},
    "refine weight 2": {"refine_weight": 2.0},
    "refine weight 8": {"refine_weight": 8.0},
    "position 1.0": {"position_weight": 1.0},
    "position 0.25": {"position_weight": 0.25},
    "k range 2..6": {"k_range": (2, 6)},
    "gmm (diagonal)": {"cluster": "gmm"},
    "ward, connectivity": {"cluster": "ward"},
    "blur 4 px (local statistics)": {"blur": 4.0},
    "L2-normalised features": {"l2_normalise": True},
    # sub-clusters (only used with a given label count: run with --labels hand)
    "no sub-clusters (plain k-means)": {"overseg_extra": 0},
    "k+1, thin dropped, no boundary bonus": {"merge_boundary": 0.0},
    "k+2 sub-clusters": {"overseg_extra": 2},
    "16 sub-clusters, Ward + boundary": {"overseg": 16},
    "16 sub-clusters, average linkage + boundary": {"overseg": 16, "merge": "average"},
    "16 sub-clusters, spectral": {"overseg": 16, "merge": "spectral", "thin_radius": 0},
    "layer weights 0, 1, 2 (no conv2_2)": {"layer_weights": (0.0, 1.0, 2.0)},
    "layer weights 1, 1, 3": {"layer_weights": (1.0, 1.0, 3.0)},
    # third round: the deepest layers (block 5 of this VGG16 was fine-tuned after ImageNet; nst/weights.py)
    "layers + conv5_1": {"layers": ("conv2_2", "conv3_3", "conv4_3", "conv5_1")},
    "layers + conv5_3": {"layers": ("conv2_2", "conv3_3", "conv4_3", "conv5_3")},
}


def load_truth(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image float32, hand labels (H, W), hand shares) of one sample."""
    image = read_image(DATA / f"{name}.jpg").astype(np.float32)
    ls, _ = find_labels({"style_map": load_map(DATA / f"{name}_sem.png")})
    return image, ls.maps["style_map"], ls.shares["style_map"]


def score(pred: np.ndarray, truth: np.ndarray, shares: np.ndarray) -> dict[str, float]:
    iou, partner = matched_iou(pred, truth)
    major = shares >= MAJOR_SHARE
    agree = np.where(partner[truth] >= 0, partner[truth] == pred, False)
    return {"major": float(iou[major].mean()), "all": float(iou.mean()), "acc": float(agree.mean())}


def evaluate(opts: AutoMapOptions, labels: str, seed: int, samples, keep_maps: bool = False):
    rows, maps = [], {}
    for name, (image, truth, shares) in samples.items():
        k = int((shares >= MAJOR_SHARE).sum()) if labels == "hand" else (None if labels == "auto" else int(labels))
        t0 = time.perf_counter()
        pred, info = segment_labels(image, k, seed, opts)
        rows.append({"image": name, "k": info.k, "hand_k": int((shares >= MAJOR_SHARE).sum()),
                     "seconds": time.perf_counter() - t0, **score(pred, truth, shares)})
        if keep_maps:
            maps[name] = info.palette[pred]
    return rows, maps


def print_table(rows) -> None:
    print("| image | regions (auto) | hand regions >= 2% | mIoU major | mIoU all | pixel acc | seconds |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['image']} | {r['k']} | {r['hand_k']} | {r['major']:.3f} | {r['all']:.3f} | {r['acc']:.3f} "
              f"| {r['seconds']:.1f} |")
    m = {key: np.mean([r[key] for r in rows]) for key in ("major", "all", "acc")}
    print(f"| **mean** | | | **{m['major']:.3f}** | {m['all']:.3f} | {m['acc']:.3f} | |")


def parse_value(text: str, current):
    if isinstance(current, tuple):
        kind = type(current[0]) if current else float
        return tuple(kind(v) for v in text.split(","))
    return type(current)(text)


def figure(samples, maps, path: Path) -> None:
    """Rows: image | hand map | automatic map, each 200 px wide, saved as JPEG."""
    from PIL import Image

    from doodle.maps import load_map

    w = 200
    rows = []
    for name in samples:
        img = Image.fromarray(samples[name][0].astype(np.uint8))
        hand = Image.fromarray(load_map(DATA / f"{name}_sem.png"))
        auto = Image.fromarray(maps[name])
        h = round(img.height * w / img.width)
        rows.append([img.resize((w, h), Image.LANCZOS), hand.resize((w, h), Image.NEAREST),
                     auto.resize((w, h), Image.NEAREST)])
    pad = 4
    canvas = Image.new("RGB", (3 * w + 4 * pad, sum(r[0].height for r in rows) + pad * (len(rows) + 1)), "white")
    y = pad
    for r in rows:
        for i, im in enumerate(r):
            canvas.paste(im, (pad + i * (w + pad), y))
        y += r[0].height + pad
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, quality=85)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", default="auto", help="auto | hand | a number")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="an AutoMapOptions field")
    ap.add_argument("--ablations", action="store_true")
    ap.add_argument("--figure", type=Path)
    ap.add_argument("--images", nargs="*", default=list(NAMES))
    args = ap.parse_args()
    opts = AutoMapOptions()
    known = {f.name for f in fields(AutoMapOptions)}
    for item in args.set:
        key, value = item.split("=", 1)
        if key not in known:
            raise SystemExit(f"unknown option {key}; have {sorted(known)}")
        opts = replace(opts, **{key: parse_value(value, getattr(opts, key))})
    samples = {n: load_truth(n) for n in args.images}
    if args.ablations:
        print(f"| variant (labels={args.labels}) | " + " | ".join(samples) + " | mean mIoU major | mean mIoU all |")
        print("|---|" + "---|" * (len(samples) + 2))
        for title, change in ABLATIONS.items():
            rows, _ = evaluate(replace(opts, **change), args.labels, args.seed, samples)
            cells = " | ".join(f"{r['major']:.3f} (k={r['k']})" for r in rows)
            print(f"| {title} | {cells} | {np.mean([r['major'] for r in rows]):.3f} | "
                  f"{np.mean([r['all'] for r in rows]):.3f} |", flush=True)
        return
    rows, maps = evaluate(opts, args.labels, args.seed, samples, keep_maps=args.figure is not None)
    print_table(rows)
    if args.figure:
        figure(samples, maps, args.figure)


if __name__ == "__main__":
    main()
