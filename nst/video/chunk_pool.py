"""Running a chunked clip's steps (:mod:`nst.video.chunks`): here, one after another, or on Ray actors, each
chunk's next frame on whichever worker is free — the design of :mod:`nst.tile_pool`.

An actor is one worker process: it loads the VGG weights once (by path, or its own node's cache:
:class:`nst.tile_pool.WeightsSource`), fetches the job (config, styles, the clip's first frame; put in Ray's
object store once) and builds one :class:`nst.video.chunks.FrameSolver`, whose compiled step serves every
frame it is given. Each call ships one frame, the frame it warps from and that frame's 8-bit result, and
brings back the stylised frame with its iterations' losses (the driver writes them and emits them as
progress). A worker that dies mid-frame is replaced and the frame redone from the same inputs (so the clip
is the one a run without the fault makes); frames finished before are kept. Ctrl-C, a cancel or a frame
that keeps failing kills every worker. Ray is imported only on the Ray path.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Callable

import numpy as np

from nst.cluster import worker_slots
from nst.errors import UserError
from nst.video.chunks import FrameOut, FrameSolver, Schedule, Step

OnFrame = Callable[[Step, FrameOut], np.ndarray]  # saves a finished step, returns its 8-bit result


@dataclass(frozen=True)
class ClipJob:
    """What a worker needs to stylise any frame of the clip."""

    cfg: object
    styles: list
    first_frame: np.ndarray
    frames: int
    network: str
    pooling: str
    layers: list


def run_here(schedule: Schedule, frames: list[np.ndarray], solver: FrameSolver, on_frame: OnFrame,
             control=None) -> None:
    """Every step in this process, chunk by chunk (the order does not change any frame).

    The solver gets a muted control (cancel still reaches it): ``on_frame`` replays each frame's events once,
    into its own chunk's losses.csv, as it does for frames from Ray workers.
    """
    quiet = control.muted() if control is not None else None
    while not schedule.finished:
        step = schedule.ready()[0]
        out = solver.solve(frames[step.frame], _source_frame(frames, step), schedule.source_of(step), quiet)
        schedule.finish(step, on_frame(step, out))


def _source_frame(frames, step: Step):
    return None if step.source is None else frames[step.source]


class ChunkWorker:
    """A Ray actor (one worker process): solves one frame at a time for the job it was last given."""

    def __init__(self, source, threads: int = 1):
        from nst.tile_pool import hold_threads

        hold_threads(threads)
        self.source, self.key, self.solver = source, None, None

    def solve(self, key: str, job: list, frame, source_frame, source_result) -> FrameOut:
        if key != self.key:
            import ray

            spec: ClipJob = ray.get(job[0])  # nested in a list: fetched only when the job changes
            extractors = self.source.extractors(spec.network, spec.pooling, spec.layers)
            self.solver = FrameSolver(spec.cfg, extractors, spec.styles, spec.first_frame, spec.frames)
            self.key = key
        return self.solver.solve(frame, source_frame, source_result)

    def pid(self) -> int:
        import os

        return os.getpid()


class ChunkPool:
    """The steps on Ray (connect first: :func:`nst.cluster.connect`). ``source`` builds a worker's extractors
    (:class:`nst.tile_pool.WeightsSource`; tests give a stub); a frame is tried at most ``1 + retries`` times,
    each on a fresh worker after one died."""

    def __init__(self, source, *, max_parallel: int | None = None, cpus: float = 1.0, retries: int = 2):
        import ray

        if not ray.is_initialized():
            raise RuntimeError("ChunkPool needs Ray: call nst.cluster.connect first")
        self.source, self.cpus, self.retries = source, float(cpus), retries
        self.slots, self.nodes = worker_slots(self.cpus, max_parallel, "chunk")
        self.actors: list = []
        self.retried = 0  # frames redone after a worker died
        self.busy = 0.0  # seconds the workers spent on frames

    def describe(self) -> str:
        return f"ray: up to {self.slots} worker(s) of {self.cpus:g} CPU on {self.nodes} node(s)"

    def _actor(self):
        from nst.tile_pool import start_actor

        actor = start_actor(ChunkWorker, self.source, self.cpus)
        self.actors.append(actor)
        return actor

    def close(self) -> None:
        from nst.tile_pool import kill_actors

        kill_actors(self.actors)
        self.actors = []

    def __enter__(self) -> ChunkPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, schedule: Schedule, frames: list[np.ndarray], job: ClipJob, on_frame: OnFrame,
            control=None, log=None) -> None:
        """Every step of ``schedule`` not yet done, up to ``slots`` at a time; ``on_frame`` as each finishes."""
        import ray

        log = log or (lambda _s: None)
        key, job_ref = uuid.uuid4().hex, ray.put(job)
        chains = len([c for c in range(len(schedule.chains)) if schedule.left(c)])
        idle = [self._actor() for _ in range(min(self.slots, max(1, chains)))]
        running: dict = {}
        attempts: dict[Step, int] = {}
        try:
            while not schedule.finished:
                for step in schedule.ready():
                    if not idle:
                        break
                    actor = idle.pop()
                    ref = actor.solve.remote(key, [job_ref], frames[step.frame], _source_frame(frames, step),
                                             schedule.source_of(step))
                    schedule.running.add(step)
                    running[ref] = (actor, step)
                if not running:
                    raise RuntimeError("no step can run: the schedule is stuck")  # a bug, never bad input
                ready, _ = ray.wait(list(running), num_returns=1, timeout=0.25)
                if control is not None:
                    control.check()
                for ref in ready:
                    actor, step = running.pop(ref)
                    try:
                        out = ray.get(ref)
                    except ray.exceptions.RayActorError as exc:  # the worker died: a new one redoes the frame
                        attempts[step] = attempts.get(step, 0) + 1
                        schedule.running.discard(step)
                        if attempts[step] > self.retries:
                            raise UserError(f"frame {step.frame + 1} of chunk {step.chunk + 1} failed "
                                            f"{attempts[step]} times (its worker died: {_first_line(exc)})") from None
                        log(f"notice: a worker died during frame {step.frame + 1} of chunk {step.chunk + 1}; the "
                            f"frame is redone on a new worker")
                        self.retried += 1
                        if actor in self.actors:
                            self.actors.remove(actor)
                        ray.kill(actor, no_restart=True)
                        idle.append(self._actor())
                        continue
                    idle.append(actor)
                    self.busy += out.seconds
                    schedule.finish(step, on_frame(step, out))
        except BaseException:  # Ctrl-C, cancel, a frame that keeps failing: stop every worker now
            self.close()
            raise


def _first_line(exc: BaseException) -> str:
    from nst.tile_pool import _first_line as first

    return first(exc)


def wall_estimate(per_frame: float, lengths: list[int], workers: int, first_extra: float = 0.0) -> float:
    """Expected seconds of a chunked clip on ``workers`` workers: chunk 1's first frame (the key frame, which
    every other chunk waits for) then the rest, each worker taking the next frame of a chunk; ``first_extra``:
    what the key frame costs beyond a later frame (its ``optimizer.iterations``)."""
    left = [n for n in lengths]
    left[0] -= 1
    t = per_frame + first_extra
    while any(left):
        active = sorted(range(len(left)), key=lambda k: -left[k])[:workers]
        for k in active:
            if left[k]:
                left[k] -= 1
        t += per_frame
    return t

