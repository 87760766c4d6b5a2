"""The video config: every nst key (style, layers, loss, optimiser, precision ...) plus a ``video:`` section.

The ONE source of the video defaults. ``content`` is the clip (a video file or a folder of frames; the
CLI's ``--input`` sets it), ``image.size`` the frames' long side (each frame is resized to it, then
rounded down to even sides because H.264/VP9 need them), ``optimizer.iterations`` (and ``scales``) the
*first* frame's iterations, ``video.iterations`` every later frame's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from nst.config import PATH_KEYS, NSTConfig, check_choices, check_nst, load_config, refuse_controls
from nst.errors import UserError
from nst.video.io import MAX_FPS, MIN_FPS

FLOW_METHODS = ("dis", "farneback")  # nst/video/flow.py
TEMPORAL_FORMS = ("paper", "sum")  # nst/video/temporal.py


@dataclass(frozen=True)
class VideoSection:
    flow: str = "dis"  # dis (OpenCV DIS, medium preset) | farneback; README "Video" has both measured
    iterations: int = 100  # optimiser iterations of every frame after the first (the first: optimizer.iterations)
    start_frame: int = 0  # the first frame of the clip to stylise (0-based)
    end_frame: Union[int, None] = None  # one past the last frame to stylise; null = to the end of the clip
    temporal_weight: float = 1e7  # gamma (0 = no temporal loss); README "Video" has how it was chosen
    temporal_form: str = "paper"  # paper: sum c (x - w)^2 / (H W 3) (Ruder et al. eq. 7) | sum: without the / D
    init: str = "warped"  # warped: previous result warped by the flow (Ruder et al.) | frame: the config's init
    folder_fps: float = 24.0  # frames per second of a folder of frames, 0.1..240 (a video file keeps its own)
    chunk_length: int = 0  # frames per chunk (0: the whole clip frame after frame); chunks run in parallel on Ray
    chunk_overlap: int = 2  # frames two neighbouring chunks share (cross-faded), 0..(chunk_length - 1) // 2


@dataclass(frozen=True)
class VideoConfig(NSTConfig):
    output_dir: str = "runs/video"  # the run folder (--output OUT.mp4 makes it OUT's folder without the suffix)
    video: VideoSection = field(default_factory=VideoSection)


VIDEO_CHOICES = {"video.flow": FLOW_METHODS, "video.temporal_form": TEMPORAL_FORMS, "video.init": ("warped", "frame")}
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".gif")


def check_video(cfg: VideoConfig) -> None:
    if not cfg.content:
        raise UserError("no clip to stylise: give --input CLIP (a video file or a folder of frames)")
    check_nst(cfg)
    refuse_controls(cfg, "video")  # the clip's own objective has no masks, per-scale styles or luminance run
    check_choices(cfg, VIDEO_CHOICES)
    v = cfg.video
    if v.iterations < 1:
        raise UserError(f"config key 'video.iterations' must be at least 1, got {v.iterations}")
    if v.start_frame < 0:
        raise UserError(f"config key 'video.start_frame' must not be negative, got {v.start_frame}")
    if v.end_frame is not None and v.end_frame <= v.start_frame:
        raise UserError(f"config key 'video.end_frame' ({v.end_frame}) must be greater than video.start_frame "
                        f"({v.start_frame})")
    if v.temporal_weight < 0:
        raise UserError(f"config key 'video.temporal_weight' must not be negative, got {v.temporal_weight}")
    if not MIN_FPS <= v.folder_fps <= MAX_FPS:
        raise UserError(f"config key 'video.folder_fps' must be in {MIN_FPS:g}..{MAX_FPS:g} frames per second, got "
                        f"{v.folder_fps:g}")
    if v.chunk_length != 0 and v.chunk_length < 2:
        raise UserError(f"config key 'video.chunk_length' must be 0 (no chunks) or at least 2 frames, got "
                        f"{v.chunk_length}")
    if v.chunk_overlap < 0:
        raise UserError(f"config key 'video.chunk_overlap' must not be negative, got {v.chunk_overlap}")
    if v.chunk_length and v.chunk_overlap > (v.chunk_length - 1) // 2:
        raise UserError(f"config key 'video.chunk_overlap' ({v.chunk_overlap}) must be at most "
                        f"{(v.chunk_length - 1) // 2} for video.chunk_length {v.chunk_length} (no frame in three "
                        f"chunks)")
    if cfg.snapshots:
        raise UserError("config key 'snapshots' must be [] for video: every frame is saved in frames/")
    if cfg.init.method == "file":
        raise UserError("config key 'init.method': 'file' is not supported for video (one image for every frame?); "
                        "use noise, content or random")


def load_video_config(path: str | Path | None, overrides: list[str] = ()) -> VideoConfig:
    return load_config(path, overrides, schema=VideoConfig, check=check_video, path_keys=PATH_KEYS)
