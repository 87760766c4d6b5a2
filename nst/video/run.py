"""``python -m nst.video CONFIG --input CLIP --output OUT.mp4 [--set k=v ...] [--restart]``: a stylised clip.

Wires clip -> weights -> :class:`nst.video.stylize.ClipStylizer` -> run folder (:mod:`nst.video.record`)
-> video (:mod:`nst.video.io`). Everything that can be refused (config, clip, styles, weights, layers,
output) is checked before the first iteration. Running the same command again after an interruption
resumes after the last finished frame.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from nst.cli import run_main, say
from nst.cluster import Where, add_flags, where_from_args
from nst.config import defaults_yaml, to_dict
from nst.determinism import seed_everything
from nst.errors import UserError
from nst.events import Cancelled, Control, Progress
from nst.inputs import load_styles
from nst.outputs import Interrupted
from nst.progress import ProgressPrinter
from nst.run import config_from_args
from nst.video.config import VIDEO_SUFFIXES, VideoConfig, load_video_config
from nst.weights import cache_dir, load_weights


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m nst.video",
                                description="Stylise a clip with temporal consistency (Ruder et al. 2016).")
    p.add_argument("config", nargs="?", help="YAML config (see configs/video_*.yaml)")
    p.add_argument("--input", metavar="CLIP", help="a video file (.mp4 .mov .webm .gif ...) or a folder of frames")
    p.add_argument("--output", metavar="OUT", help="the stylised video (.mp4 .mov .webm .gif); its run folder is "
                                                   "OUT without the suffix (default: output_dir/video.mp4)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--restart", action="store_true", help="replace a different run in the run folder")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--defaults", action="store_true", help="print every key with its default and exit")
    add_flags(p, "a clip's chunks (video.chunk_length)")
    return p.parse_args(argv)


def outputs(args: argparse.Namespace) -> tuple[list[str], Path | None]:
    """(config overrides from --input/--output, the video path or None for the default)."""
    extra = [f"content={args.input}"] if args.input else []
    if not args.output:
        return [*args.set, *extra], None
    video = Path(args.output)
    if video.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(f"--output {video.name}: the video must end in one of {', '.join(VIDEO_SUFFIXES)}")
    return [*args.set, *extra, f"output_dir={video.with_suffix('')}"], video


class FramePrinter(ProgressPrinter):
    """The progress line with the frame (i/N) in front and the clip's time left at the end."""

    def __init__(self, frames: int, every: int, quiet: bool):
        super().__init__(1, every, quiet)
        self.frames, self.frame, self.frame_seconds = frames, 0, []

    def start(self, frame: int, iterations: int) -> None:
        self.frame, self.total = frame, iterations

    def clip_left(self, ev: Progress | None = None) -> float:
        later = self.frame_seconds[1:] if len(self.frame_seconds) > 1 else self.frame_seconds
        per_frame = sum(later) / len(later) if later else (ev.seconds / ev.iteration * self.total if ev else 0.0)
        here = ev.seconds / ev.iteration * (self.total - ev.iteration) if ev else 0.0
        return here + per_frame * (self.frames - self.frame)

    def line(self, ev: Progress) -> str:
        return f"frame {self.frame}/{self.frames} {super().line(ev)}; clip {_clock(self.clip_left(ev))} left"


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def require_extra() -> None:
    """PyAV and OpenCV come with the ``video`` extra; say so in one line when they are missing."""
    import importlib.util

    missing = [m for m, pkg in (("av", "av"), ("cv2", "opencv-python-headless")) if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"python -m nst.video needs the video extra: pip install -e '.[video]' (missing: "
                        f"{', '.join(missing)})")


def check_outputs(cfg: VideoConfig, video_path: Path, out: Path) -> None:
    """Never overwrite an input: the video is none of the config's files, and the run folder (and its
    ``frames/``) is not the clip's folder of frames."""
    video = video_path.resolve()
    inputs = {"the input clip": cfg.content, "init.path": cfg.init.path, "model.weights": cfg.model.weights,
              **{f"style image {s.path}": s.path for s in cfg.style}}
    for what, path in inputs.items():
        if path and Path(path).resolve() == video:
            raise UserError(f"--output {video_path} is {what}: the stylised video would replace it; choose another "
                            f"--output")
    clip, folder = Path(cfg.content).resolve(), out.resolve()
    if clip.is_dir() and (clip == folder or clip == folder / "frames" or folder / "frames" in clip.parents):
        raise UserError(f"the run folder {out} would write its frames into the input clip's folder {cfg.content}; "
                        f"choose another --output")
    if video.parent == (folder / "frames"):
        raise UserError(f"--output {video_path} lies in the run's frames/ folder; choose another --output")


def execute(cfg: VideoConfig, video_path: Path | None = None, restart: bool = False, loaded_weights=None,
            control: Control | None = None, where: Where | None = None, source=None) -> dict:
    """One video run; returns run.json's record (status finished / cancelled).

    ``video.chunk_length`` > 0 runs the clip in chunks (:mod:`nst.video.chunked`), on Ray when ``where`` says so
    (Ray is reached, or refused in one line, before the run folder is touched; ``source``: the workers' weights,
    tests give a stub). Without chunks ``where`` is ignored with a notice: the clip runs frame after frame here.

    The run folder's contract is :mod:`nst.video.record`'s (lock, space, atomic writes, failures recorded);
    a UserError (bad input, a failed write) leaves with run.json saying ``failed`` once the run has begun.
    """
    from nst.video.io import read_clip, write_video
    from nst.video.record import VideoRun

    v = cfg.video
    clip = read_clip(cfg.content, cfg.image.size, v.start_frame, v.end_frame, v.folder_fps,
                     cfg.image.max_input_pixels)
    h, w = clip.hw
    say(f"clip {clip.source.name}: {len(clip.frames)} frames (from {clip.start}) {clip.source_size[0]}x"
        f"{clip.source_size[1]} -> {w}x{h} at {float(clip.fps):.3g} fps{', with audio' if clip.audio else ''}")
    if clip.note:
        say(clip.note)
    styles = load_styles(cfg, max(clip.hw))
    out = Path(cfg.output_dir)
    video_path = Path(video_path or out / "video.mp4")
    check_outputs(cfg, video_path, out)
    n = len(clip.frames)
    parallel = where is not None and where.parallel
    if parallel and not v.chunk_length:
        say("notice: video.chunk_length is 0, so the clip runs here frame after frame (--ray / --address spread "
            "a clip's chunks: --set video.chunk_length=N)")
        where = None
    elif parallel:
        _connect(where)
    run = VideoRun(out, to_dict(cfg), Path(cfg.content), n, clip.hw, restart, video_path)
    try:
        if video_path.exists() and not run.video_owned:
            raise UserError(f"{video_path} exists and no earlier run of {out} wrote it; move it away or choose "
                            f"another --output")
        if v.chunk_length:
            from nst.video.chunked import run_chunked

            return run_chunked(cfg, clip, styles, run, video_path, loaded_weights, control or Control(), write_video,
                               where, source)
        return _run_frames(cfg, clip, styles, run, video_path, loaded_weights, control or Control(), write_video)
    finally:
        run.close()


def _connect(where: Where) -> None:
    """Ray up (or one error line); on a cluster nst is shipped to the workers, which may sit on other machines."""
    from nst.cluster import connect

    modules = None
    if where.address is not None:
        import nst

        modules = [str(Path(nst.__file__).parent)]
    connect(where.address, timeout=where.timeout, modules=modules)


def _run_frames(cfg, clip, styles, run, video_path: Path, loaded_weights, control: Control, write_video) -> dict:
    from nst.recipe import TransferRecipe
    from nst.transfer import make_extractors
    from nst.video.stylize import ClipStylizer

    v, n, out = cfg.video, len(clip.frames), run.out_dir
    weights, info = loaded_weights or load_weights(cfg.model.network, cfg.model.weights, cfg.model.download)
    recipe = TransferRecipe.of(cfg, info.network)  # unknown layers fail here
    say(f"network: {info.network} ({info.source})\nweights: {info.path} sha256 {info.sha256}")
    seed_everything(cfg.seed)
    extractors = make_extractors(recipe, weights)
    printer = FramePrinter(n, cfg.progress.every, cfg.progress.quiet)
    try:
        run.begin(info)
        if run.done:
            say(f"resuming after frame {run.done}/{n} (frames in {run.frames_dir})")
        say(f"output -> {video_path} and {out}/")
        control.subscribers[:0] = [run, printer]
        stylizer = ClipStylizer(cfg, extractors, styles, clip.frames[0], n, say, cache_dir())
        previous = run.previous_result()
        for i in range(run.done, n):
            start = time.perf_counter()
            run.frame = i + 1
            printer.start(i + 1, cfg.optimizer.iterations if i == 0 else v.iterations)
            result = (stylizer.first(clip.frames[0], control) if previous is None
                      else stylizer.next(clip.frames[i], clip.frames[i - 1], previous, control))
            seconds = time.perf_counter() - start
            printer.frame_seconds.append(seconds)
            run.frame_done(i + 1, result.image, {"iterations": result.iterations, "seconds": round(seconds, 3),
                                                 "stop": result.stop, **result.info})
            previous = run.previous_result()  # the 8-bit frame as saved: what a resumed run would start from
            if not cfg.progress.quiet:
                printer.close()
                say(f"frame {i + 1}/{n} done in {seconds:.1f} s ({result.iterations} it"
                    + (f", {100 * result.info['reliable']:.0f}% of pixels reliable" if "reliable" in result.info else "")
                    + f"); clip {_clock(printer.clip_left())} left")
        run.close_csv()
        frames = (run.frame_image(k) for k in range(1, n + 1))
        t0, t1 = clip.start / clip.fps, (clip.start + n) / clip.fps
        audio = write_video(frames, video_path, clip.fps, (clip.source, float(t0), float(t1)) if clip.audio else None,
                            say)
        done = run.write("finished", video=str(video_path), audio=audio, fps=str(clip.fps),
                         precision=stylizer.choice.record())
    except Cancelled as exc:
        trouble = run.abort("cancelled")
        if trouble:
            raise UserError(f"run cancelled, but run.json could not be updated ({trouble})") from None
        say(f"cancelled: {exc}; {run.done} of {n} frames kept; the same command resumes")
        return run.last or {"status": "cancelled", "frames_done": run.done}
    except KeyboardInterrupt:
        trouble = run.abort("interrupted")
        kept = (f"run.json (status interrupted) and {run.done} of {n} frame{'s' * (n != 1)} kept in {out}; the same "
                f"command resumes" if run.begun and not trouble else
                f"{run.done} of {n} frames kept in {out}" + (f"; run.json could not be updated ({trouble})"
                                                              if trouble else ""))
        raise Interrupted(kept) from None
    except UserError as exc:
        trouble = run.abort("failed", str(exc))
        if trouble:
            raise UserError(f"{exc}; run.json could not be updated either ({trouble})") from None
        raise
    except BaseException as exc:
        run.abort("failed", f"{type(exc).__name__}: {exc}")
        raise
    say(f"done: {video_path} ({n} frames, audio {'copied' if audio else 'none'}); frames in {run.frames_dir}")
    return done


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    where = where_from_args(args)
    overrides, video = outputs(args)

    def load() -> VideoConfig:
        cfg = load_video_config(args.config, overrides)
        require_extra()
        return cfg

    cfg = config_from_args(args, "python -m nst.video CONFIG --input CLIP [--output OUT.mp4] [--set key=value ...]",
                           lambda: defaults_yaml(VideoConfig), load)
    if cfg is not None:
        execute(cfg, video, args.restart, where=where)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
