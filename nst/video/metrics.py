"""The temporal-consistency error of a stylised clip (the issue's measure, after Ruder et al. section 5).

``error = sum_i sum_p m_i(p) |s_i(p) - s_{i-1}(p + b_i(p))|^2 / (3 sum_i sum_p m_i(p))``: the mean squared
difference (0..255 scale, per channel) between each stylised frame and the previous stylised frame warped
into it along the backward flow ``b_i``, over the reliable pixels ``m_i``. With a synthetic clip the flow
and the reliable pixels are the ground truth (:mod:`nst.video.synthetic`), so the number is exact; with a
real clip they are estimated (:func:`nst.video.flow.frame_pair`).
"""

from __future__ import annotations

import numpy as np

from nst.video.flow import frame_pair, warp


def frame_errors(stylised: list[np.ndarray], backward: list, reliable: list) -> list[tuple[float, float]]:
    """Per frame i >= 1: (sum of masked squared differences, number of masked values)."""
    out = []
    for i in range(1, len(stylised)):
        warped = warp(np.asarray(stylised[i - 1], np.float32), backward[i])
        m = np.asarray(reliable[i], np.float32)[..., None]
        diff = np.asarray(stylised[i], np.float32) - warped
        out.append((float(np.sum(m * diff ** 2)), float(3 * m.sum())))
    return out


def temporal_error(stylised: list[np.ndarray], backward: list, reliable: list) -> float:
    """Mean squared warped-frame difference over reliable pixels, pooled over the clip's frame pairs."""
    errs = frame_errors(stylised, backward, reliable)
    return sum(e for e, _ in errs) / max(1.0, sum(n for _, n in errs))


def estimated_error(stylised: list[np.ndarray], frames: list[np.ndarray], method: str = "dis") -> float:
    """The same error for a real clip: flow and reliable pixels estimated from the input ``frames``."""
    backward, reliable = [None], [None]
    for i in range(1, len(frames)):
        b, c = frame_pair(frames[i], frames[i - 1], method)
        backward.append(b)
        reliable.append(c > 0)
    return temporal_error(stylised, backward, reliable)
