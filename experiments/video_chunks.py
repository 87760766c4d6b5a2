"""A clip in chunks on Ray against the same clip frame after frame: wall time and temporal consistency at the
joins against inside the chunks.

    python -m experiments.video_chunks [--size 128 80] [--frames 12] [--iterations 40] [--chunk 7] [--overlap 2]
                                       [--ray | --address HOST:PORT] [--max-parallel N] [--out DIR]

The synthetic clip of :mod:`nst.video.synthetic` (exact flow and reliable pixels), ``configs/video_starry.yaml``
at float32 without XLA, ``--iterations`` for every frame (the first of each chunk included). The serial clip
runs here (1 TensorFlow thread when run as the README says: ``TF_NUM_INTRAOP_THREADS=1``); the chunks run on Ray
(:func:`nst.video.chunks.stylise_on_ray`, 1 CPU and 1 thread per worker). The temporal-consistency error
(:func:`nst.video.metrics.frame_errors`, 0..255 scale) is pooled over the frame steps a join's cross-fade
touches and over the others; ``chunks.csv`` has one row per frame step. Not a test.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from nst.cli import run_main, say
from nst.cluster import add_flags, where_from_args

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def pooled(errors: list[tuple[float, float]], steps) -> float:
    picked = [errors[i - 1] for i in steps]
    return sum(e for e, _ in picked) / max(1.0, sum(n for _, n in picked))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.video_chunks", description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, nargs=2, default=[128, 80], metavar=("W", "H"))
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument("--chunk", type=int, default=7, help="frames per chunk")
    p.add_argument("--overlap", type=int, default=2, help="frames two chunks share")
    p.add_argument("--out", type=Path, default=ROOT / "figures" / "video_chunks")
    add_flags(p, "a clip's chunks")
    args = p.parse_args(argv)
    where = where_from_args(args)

    from nst.cluster import connect
    from nst.inputs import load_styles
    from nst.recipe import TransferRecipe
    from nst.tile_pool import WeightsSource
    from nst.transfer import make_extractors
    from nst.video.chunks import chunk_ranges, joins, stylise_chunk, stylise_on_ray
    from nst.video.config import load_video_config
    from nst.video.metrics import frame_errors
    from nst.video.synthetic import sample_clip
    from nst.weights import load_weights

    clip = sample_clip(DATA, tuple(args.size), args.frames)
    frames = [f.astype(np.float32) for f in clip.frames]
    cfg = load_video_config(ROOT / "configs" / "video_starry.yaml", [
        f"content={DATA / 'content' / 'tubingen.jpg'}", f"image.size={max(args.size)}", "precision=float32",
        "optimizer.xla=false", f"optimizer.iterations={args.iterations}", f"video.iterations={args.iterations}",
        "model.network=vgg16", "model.download=false", "progress.quiet=true"])
    weights, info = load_weights(cfg.model.network, cfg.model.weights, cfg.model.download)
    styles = load_styles(cfg, max(frames[0].shape[:2]))
    ranges = chunk_ranges(len(frames), args.chunk, args.overlap)
    say(f"clip: {len(frames)} frames {args.size[0]}x{args.size[1]}, {args.iterations} it per frame; chunks {ranges}")

    start = time.perf_counter()
    serial = stylise_chunk(cfg, make_extractors(TransferRecipe.of(cfg, info.network), weights), styles, frames)
    serial_s = time.perf_counter() - start
    say(f"serial: {serial_s:.1f} s ({serial_s / len(frames):.1f} s per frame)")

    connect(where.address, timeout=where.timeout)  # without --address: a Ray of our own here
    start = time.perf_counter()
    joined, ranges, per_chunk = stylise_on_ray(cfg, WeightsSource(info.network, info.path), styles, frames,
                                               args.chunk, args.overlap, where.max_parallel, where.cpus, log=say)
    ray_s = time.perf_counter() - start
    say(f"chunks on Ray: {ray_s:.1f} s")

    crossing = joins(ranges)
    inside = [i for i in range(1, len(frames)) if i not in crossing]
    errors = {"serial": frame_errors(serial, clip.backward, clip.reliable),
              "chunks": frame_errors(joined, clip.backward, clip.reliable)}
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "chunks.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "join", "serial_error", "chunks_error"])
        for i in range(1, len(frames)):
            w.writerow([f"{i}->{i + 1}", int(i in crossing),
                        *(f"{errors[k][i - 1][0] / max(1.0, errors[k][i - 1][1]):.2f}" for k in ("serial", "chunks"))])
    all_steps = range(1, len(frames))
    say(f"temporal error (mean squared warped difference over reliable pixels, 0..255):\n"
        f"  serial clip:           all steps {pooled(errors['serial'], all_steps):.1f}\n"
        f"  chunks, inside chunks: {pooled(errors['chunks'], inside):.1f} over {len(inside)} steps\n"
        f"  chunks, at the joins:  {pooled(errors['chunks'], sorted(crossing)):.1f} over {len(crossing)} steps\n"
        f"  chunks, a hard cut (no fade; each frame from the chunk that starts it): "
        f"{_hard_cut(per_chunk, ranges, clip, frame_errors, crossing):.1f}\n"
        f"wall: serial {serial_s:.1f} s, chunks {ray_s:.1f} s; table: {args.out / 'chunks.csv'}")
    return 0


def _hard_cut(per_chunk, ranges, clip, frame_errors, crossing) -> float:
    """The joins' error without the cross-fade: each chunk's frames up to where the next chunk starts."""
    out = []
    for k, ((s, e), frames) in enumerate(zip(ranges, per_chunk)):
        stop = ranges[k + 1][0] if k + 1 < len(ranges) else e
        out.extend(frames[:stop - s])
    return pooled(frame_errors(out, clip.backward, clip.reliable), sorted(crossing))


if __name__ == "__main__":
    raise SystemExit(run_main(main))
