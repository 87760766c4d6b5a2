"""Optical flow between frames, warping along it, and the per-pixel consistency weights of Ruder et al.

Ruder, Dosovitskiy & Brox 2016 (arXiv:1604.08610), section 3: frame i's stylisation is pulled towards the
previous stylised frame warped into frame i, ``w(p) = s_{i-1}(p + b(p))`` with ``b`` the *backward* flow
(frame i -> frame i-1), except where the flow cannot be trusted. The weights ``c`` are 0 there:

* disocclusion (forward-backward check, their eq. 5): with ``f~(p) = f(p + b(p))`` the forward flow
  (frame i-1 -> frame i) read where ``b`` points, ``|f~ + b|^2 > 0.01 (|f~|^2 + |b|^2) + 0.5``;
* motion boundaries (their eq. 6): ``|grad b_x|^2 + |grad b_y|^2 > 0.01 |b|^2 + 0.002``;
* and (ours) pixels whose ``p + b(p)`` lies outside the previous frame.

Flow is OpenCV's (DIS by default, Farneback as the alternative; docs/VIDEO.md has the measured endpoint
errors against the synthetic ground truth of :mod:`nst.video.synthetic`). Convention throughout:
``flow(src, dst)[p] = d`` means ``src(p) ~ dst(p + d)``; flows are (H, W, 2) float32, (dx, dy).
"""

from __future__ import annotations

import cv2
import numpy as np



def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(np.rint(frame), 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)


def flow(src: np.ndarray, dst: np.ndarray, method: str = "dis") -> np.ndarray:
    """(H, W, 3) RGB frames -> (H, W, 2) flow with ``src(p) ~ dst(p + flow(p))``."""
    a, b = _gray(src), _gray(dst)
    if method == "dis":
        # the MEDIUM preset refined down to full resolution (finest scale 0, patch stride 4): on the synthetic
        # pan this halves the preset's endpoint error (docs/VIDEO.md); sub-pixel accuracy matters because a
        # stylised frame's brush strokes are sharp, so a 1 px error reads as flicker
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        dis.setFinestScale(0)
        dis.setPatchStride(4)
        return dis.calc(a, b, None).astype(np.float32)
    if method == "farneback":
        # pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags (OpenCV's documented example values)
        return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 15, 3, 5, 1.2, 0).astype(np.float32)
    raise ValueError(f"unknown flow method {method!r}")


def _grid(hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:hw[0], 0:hw[1]].astype(np.float32)
    return xs, ys


def warp(image: np.ndarray, flow_: np.ndarray) -> np.ndarray:
    """``out(p) = image(p + flow(p))``, bilinear, edges repeated: (H, W, C) or (H, W) float32."""
    xs, ys = _grid(flow_.shape[:2])
    return cv2.remap(np.ascontiguousarray(image, dtype=np.float32), xs + flow_[..., 0], ys + flow_[..., 1],
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def inside(flow_: np.ndarray) -> np.ndarray:
    """(H, W) bool: ``p + flow(p)`` lands inside the image."""
    h, w = flow_.shape[:2]
    xs, ys = _grid((h, w))
    x, y = xs + flow_[..., 0], ys + flow_[..., 1]
    return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)


def disoccluded(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """(H, W) bool: the forward-backward check fails (Ruder et al. eq. 5)."""
    f = warp(forward, backward)  # (H, W, 2): the forward flow where the backward flow lands
    round_trip = np.sum((f + backward) ** 2, axis=-1)
    return round_trip > 0.01 * (np.sum(f ** 2, axis=-1) + np.sum(backward ** 2, axis=-1)) + 0.5


def motion_boundary(backward: np.ndarray) -> np.ndarray:
    """(H, W) bool: the flow's gradient is large against its size (Ruder et al. eq. 6)."""
    gy_u, gx_u = np.gradient(backward[..., 0])
    gy_v, gx_v = np.gradient(backward[..., 1])
    grad = gx_u ** 2 + gy_u ** 2 + gx_v ** 2 + gy_v ** 2
    return grad > 0.01 * np.sum(backward ** 2, axis=-1) + 0.002


def consistency(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """(H, W) float32 weights c in {0, 1}: 1 where warping the previous frame along ``backward`` is trusted."""
    ok = inside(backward) & ~disoccluded(backward, forward) & ~motion_boundary(backward)
    return ok.astype(np.float32)


def frame_pair(current: np.ndarray, previous: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """(backward flow current -> previous, consistency weights) for warping the previous frame into ``current``."""
    backward = flow(current, previous, method)
    forward = flow(previous, current, method)
    return backward, consistency(backward, forward)
