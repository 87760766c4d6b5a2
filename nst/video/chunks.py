"""A clip in chunks: runs of consecutive frames, a few frames of overlap, each chunk the usual flow-warped,
temporally consistent loop (:class:`nst.video.stylize.ClipStylizer`) on its own Ray worker, joined by a
cross-fade over the overlap.

A chunk cannot start from the previous chunk's last result (that would make it wait for it), so it starts
as a clip does, from the config's init with ``optimizer.iterations``, and warps on from there. Two chunks
stylise their shared frames differently (another start, another local minimum); :func:`join` fades from
the earlier chunk to the later one over those frames, so the change is spread over ``overlap + 1`` frame
steps instead of one. :mod:`experiments.video_chunks` measures the temporal-consistency error at the joins
against inside the chunks. No files are read or written here.
"""

from __future__ import annotations

import numpy as np

from nst.errors import UserError


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


def stylise_chunk(cfg, extractors, styles, frames: list[np.ndarray], control=None, log=None) -> list[np.ndarray]:
    """One chunk: its first frame as a clip's first, the rest warped on (the loop of :mod:`nst.video.run`)."""
    from nst.events import Control
    from nst.video.stylize import ClipStylizer

    control = control or Control()
    stylizer = ClipStylizer(cfg, extractors, styles, frames[0], len(frames), log)
    out = [stylizer.first(frames[0], control).image]
    for i in range(1, len(frames)):
        # the previous result as the CLI keeps it (8-bit), so a chunk is what the serial clip would make
        previous = np.clip(np.round(out[-1]), 0, 255).astype(np.float32)
        out.append(stylizer.next(frames[i], frames[i - 1], previous, control).image)
    return out


class ChunkWorker:
    """A Ray actor: stylises chunks; the network is loaded once per worker process (nst.tile_pool)."""

    def __init__(self, source, threads: int = 1):
        from nst.tile_pool import hold_threads

        hold_threads(threads)
        self.source, self._extractors = source, {}

    def run(self, cfg, styles, frames: list[np.ndarray]) -> list[np.ndarray]:
        from nst.recipe import TransferRecipe

        recipe = TransferRecipe.of(cfg, self.source.network)
        key = (recipe.network, recipe.pooling, tuple(recipe.layers))
        if key not in self._extractors:
            self._extractors[key] = self.source.extractors(recipe.network, recipe.pooling, recipe.layers)
        return stylise_chunk(cfg, self._extractors[key], styles, frames)


def stylise_on_ray(cfg, source, styles, frames: list[np.ndarray], length: int, overlap: int,
                   max_parallel: int | None = None, cpus: float = 1.0, retries: int = 2, log=None):
    """The clip in chunks on Ray (connect first): (joined frames, ranges, per-chunk frames). A chunk whose worker
    dies is redone on a new one, up to ``retries`` times."""
    import ray

    log = log or (lambda _s: None)
    ranges = chunk_ranges(len(frames), length, overlap)
    from nst.tile_pool import worker_env

    threads, env = worker_env(cpus)
    fit = int(ray.cluster_resources().get("CPU", 0) // cpus)
    if fit < 1:
        raise UserError(f"the Ray cluster has too few CPUs for a worker of {cpus:g}")
    slots = min(len(ranges), fit, max_parallel or fit)
    Actor = ray.remote(ChunkWorker).options(num_cpus=cpus, max_restarts=0, runtime_env={"env_vars": env})
    actors = [Actor.remote(source, threads) for _ in range(slots)]
    idle, todo, running, done = list(actors), list(enumerate(ranges)), {}, {}
    attempts = {k: 0 for k in range(len(ranges))}
    cfg_ref, styles_ref = ray.put(cfg), ray.put(styles)
    try:
        while todo or running:
            while idle and todo:
                k, (s, e) = todo.pop(0)
                actor = idle.pop()
                running[actor.run.remote(cfg_ref, styles_ref, frames[s:e])] = (actor, k)
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                actor, k = running.pop(ref)
                try:
                    done[k] = ray.get(ref)
                    idle.append(actor)
                    log(f"chunk {k + 1}/{len(ranges)} (frames {ranges[k][0] + 1}..{ranges[k][1]}) done")
                except ray.exceptions.RayActorError:
                    attempts[k] += 1
                    if attempts[k] > retries:
                        raise UserError(f"chunk {k + 1} failed {attempts[k]} times (its worker died)") from None
                    log(f"notice: a worker died during chunk {k + 1}; the chunk is redone on a new worker")
                    ray.kill(actor, no_restart=True)
                    actors.append(Actor.remote(source, threads))
                    idle.append(actors[-1])
                    todo.insert(0, (k, ranges[k]))
    finally:
        for actor in actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
    per_chunk = [done[k] for k in range(len(ranges))]
    return join(per_chunk, ranges), ranges, per_chunk
