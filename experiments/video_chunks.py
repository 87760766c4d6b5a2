"""A clip in chunks against the same clip frame after frame: wall time and temporal consistency at the joins
against inside the chunks, for both ways a later chunk can start.

    python -m experiments.video_chunks [--size 128 80] [--frames 12] [--iterations 40] [--chunk 7] [--overlap 2]
                                       [--start key init] [--ray | --address HOST:PORT | --local]
                                       [--max-parallel N] [--out DIR]

The synthetic clip of :mod:`nst.video.synthetic` (exact flow and reliable pixels), ``configs/video_starry.yaml``
at float32 without XLA, ``--iterations`` for every frame (the first frame's included). The serial clip runs
here (1 TensorFlow thread when run as docs/VIDEO.md says: ``TF_NUM_INTRAOP_THREADS=1``); the chunks run the
CLI's schedule (:mod:`nst.video.chunks`: ``key`` = later chunks warm-started from the stylised first frame,
``init`` = from the config's init) on Ray (:class:`nst.video.chunk_pool.ChunkPool`, 1 CPU and 1 thread per
worker), or one after another here with ``--local`` (the same frames up to float rounding; no speed-up).
The temporal-consistency error (:func:`nst.video.metrics.frame_errors`, 0..255 scale) is pooled over the frame
steps a join's cross-fade touches and over the others; ``chunks_<chunk>_<overlap>_<start>.csv`` has one row per
frame step. The serial clip is kept (``serial_*.npz``) and reused by the next run. Not a test.
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


def chunked(cfg, recipe, weights, info, styles, frames, ranges, start, where):
    """(per-chunk frames, seconds, per-frame seconds of later frames) of one chunked run, no files."""
    from nst.tile_pool import WeightsSource
    from nst.transfer import make_extractors
    from nst.video.chunk_pool import ChunkPool, ClipJob, run_here
    from nst.video.chunks import FrameSolver, Schedule, eight_bit, plan

    schedule = Schedule(plan(ranges, start))
    seconds: list[float] = []

    def on_frame(step, out):
        if step.source is not None:
            seconds.append(out.seconds)
        say(f"  chunk {step.chunk + 1} frame {step.frame + 1}: {out.seconds:.1f} s")
        return eight_bit(out.image)

    t0 = time.perf_counter()
    if where.parallel:
        job = ClipJob(cfg, styles, frames[0], len(frames), recipe.network, recipe.pooling, list(recipe.layers))
        with ChunkPool(WeightsSource(info.network, info.path), max_parallel=where.max_parallel,
                       cpus=where.cpus) as pool:
            say(f"chunks ({start}): {pool.describe()}")
            pool.run(schedule, frames, job, on_frame, log=say)
    else:
        solver = FrameSolver(cfg, make_extractors(recipe, weights), styles, frames[0], len(frames))
        run_here(schedule, frames, solver, on_frame)
    wall = time.perf_counter() - t0
    per_chunk = [[schedule.results[(k, j)] for j in range(s, e)] for k, (s, e) in enumerate(ranges)]
    return per_chunk, wall, seconds


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.video_chunks", description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, nargs=2, default=[128, 80], metavar=("W", "H"))
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument("--chunk", type=int, default=7, help="frames per chunk")
    p.add_argument("--overlap", type=int, default=2, help="frames two chunks share")
    p.add_argument("--start", nargs="+", default=["key", "init"], choices=["key", "init"],
                   help="how later chunks start (each is run)")
    p.add_argument("--no-serial", action="store_true", help="skip the serial clip (its error and time)")
    p.add_argument("--out", type=Path, default=ROOT / "figures" / "video_chunks")
    add_flags(p, "a clip's chunks")
    args = p.parse_args(argv)
    where = where_from_args(args)

    from nst.cluster import connect
    from nst.inputs import load_styles
    from nst.recipe import TransferRecipe
    from nst.transfer import make_extractors
    from nst.video.chunks import chunk_ranges, join, joins, stylise_chunk
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
    recipe = TransferRecipe.of(cfg, info.network)
    styles = load_styles(cfg, max(frames[0].shape[:2]))
    ranges = chunk_ranges(len(frames), args.chunk, args.overlap)
    say(f"clip: {len(frames)} frames {args.size[0]}x{args.size[1]}, {args.iterations} it per frame; chunks {ranges}")

    args.out.mkdir(parents=True, exist_ok=True)
    errors, walls = {}, {}
    if not args.no_serial:
        kept = args.out / f"serial_{args.size[0]}x{args.size[1]}_{args.frames}f_{args.iterations}it.npz"
        if kept.is_file():  # the serial clip does not depend on the chunking: reuse it
            with np.load(kept) as z:
                serial, walls["serial"] = list(z["frames"]), float(z["seconds"])
            say(f"serial: reused {kept.name} ({walls['serial']:.1f} s when it ran)")
        else:
            t0 = time.perf_counter()
            serial = stylise_chunk(cfg, make_extractors(recipe, weights), styles, frames)
            walls["serial"] = time.perf_counter() - t0
            np.savez(kept, frames=np.stack(serial), seconds=walls["serial"])
            say(f"serial: {walls['serial']:.1f} s ({walls['serial'] / len(frames):.1f} s per frame)")
        errors["serial"] = frame_errors(serial, clip.backward, clip.reliable)

    if where.parallel:
        connect(where.address, timeout=where.timeout)  # without --address: a Ray of our own here
    crossing = joins(ranges)
    inside = [i for i in range(1, len(frames)) if i not in crossing]
    lines = []
    for start in args.start:
        per_chunk, wall, seconds = chunked(cfg, recipe, weights, info, styles, frames, ranges, start, where)
        walls[start] = wall
        errors[start] = frame_errors(join(per_chunk, ranges), clip.backward, clip.reliable)
        cut = _hard_cut(per_chunk, ranges, clip, frame_errors, crossing)
        lines.append(f"  chunks ({start}): inside {pooled(errors[start], inside):.1f} over {len(inside)} steps, at "
                     f"the joins {pooled(errors[start], sorted(crossing)):.1f} over {len(crossing)} steps (a hard cut "
                     f"instead of the fade: {cut:.1f}); wall {wall:.1f} s, a later frame {np.mean(seconds):.1f} s on "
                     f"its worker")
        with open(args.out / f"chunks_{args.chunk}_{args.overlap}_{start}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "join", *errors])
            for i in range(1, len(frames)):
                w.writerow([f"{i}->{i + 1}", int(i in crossing),
                            *(f"{e[i - 1][0] / max(1.0, e[i - 1][1]):.2f}" for e in errors.values())])
    head = (f"  serial clip: all steps {pooled(errors['serial'], range(1, len(frames))):.1f}, inside-steps "
            f"{pooled(errors['serial'], inside):.1f}, join-steps {pooled(errors['serial'], sorted(crossing)):.1f}; "
            f"wall {walls['serial']:.1f} s\n") if "serial" in errors else ""
    say("temporal error (mean squared warped difference over reliable pixels, 0..255):\n" + head + "\n".join(lines))
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
