"""Clips in and videos out, through PyAV (FFmpeg's libraries in the wheel; no system ffmpeg needed).

A clip is a video file (.mp4 .mov .webm .gif, anything FFmpeg decodes) or a folder of frame images (read
in natural name order through :func:`nst.images.read_image`). Frames come out resized to the run's size
(long side ``image.size``, sides rounded down to even numbers as H.264/VP9 need), uint8 RGB. Videos are
written atomically (a temporary file renamed at the end): H.264 for .mp4/.mov, VP9 for .webm, GIF for .gif;
GIFs through Pillow with a palette per frame (FFmpeg's GIF encoder has one fixed 3-3-2 palette);
the source's audio for the stylised span of frames is copied (or re-encoded when the container cannot hold
its codec: AAC into .mp4/.mov, Opus into .webm).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import numpy as np

from nst.errors import UserError
from nst.images import read_image, resize, save_png, target_size

MIN_FPS, MAX_FPS = 0.1, 240.0  # frame rates a clip (or video.folder_fps) may have
MAX_CLIP_BYTES = 4 << 30  # the clip's frames are held in memory at the run's size: past this, a part of it
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_CODECS = {".mp4": ("libx264", "yuv420p"), ".mov": ("libx264", "yuv420p"), ".webm": ("libvpx-vp9", "yuv420p")}
VIDEO_SUFFIXES = (*VIDEO_CODECS, ".gif")
AUDIO_COPY = {".mp4": ("aac", "mp3", "opus", "alac"), ".mov": ("aac", "mp3", "alac", "pcm_s16le"),
              ".webm": ("opus", "vorbis")}
AUDIO_ENCODER = {".mp4": "aac", ".mov": "aac", ".webm": "libopus"}


@dataclass
class Clip:
    frames: list[np.ndarray]  # (h, w, 3) uint8 RGB at the run's size, frames start..end-1 of the source
    fps: Fraction
    start: int  # index of frames[0] in the source
    source: Path
    source_size: tuple[int, int]  # (width, height) before resizing
    audio: bool  # the source has an audio stream (video files only)
    note: str = ""  # what the reader noticed (a file that ends before its header says it does)

    @property
    def hw(self) -> tuple[int, int]:
        return tuple(self.frames[0].shape[:2])


def even_size(shape_hw: tuple[int, int], size) -> tuple[int, int]:
    """(width, height) for ``image.size``, rounded down to even sides (yuv420p video needs them)."""
    w, h = target_size(shape_hw, size)
    return max(2, w - w % 2), max(2, h - h % 2)


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _held(frames: list[np.ndarray], name: str) -> None:
    """Refuse a clip whose frames (at the run's size) would not fit the memory they are held in."""
    held = sum(f.nbytes for f in frames)
    if held > MAX_CLIP_BYTES:
        h, w = frames[0].shape[:2]
        raise UserError(f"input clip {name}: {len(frames)} frames at {w}x{h} already take {held / 2**30:.1f} GB, "
                        f"over the {MAX_CLIP_BYTES / 2**30:.0f} GB a clip may hold in memory; stylise a part "
                        f"(video.start_frame, video.end_frame) or lower image.size")


def _fit(frame: np.ndarray, size, what: str) -> np.ndarray:
    wh = even_size(frame.shape[:2], size)
    return resize(frame, wh, what).astype(np.uint8) if (frame.shape[1], frame.shape[0]) != wh else frame


def read_clip(path: str | Path, size, start: int = 0, end: int | None = None, folder_fps: float = 24.0,
              max_pixels: int = 50_000_000) -> Clip:
    """Frames ``start..end-1`` of a video file or a folder of images, resized for the run."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"input clip not found: {path}")
    clip = _read_folder(path, size, start, end, folder_fps, max_pixels) if path.is_dir() else \
        _read_video(path, size, start, end, max_pixels)
    if not clip.frames:
        raise UserError(f"input clip {path} has no frames from video.start_frame {start} on")
    return clip


def _read_folder(path: Path, size, start, end, folder_fps, max_pixels) -> Clip:
    files = sorted((p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and p.is_file()),
                   key=lambda p: _natural(p.name))
    if not files:
        raise UserError(f"input folder {path} holds no frame images ({', '.join(FRAME_SUFFIXES)})")
    frames, source_size = [], None
    for f in files[start:end]:
        raw = read_image(f, "frame", max_pixels)
        if source_size is None:
            source_size = (raw.shape[1], raw.shape[0])
        elif (raw.shape[1], raw.shape[0]) != source_size:
            raise UserError(f"frame {f.name} is {raw.shape[1]}x{raw.shape[0]}, the first frame "
                            f"{source_size[0]}x{source_size[1]}: a clip's frames must share one size")
        frames.append(_fit(raw, size, f"frame {f.name}"))
        if len(frames) % 64 == 0:
            _held(frames, path.name)
    return Clip(frames, Fraction(folder_fps).limit_denominator(1001), start, path, source_size or (0, 0), False)


def _read_video(path: Path, size, start, end, max_pixels) -> Clip:
    import av

    if path.stat().st_size == 0:
        raise UserError(f"input clip is an empty file: {path}")
    frames, source_size, i = [], (0, 0), -1
    try:
        # metadata_errors: a tag that is not UTF-8 (a damaged header) must not stop a clip that decodes
        with av.open(str(path), metadata_errors="replace") as container:
            if not container.streams.video:
                raise UserError(f"input clip {path} has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not fps or not MIN_FPS <= float(fps) <= MAX_FPS:
                raise UserError(f"input clip {path}: its frame rate {'cannot be read' if not fps else f'{float(fps):g} fps'}"
                                f" (a damaged header?); a clip must be {MIN_FPS:g}..{MAX_FPS:g} fps")
            declared = stream.frames or (round(float(container.duration / 1e6) * float(fps))
                                         if container.duration else 0)
            audio = bool(container.streams.audio)
            for i, frame in enumerate(container.decode(stream)):
                if end is not None and i >= end:
                    break
                if frame.width * frame.height > max_pixels:
                    raise UserError(f"input clip {path.name} is {frame.width}x{frame.height}, over the limit of "
                                    f"{max_pixels:,} pixels (image.max_input_pixels)")
                if i < start:
                    continue
                if frames and (frame.width, frame.height) != source_size:
                    raise UserError(f"input clip {path.name} changes size at frame {i} ({frame.width}x{frame.height}"
                                    f", before {source_size[0]}x{source_size[1]}): a clip's frames must share one size")
                source_size = (frame.width, frame.height)
                frames.append(_fit(frame.to_ndarray(format="rgb24"), size, f"frame {i} of {path.name}"))
                if len(frames) % 64 == 0:
                    _held(frames, path.name)
    except (av.FFmpegError, UnicodeDecodeError, MemoryError) as exc:
        # FFmpeg's own words mislead here ("Cannot allocate memory", "End of file", "avcodec_send_packet()")
        where = f" from frame {i + 1} on" if i >= 0 else ""
        codec = " (its codec cannot be decoded here)" if "Decoder not found" in str(exc) else ""
        raise UserError(f"input clip {path} is corrupt or not a video: it cannot be decoded{where}{codec}") from None
    if not frames and i < 0:
        raise UserError(f"input clip {path} is corrupt or not a video: it decodes to no frames")
    got = i + 1 if end is None or i < end else end
    note = (f"notice: input clip {path.name} ended after {got} frames, its header says {declared}: cut short?"
            if end is None and declared and got < 0.9 * declared else "")
    return Clip(frames, Fraction(fps), start, path, source_size, audio, note)


def frame_name(index: int) -> str:
    """The PNG name of the ``index``-th (1-based) stylised frame."""
    return f"frame_{index:05d}.png"


def write_frames_folder(frames: Iterable[np.ndarray], folder: str | Path) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames, 1):
        save_png(f, folder / frame_name(i))


def write_video(frames: Iterable[np.ndarray], path: str | Path, fps, audio_from: tuple[Path, float, float] | None = None,
                log=lambda _s: None) -> bool:
    """Encode (H, W, 3) frames into ``path`` (by suffix) at ``fps``; returns whether audio was written.

    ``audio_from`` = (source, t0, t1): the source's audio between t0 and t1 seconds goes along, shifted to 0.
    """
    import av

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise UserError(f"output video {path.name}: unknown kind; use one of {', '.join(VIDEO_SUFFIXES)}")
    tmp = path.with_name(f".{path.stem}.tmp{suffix}")
    try:
        return _encode(frames, path, tmp, suffix, fps, audio_from, log)
    except (OSError, av.FFmpegError) as exc:  # a full disk, a folder gone: one line, no half-made video
        why = getattr(exc, "strerror", None) or str(exc)
        raise UserError(f"cannot write the video {path}: {why}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _encode(frames, path: Path, tmp: Path, suffix: str, fps, audio_from, log) -> bool:
    import av

    if suffix == ".gif":
        if audio_from:
            log("notice: .gif holds no audio; the clip's sound is left out")
        _write_gif(frames, tmp, fps)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        return False
    codec, pix_fmt = VIDEO_CODECS[suffix]
    with av.open(str(tmp), "w") as out:
        stream = None
        audio = _AudioCopy(out, suffix, *audio_from, log) if audio_from else None
        for frame in frames:
            if stream is None:
                stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001000))
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = pix_fmt
                if codec == "libx264":
                    stream.options = {"crf": "18"}
                if audio:
                    audio.start()  # streams must all exist before the first packet
            vf = av.VideoFrame.from_ndarray(np.clip(np.rint(frame), 0, 255).astype(np.uint8), format="rgb24")
            out.mux(stream.encode(vf))
        if stream is None:
            raise UserError(f"no frames to write into {path}")
        out.mux(stream.encode(None))
        wrote_audio = audio.finish() if audio else False
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return wrote_audio


def _write_gif(frames: Iterable[np.ndarray], path: Path, fps) -> None:
    from PIL import Image

    images = [Image.fromarray(np.clip(np.rint(f), 0, 255).astype(np.uint8)) for f in frames]
    if not images:
        raise UserError(f"no frames to write into {path}")
    # GIF delays are whole centiseconds
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=max(20, round(1000 / float(fps))), optimize=False)


class _AudioCopy:
    """The source's audio between t0 and t1 into ``out``: packets copied, or decoded and re-encoded."""

    def __init__(self, out, suffix: str, source: Path, t0: float, t1: float, log):
        import av

        self.src = av.open(str(source), metadata_errors="replace")
        if not self.src.streams.audio:
            self.src.close()
            self.src = None
            return
        self.ins = self.src.streams.audio[0]
        self.out, self.t0, self.t1, self.log = out, t0, t1, log
        self.copy = self.ins.codec_context.name in AUDIO_COPY[suffix]
        self.suffix = suffix

    def start(self) -> None:
        if self.src is None:
            return
        if self.copy:
            self.stream = self.out.add_stream_from_template(self.ins)
        else:
            rate = self.ins.codec_context.sample_rate or 48000
            self.stream = self.out.add_stream(AUDIO_ENCODER[self.suffix], rate=48000 if self.suffix == ".webm" else rate)
            self.log(f"notice: audio {self.ins.codec_context.name} re-encoded as {AUDIO_ENCODER[self.suffix]} for {self.suffix}")

    def finish(self) -> bool:
        import av

        if self.src is None:
            return False
        tb = self.ins.time_base
        wrote = False
        with self.src:
            if self.copy:
                for packet in self.src.demux(self.ins):
                    if packet.pts is None or packet.size == 0:
                        continue
                    t = float(packet.pts * tb)
                    if t < self.t0 or t >= self.t1:
                        continue
                    shift = int(round(self.t0 / tb))
                    packet.pts -= shift
                    packet.dts = packet.pts if packet.dts is None else packet.dts - shift
                    packet.stream = self.stream
                    self.out.mux(packet)
                    wrote = True
                return wrote
            ctx = self.stream.codec_context
            resampler = av.AudioResampler(format=ctx.format.name, layout=ctx.layout.name, rate=ctx.sample_rate,
                                          frame_size=ctx.frame_size or None)
            for frame in self.src.decode(self.ins):
                if frame.time is None or not self.t0 <= frame.time < self.t1:
                    continue
                frame.pts = None
                for rf in resampler.resample(frame):
                    self.out.mux(self.stream.encode(rf))
                    wrote = True
            for rf in resampler.resample(None):
                self.out.mux(self.stream.encode(rf))
            self.out.mux(self.stream.encode(None))
        return wrote
