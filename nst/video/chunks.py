"""A clip in chunks: runs of consecutive frames sharing a few frames of overlap, each chunk the usual
flow-warped, temporally consistent loop (:class:`nst.video.stylize.ClipStylizer`), the chunks in parallel
(:mod:`nst.video.chunk_pool`), joined by a cross-fade over each overlap. No files are read or written here.

Where a later chunk starts decides how well it joins. Started from the config's init (``start="init"``),
it paints its shared frames as another local minimum, and the fade only spreads that change over the
overlap (docs/VIDEO.md: 2-3x the error inside a chunk). Started from the **key frame** (``start="key"``,
the default) it warps the clip's stylised first frame straight to its own first frame (one flow, frame 1
-> frame s) and runs a later frame's ``video.iterations`` with the temporal loss against it: both chunks
of a join then carry the same strokes, and only the key frame has to be waited for (every chunk's first
frame needs it; nothing else is shared). Work is a set of :class:`Step` s, one frame each, a step waiting
only for the frame it warps from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from nst.errors import UserError

STARTS = ("key", "init")


def chunk_ranges(n: int, length: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) frame ranges covering ``n`` frames, ``length`` long, neighbours sharing ``overlap`` frames.

    The last chunk ends at ``n``; one that would add fewer than ``overlap + 1`` new frames is merged into the
    chunk before it (a join needs new frames after the overlap).
    """
    if length < 2:
        raise UserError(f"a chunk must be at least 2 frames long, got {length}")
    if not 0 <= overlap <= (length - 1) // 2:  # no frame in three chunks
        raise UserError(f"the chunks' overlap must be in 0..{(length - 1) // 2} frames (chunk length {length}), "
                        f"got {overlap}")
    out, start = [], 0
    while True:
        end = min(n, start + length)
        out.append((start, end))
        if end == n:
            break
        start = end - overlap
    if len(out) > 1 and out[-1][1] - out[-2][1] < overlap + 1:
        out[-2:] = [(out[-2][0], n)]
    return out


def join(chunks: list[list[np.ndarray]], ranges: list[tuple[int, int]]) -> list[np.ndarray]:
    """The clip's frames from each chunk's stylised frames: outside the overlaps a chunk's own; in an overlap of
    ``V`` frames, frame ``j`` (the j-th shared one, 1-based) is ``(1 - a) * earlier + a * later``, a = j / (V + 1)."""
    n = ranges[-1][1]
    out: list[np.ndarray | None] = [None] * n
    for (start, end), frames in zip(ranges, chunks):
        if len(frames) != end - start:
            raise ValueError(f"chunk [{start}, {end}) has {len(frames)} frames")
        for i, frame in enumerate(frames):
            j = start + i
            if out[j] is None:
                out[j] = np.asarray(frame, np.float32)
                continue
            prev_end = next(e for s, e in ranges if s < start and e > j)  # the earlier chunk sharing frame j
            shared = prev_end - start
            a = (j - start + 1) / (shared + 1)
            out[j] = (1 - a) * out[j] + a * np.asarray(frame, np.float32)
    return out


def joins(ranges: list[tuple[int, int]]) -> set[int]:
    """Frame pairs (i-1, i), named by i, whose step crosses a join: from the last frame before an overlap to the
    first frame after it (the frames a cross-fade touches)."""
    out = set()
    for (s0, e0), (s1, _) in zip(ranges, ranges[1:]):
        out |= set(range(s1, e0 + 1))
    return out


# ---------------------------------------------------------------- the work: one step per frame of a chunk


@dataclass(frozen=True)
class Step:
    chunk: int  # 0-based
    frame: int  # 0-based frame of the clip
    source: int | None  # the clip frame it is warped from (None: the config's init, optimizer.iterations)
    source_chunk: int = 0  # the chunk whose result of ``source`` it warps (its own, or chunk 0's key frame)


def plan(ranges: list[tuple[int, int]], start: str = "key") -> list[list[Step]]:
    """Each chunk's steps in order. Chunk 1 is the clip loop; a later chunk's first frame warps chunk 1's
    frame 1 (``key``) or starts from the config's init (``init``); its other frames warp their predecessor."""
    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, got {start!r}")
    chains = []
    for k, (s, e) in enumerate(ranges):
        first = Step(k, s, None, k) if k == 0 or start == "init" else Step(k, s, 0, 0)
        chains.append([first, *(Step(k, j, j - 1, k) for j in range(s + 1, e))])
    return chains


class Schedule:
    """Which steps can run now: a chunk's next step once the result it warps is in (one step per chunk at a
    time), given the results already kept (a resumed run)."""

    def __init__(self, chains: list[list[Step]], done: dict[tuple[int, int], np.ndarray] | None = None):
        self.chains = chains
        self.results: dict[tuple[int, int], np.ndarray] = dict(done or {})  # (chunk, frame) -> 8-bit result
        self.running: set[Step] = set()

    @property
    def total(self) -> int:
        return sum(len(c) for c in self.chains)

    @property
    def finished(self) -> bool:
        return len(self.results) >= self.total

    def left(self, chunk: int) -> int:
        return sum((s.chunk, s.frame) not in self.results for s in self.chains[chunk])

    def source_of(self, step: Step) -> np.ndarray | None:
        return None if step.source is None else self.results[(step.source_chunk, step.source)]

    def ready(self) -> list[Step]:
        out = []
        for chain in self.chains:
            step = next((s for s in chain if (s.chunk, s.frame) not in self.results), None)
            if step is None or step in self.running:
                continue
            if step.source is None or (step.source_chunk, step.source) in self.results:
                out.append(step)
        return out

    def finish(self, step: Step, result: np.ndarray) -> None:
        self.running.discard(step)
        self.results[(step.chunk, step.frame)] = result


def eight_bit(image: np.ndarray) -> np.ndarray:
    """A result as a saved PNG holds it: what the next frame warps from (serial and resumed runs alike)."""
    return np.clip(np.round(image), 0, 255).astype(np.float32)


# ---------------------------------------------------------------- one frame of a step (a worker, or here)


@dataclass
class FrameOut:
    image: np.ndarray
    iterations: int
    stop: str
    info: dict
    events: list = field(default_factory=list)  # (precision, {terms..., total}, seconds) per iteration
    seconds: float = 0.0


class FrameSolver:
    """The clip's stylizer (style targets and compiled step made once) solving one step at a time."""

    def __init__(self, cfg, extractors, styles, first_frame: np.ndarray, frames: int, log=None, cache_dir=None):
        from nst.video.stylize import ClipStylizer

        self.stylizer = ClipStylizer(cfg, extractors, styles, first_frame, frames, log, cache_dir)

    def solve(self, frame: np.ndarray, source_frame: np.ndarray | None, source_result: np.ndarray | None,
              control=None) -> FrameOut:
        from nst.events import Control

        events: list = []
        control = control or Control()
        keep = lambda ev: events.append((ev.precision, {**ev.terms, "total": ev.total}, ev.seconds))  # noqa: E731
        control.subscribers.insert(0, keep)
        start = time.perf_counter()
        try:
            r = (self.stylizer.first(frame, control) if source_result is None
                 else self.stylizer.next(frame, source_frame, source_result, control))
        finally:
            control.subscribers.remove(keep)
        return FrameOut(r.image, r.iterations, r.stop, r.info, events, time.perf_counter() - start)


def stylise_chunk(cfg, extractors, styles, frames: list[np.ndarray], control=None, log=None) -> list[np.ndarray]:
    """One chunk (or a whole clip) frame after frame, here: what the serial CLI makes of ``frames``."""
    solver = FrameSolver(cfg, extractors, styles, frames[0], len(frames), log)
    out = [solver.solve(frames[0], None, None, control).image]
    for i in range(1, len(frames)):
        out.append(solver.solve(frames[i], frames[i - 1], eight_bit(out[-1]), control).image)
    return out
