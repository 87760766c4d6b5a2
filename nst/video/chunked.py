"""``python -m nst.video`` in chunks (``video.chunk_length`` > 0): the run folder, resume, progress, the join.

```
OUT/chunks/01/frames/frame_00001.png ...   each chunk a video run of its own frames (nst.video.record):
OUT/chunks/01/run.json, losses.csv          its PNGs, its losses, its resume; numbered within the chunk
OUT/frames/frame_00001.png ...              the joined clip, written once every chunk is done
OUT/run.json                                status, frames done of the chunks' total, each chunk's progress
```

Each finished frame of a chunk is written as it arrives, so an interrupted run (Ctrl-C, kill, a crash, a
worker lost for good) keeps every frame it finished, and the same command resumes each chunk after its last
frame. The joined frames and the video are written only when every chunk is complete: a missing chunk
never leaves a finished-looking result. Where the steps run (here or Ray) is the caller's
(:mod:`nst.video.chunk_pool`); a chunked clip's frames do not depend on it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from nst.cli import say
from nst.errors import UserError
from nst.events import Cancelled, Control, Progress
from nst.outputs import Interrupted
from nst.video.chunk_pool import ChunkPool, ClipJob, run_here, wall_estimate
from nst.video.chunks import FrameOut, FrameSolver, Schedule, Step, chunk_ranges, join, plan


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class ChunkProgress:
    """Frames done of the chunks' total and the time left, from the later frames' seconds so far."""

    def __init__(self, schedule: Schedule, workers: int, quiet: bool):
        self.schedule, self.workers, self.quiet = schedule, max(1, workers), quiet
        self.seconds: list[float] = []
        self.started = time.perf_counter()

    def left(self) -> float:
        if not self.seconds:
            return float("nan")
        per = float(np.mean(self.seconds))
        lengths = [self.schedule.left(k) for k in range(len(self.schedule.chains))]
        if not any(lengths):
            return 0.0
        # the key frame is in (or not yet): wall_estimate counts chunk 1's first frame once
        key_done = (0, self.schedule.chains[0][0].frame) in self.schedule.results
        return wall_estimate(per, [n + key_done if k == 0 else n for k, n in enumerate(lengths)],
                             self.workers) - (per if key_done else 0.0)

    def frame(self, step: Step, local: int, length: int, out: FrameOut) -> str:
        if step.source is not None:
            self.seconds.append(out.seconds)
        done, total = len(self.schedule.results) + 1, self.schedule.total
        left = self.left() if done < total else 0.0
        reliable = f", {100 * out.info['reliable']:.0f}% reliable" if "reliable" in out.info else ""
        eta = "?" if left != left else _clock(left)
        return (f"chunk {step.chunk + 1}/{len(self.schedule.chains)} frame {local}/{length} (clip frame "
                f"{step.frame + 1}) done in {out.seconds:.1f} s ({out.iterations} it{reliable}); {done}/{total} "
                f"frames of the chunks done, {_clock(time.perf_counter() - self.started)} so far, clip {eta} left")


def run_chunked(cfg, clip, styles, run, video_path: Path, loaded_weights, control: Control, write_video,
                where=None, source=None) -> dict:
    """The chunked clip into ``run`` (the outer :class:`nst.video.record.VideoRun`); returns run.json's record.

    ``where`` (:class:`nst.cluster.Where`, Ray already reached) spreads the frames over a :class:`ChunkPool`;
    ``source`` overrides the network's weights, here or in the workers (tests: a stub network)."""
    from nst.recipe import TransferRecipe
    from nst.tile_pool import WeightsSource
    from nst.transfer import make_extractors
    from nst.video.record import VideoRun
    from nst.weights import cache_dir, load_weights

    v, n, out = cfg.video, len(clip.frames), run.out_dir
    ranges = chunk_ranges(n, v.chunk_length, v.chunk_overlap)
    schedule = Schedule(plan(ranges, "key"))
    weights, info = loaded_weights or load_weights(cfg.model.network, cfg.model.weights, cfg.model.download)
    recipe = TransferRecipe.of(cfg, info.network)  # unknown layers fail here
    say(f"network: {info.network} ({info.source})\nweights: {info.path} sha256 {info.sha256}")
    chunks: list[VideoRun] = []
    pool = None

    def progress() -> dict:
        return {"frames_chunked": len(schedule.results), "frames_chunked_total": schedule.total,
                "chunks": [{"frames": [s + 1, e], "done": c.done} for (s, e), c in zip(ranges, chunks)],
                "where": where.describe() if where is not None else "here, serially"}

    try:
        for k, (s, e) in enumerate(ranges):  # each checked (and locked) before anything is written
            chunks.append(VideoRun(out / "chunks" / f"{k + 1:02d}", {**run.config, "chunk": [s, e]},
                                   Path(cfg.content), e - s, clip.hw, run.restart))
        for k, c in enumerate(chunks):
            for j in range(1, c.done + 1):
                schedule.results[(k, ranges[k][0] + j - 1)] = c.frame_image(j)
        if where is not None and where.parallel:
            pool = ChunkPool(source or WeightsSource(info.network, info.path), max_parallel=where.max_parallel,
                             cpus=where.cpus)
            say(f"chunks: {pool.describe()} ({where.describe()})")
        run.begin(info)
        for c in chunks:
            c.begin(info)
        kept = len(schedule.results)
        say(f"{len(ranges)} chunk(s) of up to {v.chunk_length} frames, overlap {v.chunk_overlap}: "
            + ", ".join(f"{s + 1}..{e}" for s, e in ranges) + f"; {schedule.total} frames to stylise"
            + (f", {kept} kept from before (resuming)" if kept else ""))
        say(f"output -> {video_path} and {out}/")
        workers = pool.slots if pool else 1
        printer = ChunkProgress(schedule, min(workers, len(ranges)), cfg.progress.quiet)
        current: list[VideoRun] = [chunks[0]]
        control.subscribers[:0] = [lambda ev: current[0](ev)]  # losses.csv of the chunk whose frame it is

        def status(state: str, **extra) -> dict:
            return run.write(state, **progress(), **extra)

        def on_frame(step: Step, fo: FrameOut) -> np.ndarray:
            c, local = chunks[step.chunk], step.frame - ranges[step.chunk][0] + 1
            current[0], c.frame = c, local
            image = fo.image
            for i, (precision, terms, seconds) in enumerate(fo.events, 1):
                vals = dict(terms)
                total = vals.pop("total")
                control.emit(Progress(i, vals, total, seconds, image, len(fo.events), precision=precision))
            c.frame_done(local, image, {"iterations": fo.iterations, "seconds": round(fo.seconds, 3),
                                        "stop": fo.stop, "clip_frame": step.frame + 1,
                                        "warped_from": None if step.source is None else step.source + 1,
                                        **fo.info})
            line = printer.frame(step, local, ranges[step.chunk][1] - ranges[step.chunk][0], fo)
            status("running")
            if not cfg.progress.quiet:
                say(line)
            return c.frame_image(local)  # the 8-bit frame as saved: what a resumed run warps from

        if not schedule.finished:
            job = ClipJob(cfg, styles, clip.frames[0], n, recipe.network, recipe.pooling, list(recipe.layers))
            if pool is not None:
                pool.run(schedule, clip.frames, job, on_frame, control, say)
            else:
                from nst.determinism import seed_everything

                seed_everything(cfg.seed)
                extractors = (source.extractors(recipe.network, recipe.pooling, list(recipe.layers)) if source
                              else make_extractors(recipe, weights))
                solver = FrameSolver(cfg, extractors, styles, clip.frames[0], n, say, cache_dir())
                run_here(schedule, clip.frames, solver, on_frame, control)
        for c in chunks:
            c.close_csv()
            c.write("finished")
        per_chunk = [[schedule.results[(k, j)] for j in range(s, e)] for k, (s, e) in enumerate(ranges)]
        for i, frame in enumerate(join(per_chunk, ranges)):
            owners = [k + 1 for k, (s, e) in enumerate(ranges) if s <= i < e]
            run.frame_done(i + 1, frame, {"chunks": owners, **({"faded": True} if len(owners) > 1 else {})})
        run.close_csv()
        frames = (run.frame_image(k) for k in range(1, n + 1))
        t0, t1 = clip.start / clip.fps, (clip.start + n) / clip.fps
        audio = write_video(frames, video_path, clip.fps, (clip.source, float(t0), float(t1)) if clip.audio else None,
                            say)
        extra = {"retried_frames": pool.retried, "worker_seconds": round(pool.busy, 1)} if pool else {}
        done = status("finished", video=str(video_path), audio=audio, fps=str(clip.fps), **extra)
    except Cancelled as exc:
        trouble = _abort(run, chunks, "cancelled", progress=progress())
        if trouble:
            raise UserError(f"run cancelled, but run.json could not be updated ({trouble})") from None
        say(f"cancelled: {exc}; {len(schedule.results)} of {schedule.total} frames kept; the same command resumes")
        return run.last or {"status": "cancelled", "frames_done": 0}
    except KeyboardInterrupt:
        trouble = _abort(run, chunks, "interrupted", progress=progress())
        kept = (f"run.json (status interrupted) and {len(schedule.results)} of {schedule.total} frames of the chunks "
                f"kept in {out}; the same command resumes" + (f"; run.json could not be updated ({trouble})"
                                                               if trouble else ""))
        raise Interrupted(kept) from None
    except UserError as exc:
        trouble = _abort(run, chunks, "failed", str(exc), progress())
        if trouble:
            raise UserError(f"{exc}; run.json could not be updated either ({trouble})") from None
        raise
    except BaseException as exc:
        _abort(run, chunks, "failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if pool is not None:
            pool.close()
        for c in chunks:
            c.close()
    say(f"done: {video_path} ({n} frames from {len(ranges)} chunks, audio {'copied' if audio else 'none'}); frames "
        f"in {run.frames_dir}")
    return done


def _abort(run, chunks, status: str, error: str = "", progress=None) -> str:
    """Record how the clip ended in every chunk's folder and the clip's; ``progress`` (frames of the chunks done,
    per chunk) keeps what a resumed run will find in the clip's run.json too."""
    troubles = [c.abort(status, error) for c in chunks]
    return run.abort(status, error, **(progress or {})) or next((t for t in troubles if t), "")
