"""Synthetic test clips with known optical flow: a camera panning and zooming over a photo, with a disc cut
from a second photo moving across it.

Every frame is rendered by inverse mapping, so the exact backward flow (frame i -> frame i-1) of every pixel
is known, and so is which pixels are reliable (seen in both frames, away from the disc's edge): the ground
truth that the flow, the consistency mask and the temporal-consistency metric are measured against
(tests/test_video.py, experiments/video_consistency.py). ``python -m nst.video.synthetic OUT`` writes one
(a video file, or a folder of PNG frames when OUT has no video suffix).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

EDGE = 1.5  # px: pixels this close to the disc's edge mix disc and background when resampled; not "reliable"


@dataclass
class SyntheticClip:
    frames: list[np.ndarray]  # (H, W, 3) uint8 RGB
    backward: list[np.ndarray | None]  # [i] = exact flow frame i -> frame i-1, (H, W, 2); None for frame 0
    reliable: list[np.ndarray | None]  # [i] = (H, W) bool: p and p + backward[i](p) show the same surface point


def _camera(i: int, n: int, photo_hw, hw, pan: float, zoom: float) -> tuple[float, np.ndarray]:
    """Frame i's map frame px -> photo px: s = z p + t (z photo px per frame px)."""
    t = i / max(1, n - 1)
    ph, pw = photo_hw
    h, w = hw
    z = min(ph / h, pw / w) * 0.8 * (1 - zoom * t)  # zooming in: fewer photo px per frame px
    cx = pw / 2 + pan * (t - 0.5) * pw * 0.15
    cy = ph / 2 + pan * (t - 0.5) * ph * 0.05
    return z, np.array([cx - z * w / 2, cy - z * h / 2], np.float32)


def make_clip(photo: np.ndarray, sprite: np.ndarray, size: tuple[int, int] = (96, 64), frames: int = 6,
              pan: float = 1.0, zoom: float = 0.15, speed: float = 3.0) -> SyntheticClip:
    """A ``frames``-long clip of ``size`` = (width, height) px over ``photo``, a disc of ``sprite`` moving
    ``speed`` px per frame to the right and slightly down."""
    w, h = size
    hw = (h, w)
    xs, ys = np.mgrid[0:h, 0:w].astype(np.float32)[::-1]
    r = 0.22 * min(w, h)
    tex = cv2.resize(np.ascontiguousarray(sprite), (int(2 * r) + 2, int(2 * r) + 2), interpolation=cv2.INTER_AREA)
    # shrink the photo first (area filter) so the camera magnifies it (z >= 1): resampling a downscale
    # aliases, and then consecutive frames would not be exact resamplings of one surface
    k = 1.5 / min(photo.shape[0] / h, photo.shape[1] / w)
    photo = cv2.resize(np.ascontiguousarray(photo), (round(photo.shape[1] * k), round(photo.shape[0] * k)),
                       interpolation=cv2.INTER_AREA)
    velocity = np.array([speed, 0.3 * speed], np.float32)
    start = np.array([0.3 * w, 0.4 * h], np.float32) - velocity * (frames - 1) / 2 * 0.3
    out = SyntheticClip([], [], [])
    prev = None
    for i in range(frames):
        z, t = _camera(i, frames, photo.shape[:2], hw, pan, zoom)
        affine = np.array([[z, 0, t[0]], [0, z, t[1]]], np.float32)
        bg = cv2.warpAffine(photo, affine, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REFLECT)
        centre = start + velocity * i
        dist = np.hypot(xs - centre[0], ys - centre[1])
        disc = dist < r
        shift = np.array([[1, 0, centre[0] - r], [0, 1, centre[1] - r]], np.float32)  # texture px -> frame px
        obj = cv2.warpAffine(tex, shift, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        out.frames.append(np.where(disc[..., None], obj, bg).astype(np.uint8))
        if prev is None:
            out.backward.append(None)
            out.reliable.append(None)
        else:
            pz, pt, pcentre = prev
            # background: p -> photo (z p + t) -> previous frame ((s - pt) / pz); disc: p - velocity
            bx, by = (z * xs + t[0] - pt[0]) / pz - xs, (z * ys + t[1] - pt[1]) / pz - ys
            back = np.stack([np.where(disc, -velocity[0], bx), np.where(disc, -velocity[1], by)], -1)
            px, py = xs + back[..., 0], ys + back[..., 1]
            prev_dist = np.hypot(px - pcentre[0], py - pcentre[1])
            in_frame = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
            away = np.abs(dist - r) > EDGE
            same = np.where(disc, prev_dist < r - EDGE, prev_dist > r + EDGE)  # bg hidden by the disc before
            out.backward.append(back.astype(np.float32))
            out.reliable.append(in_frame & away & same)
        prev = (z, t, centre)
    return out


def sample_clip(data_dir: Path, size=(96, 64), frames: int = 6, **kw) -> SyntheticClip:
    """The clip the tests and the README use: Tuebingen with a disc of the second content photo."""
    from nst.images import read_image

    photo = read_image(Path(data_dir) / "content" / "tubingen.jpg", "photo")
    sprite = read_image(Path(data_dir) / "content" / "brad_pitt.jpg", "photo")
    return make_clip(photo, sprite, size, frames, **kw)


def main(argv: list[str] | None = None) -> int:
    from nst.cli import say
    from nst.video.io import write_frames_folder, write_video

    p = argparse.ArgumentParser(prog="python -m nst.video.synthetic", description=__doc__.split("\n\n")[0])
    p.add_argument("output", help="a video file (.mp4 .mov .webm .gif) or a folder for PNG frames")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2].parent / "shared" / "data"),
                   help="the sample images folder (default: ../shared/data beside the checkout)")
    p.add_argument("--size", type=int, nargs=2, default=[256, 160], metavar=("W", "H"))
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--fps", type=float, default=12.0)
    args = p.parse_args(argv)
    clip = sample_clip(Path(args.data), tuple(args.size), args.frames)
    out = Path(args.output)
    if out.suffix.lower() in (".mp4", ".mov", ".webm", ".gif"):
        write_video(clip.frames, out, args.fps)
    else:
        write_frames_folder(clip.frames, out)
    say(f"wrote {len(clip.frames)} frames of {args.size[0]}x{args.size[1]} -> {out}")
    return 0


if __name__ == "__main__":
    from nst.cli import run_main

    raise SystemExit(run_main(main))
