"""Temporal consistency of video stylisation: independent frames vs Ruder et al.'s warped init + temporal loss.

    python -m experiments.video_consistency [--size 256 160] [--frames 8] [--iterations 100]
                                            [--weights 20000] [--out figures/video] [--docs]

Makes the synthetic clip of :mod:`nst.video.synthetic` (camera pan and zoom over Tuebingen, a disc moving
across; exact flow known), stylises it with ``configs/video_starry.yaml`` twice at the same iterations per
frame (first frame included): *independent* (``video.init: frame``, ``video.temporal_weight: 0``: every frame
from the config's seeded init) and *consistent* (``warped`` + the temporal loss, each ``--weights`` value),
and writes ``consistency.csv``: the temporal-consistency error (:mod:`nst.video.metrics`) with the
ground-truth flow and reliable pixels, the same with the flow estimated by DIS, the final style loss, and
seconds per frame. ``strip.png``: input, independent, its change from the warped previous frame (x4),
consistent, its change (x4), for four frames. ``--docs`` copies a small version to docs/video_strip.png.
Runs resume (a second invocation reuses finished runs). Not a test: the ratio is asserted at 64 px in
tests/test_video.py.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from nst.cli import run_main, say
from nst.errors import UserError
from nst.images import read_image
from nst.plot import read_losses
from nst.video.flow import warp
from nst.video.io import frame_name, write_frames_folder
from nst.video.metrics import estimated_error, temporal_error
from nst.video.synthetic import sample_clip

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def stylise(clip_dir: Path, out: Path, sets: list[str], weights) -> list[np.ndarray]:
    from nst.video.config import load_video_config
    from nst.video.run import execute

    cfg = load_video_config(ROOT / "configs" / "video_starry.yaml",
                            [f"content={clip_dir}", f"output_dir={out}", *sets])
    record = execute(cfg, out / "video.mp4", loaded_weights=weights)
    return [read_image(out / "frames" / frame_name(i), "frame").astype(np.float32)
            for i in range(1, record["frames_done"] + 1)], record


def strip(clip, rows: list[tuple[str, list[np.ndarray]]], first: int, count: int = 4) -> np.ndarray:
    """Rows of ``count`` frames (fewer when the clip is shorter): the input, then each result and its change
    from its warped previous frame."""
    count = min(count, len(clip.frames) - first)
    lines = [np.concatenate([clip.frames[i] for i in range(first, first + count)], axis=1).astype(np.float32)]
    for _, frames in rows:
        lines.append(np.concatenate(frames[first:first + count], axis=1))
        diffs = [np.clip(4 * np.abs(frames[i] - warp(frames[i - 1], clip.backward[i])), 0, 255)
                 * clip.reliable[i][..., None] for i in range(first, first + count)]
        lines.append(np.concatenate(diffs, axis=1))
    gap = np.full((4, lines[0].shape[1], 3), 255, np.float32)
    return np.concatenate([x for line in lines for x in (line, gap)][:-1], axis=0)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.video_consistency", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, nargs=2, default=[256, 160], metavar=("W", "H"))
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--iterations", type=int, default=100, help="per frame, the first included, both methods")
    p.add_argument("--weights", type=float, nargs="+", default=[1e7], help="video.temporal_weight values")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more config overrides")
    p.add_argument("--out", default=str(ROOT / "figures" / "video"))
    p.add_argument("--docs", action="store_true", help="also write docs/video_strip.png")
    args = p.parse_args(argv)
    if args.frames < 2:
        raise UserError(f"--frames {args.frames}: the error compares each frame with the one before; give 2 or more")

    from PIL import Image

    from nst.weights import load_weights

    out = Path(args.out)
    clip = sample_clip(DATA, tuple(args.size), args.frames)
    clip_dir = out / f"clip_{args.size[0]}x{args.size[1]}_{args.frames}"
    write_frames_folder(clip.frames, clip_dir)
    weights = load_weights("auto")
    common = [f"image.size={max(args.size)}", f"optimizer.iterations={args.iterations}",
              f"video.iterations={args.iterations}", "progress.every=50", *args.set]
    variants = [("independent", ["video.init=frame", "video.temporal_weight=0"])]
    variants += [(f"consistent (w={w:g})", ["video.init=warped", f"video.temporal_weight={w}"]) for w in args.weights]
    rows, results = [], []
    for label, sets in variants:
        run_dir = out / f"{'-'.join(s.replace('=', '_') for s in sets)}_{clip_dir.name}_{args.iterations}"
        frames, record = stylise(clip_dir, run_dir, common + sets, weights)
        gt = temporal_error(frames, clip.backward, clip.reliable)
        est = estimated_error(frames, clip.frames)
        losses = read_losses(run_dir)
        last = np.r_[losses["frame"][1:] != losses["frame"][:-1], True]  # each frame's final iteration
        style = losses["style"][last]
        seconds = [f["seconds"] for f in record["frames"]]
        results.append((label, frames))
        rows.append({"method": label, "error_gt_flow": round(gt, 2), "error_dis_flow": round(est, 2),
                     "final_style_loss_mean": float(f"{np.mean(style):.4g}"),
                     "seconds_per_frame": round(float(np.mean(seconds)), 2), "run": str(run_dir)})
        say(json.dumps(rows[-1]))
    base = rows[0]["error_gt_flow"]
    for r in rows:
        r["ratio_vs_independent"] = round(base / max(r["error_gt_flow"], 1e-9), 2)
    with open(out / "consistency.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    picture = strip(clip, [results[0], results[-1]], first=max(1, args.frames // 2 - 2))
    Image.fromarray(picture.astype(np.uint8)).save(out / "strip.png")
    if args.docs:
        small = Image.fromarray(picture.astype(np.uint8)).quantize(colors=256, dither=Image.Dither.NONE)
        small.save(ROOT / "docs" / "video_strip.png", optimize=True)
    for r in rows:
        say(f"{r['method']}: error {r['error_gt_flow']} (DIS flow {r['error_dis_flow']}), {r['ratio_vs_independent']}x "
            f"lower than independent; {r['seconds_per_frame']} s/frame")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
