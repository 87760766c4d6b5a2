"""A print's tiles on Ray: each pass split into phases of tiles that do not overlap, each phase's tiles
optimised in parallel on Ray actors and blended into the image, then the next phase.

Within a pass, tiles that do not overlap are independent given the image as it stood before them, so
:func:`nst.tiles.colour_phases` colours the grid (row colour x column colour; two of each for inner tiles,
a third where the end tiles crowd in) and every tile ramps on the sides facing tiles of earlier phases.
Each tile starts from the image as it stood before its phase, so the result does not depend on how many
workers there are or in which order they finish (it differs from the serial raster order's, which blends
into tiles finished a moment before).

One actor per parallel slot (a worker process): it loads the VGG weights once (by path, or from its own
node's cache) and, per tiled scale, fetches the task and the style targets the driver computed once
(shipped as numpy) and builds one :class:`nst.engine.TileSolver`, whose objective is refilled per tile.
The driver ships each tile's start crop, blends what comes back and emits the tile's iterations as the
run's progress events as tiles finish. A worker that dies mid-tile is replaced and the tile redone from the
same start (so the image is the one a run without the fault makes); Ctrl-C, ``control.cancel()`` or any
error kills every worker, and the exception leaves :func:`nst.engine.run_plan`, so no half-blended image is
ever a finished result. Ray is imported only here and only when a pool is made.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nst.cluster import worker_slots
from nst.errors import UserError
from nst.tiles import blend, colour_phases, crop

_WEIGHTS: dict[tuple[str, str | None], object] = {}  # per worker process: (network, path) -> weights


@dataclass(frozen=True)
class WeightsSource:
    """Where a worker gets the run's network: ``path`` if that file is on its node, else its own cache."""

    network: str  # vgg16 | vgg19 (resolved by the driver)
    path: str | None = None

    def extractors(self, network: str, pooling: str, layers: list[str]):
        from nst.engine import Extractors
        from nst.weights import load_weights

        key = (self.network, self.path)
        if key not in _WEIGHTS:  # once per worker process
            path = self.path if self.path and os.path.exists(self.path) else None
            _WEIGHTS[key] = load_weights(self.network, path, download=path is None)[0]
        return Extractors(_WEIGHTS[key], network, pooling, layers)


def pool_for(where, plan, info, log, packages: tuple = ()) -> TilePool | None:
    """The tile runner a run asked for (``where``: :class:`nst.cluster.Where`): None — the serial loop — unless
    it asked for Ray and a scale of ``plan`` is tiled; connects (one-line errors) before any folder is touched.

    On a cluster (``--address``) nst and ``packages`` (the kind's own package, e.g. ``doodle``) are shipped to the
    workers (Ray ``py_modules``), which may sit on other machines; a Ray of our own imports this checkout."""
    if where is None or not where.parallel:
        return None
    if not any(s.tiled for s in plan):
        log("notice: no scale of this run is over tiles.max_pixels, so nothing runs in tiles: it runs here "
            "(--ray / --address spread a print's tiles)")
        return None
    from nst.cluster import connect

    modules = None
    if where.address is not None:
        import importlib

        modules = [str(Path(importlib.import_module(name).__file__).parent) for name in ("nst", *packages)]
    connect(where.address, timeout=where.timeout, modules=modules)
    pool = TilePool(WeightsSource(info.network, info.path), max_parallel=where.max_parallel, cpus=where.cpus)
    log(f"tiles: {pool.describe()} ({where.describe()})")
    return pool


class _Shipped:
    """A tensor leaf sent as numpy (a worker turns it back into a tensor)."""

    def __init__(self, array: np.ndarray):
        self.array = array


def ship(tree):
    """Replace every tf.Tensor in a nest of dicts/lists/tuples by numpy, marked to come back as a tensor."""
    if isinstance(tree, dict):
        return {k: ship(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(ship(v) for v in tree)
    if hasattr(tree, "numpy") and hasattr(tree, "dtype") and not isinstance(tree, np.ndarray):
        return _Shipped(tree.numpy())
    return tree


def unship(tree):
    if isinstance(tree, dict):
        return {k: unship(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(unship(v) for v in tree)
    if isinstance(tree, _Shipped):
        import tensorflow as tf

        return tf.constant(tree.array)
    return tree


@dataclass(frozen=True)
class TileJob:
    """What a worker needs for one tiled scale (put in Ray's object store once per scale)."""

    task: object
    shared: object  # shipped style targets
    index: int
    scale: object
    opt: object
    network: str
    pooling: str
    layers: list[str]


def hold_threads(threads: int) -> None:
    """TensorFlow in this worker process to ``threads`` intra-op threads (one worker per CPU it asked for); the
    env vars a worker starts with (:func:`worker_env`) cover what was set up before this call."""
    try:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already ran an op here: the env vars have done it
        pass


def worker_env(cpus: float) -> tuple[int, dict[str, str]]:
    """(threads, environment) of a worker asking for ``cpus`` CPUs."""
    threads = max(1, int(cpus))
    return threads, {"TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": "1",
                     "OMP_NUM_THREADS": str(threads)}


def start_actor(worker_cls, source, cpus: float):
    """One worker process of ``worker_cls`` (TileWorker, the video's ChunkWorker) asking for ``cpus`` CPUs, its
    TensorFlow held to that many threads; never restarted by Ray (the pools redo a dead worker's step)."""
    import ray

    threads, env = worker_env(cpus)
    return ray.remote(worker_cls).options(num_cpus=cpus, max_restarts=0,
                                          runtime_env={"env_vars": env}).remote(source, threads)


def kill_actors(actors) -> None:
    """Kill every worker (they hold nothing a run needs: results are back in the driver)."""
    import ray

    for actor in actors:
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


class TileWorker:
    """A Ray actor (one worker process): optimises one tile at a time for the job it was last given."""

    def __init__(self, source, threads: int = 1):
        hold_threads(threads)
        self.source, self.key, self.solver = source, None, None
        self._extractors: dict[tuple, object] = {}

    def solve(self, key: str, job: list, box: tuple[int, int], start: np.ndarray, path: str):
        from nst.engine import TileSolver, path_of

        if key != self.key:
            import ray

            spec: TileJob = ray.get(job[0])  # nested in a list: fetched only when the job changes
            ek = (spec.network, spec.pooling, tuple(spec.layers))
            if ek not in self._extractors:
                self._extractors[ek] = self.source.extractors(spec.network, spec.pooling, spec.layers)
            self.solver = TileSolver(spec.task, self._extractors[ek], spec.index, spec.scale, unship(spec.shared),
                                     spec.opt)
            self.key = key
        return self.solver.solve(tuple(box), start, path_of(path))

    def pid(self) -> int:
        return os.getpid()


class TilePool:
    """A :class:`nst.engine.TileRunner` on Ray (connect first: :func:`nst.cluster.connect`).

    ``source`` builds a worker's extractors (:class:`WeightsSource`; tests give a stub); ``max_parallel``
    caps the workers (default: as many as the cluster's CPUs allow at ``cpus`` each); a tile is tried at
    most ``1 + retries`` times, each on a fresh worker after one died.
    """

    def __init__(self, source, *, max_parallel: int | None = None, cpus: float = 1.0, retries: int = 2):
        import ray

        if not ray.is_initialized():
            raise RuntimeError("TilePool needs Ray: call nst.cluster.connect first")
        self.source, self.cpus, self.retries = source, float(cpus), retries
        self.slots, self.nodes = worker_slots(self.cpus, max_parallel, "tile")
        self.actors: list = []
        self.idle: list = []
        self._job: tuple[tuple, str, object] | None = None  # ((task, index, scale), key, ObjectRef of the TileJob)
        self.retried = 0  # tiles redone after a worker died, over the pool's life

    # ---------------------------------------------------------------- workers

    def _actor(self):
        actor = start_actor(TileWorker, self.source, self.cpus)
        self.actors.append(actor)
        return actor

    def _ensure(self, wanted: int) -> None:
        while len(self.actors) < min(self.slots, wanted):
            self.idle.append(self._actor())

    def _replace(self, dead) -> None:
        import ray

        if dead in self.actors:
            self.actors.remove(dead)
        ray.kill(dead, no_restart=True)
        self.idle.append(self._actor())

    def close(self) -> None:
        """Kill every worker (they hold nothing the run needs: results are back in the driver)."""
        kill_actors(self.actors)
        self.actors, self.idle, self._job = [], [], None

    def __enter__(self) -> TilePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> str:
        return f"ray: up to {self.slots} worker(s) of {self.cpus:g} CPU on {self.nodes} node(s)"

    # ---------------------------------------------------------------- one pass

    def _job_for(self, work) -> tuple[str, object]:
        import ray

        ident = (work.task, work.index, work.scale)  # the task itself held: its id cannot pass to another
        if self._job is None or self._job[0][0] is not work.task or self._job[0][1:] != ident[1:]:
            ext = work.extractors
            network, pooling, layers = (getattr(ext, "network", ""), getattr(ext, "pooling", ""),
                                        list(getattr(ext, "layers", [])))
            job = TileJob(work.task, ship(work.shared), work.index, work.scale, work.opt, network, pooling, layers)
            self._job = (ident, uuid.uuid4().hex, ray.put(job))
        return self._job[1], self._job[2]

    def run_pass(self, work) -> int:
        """Optimise and blend every tile of ``work``'s pass, phase by phase; returns the tiles that stopped early."""
        import ray

        phases = colour_phases(work.scale.hw, work.scale.tiles, work.pass_index)
        n_tiles = sum(len(ph) for ph in phases)
        shape, overlap = work.scale.shape, work.scale.tiles.overlap
        stalled, busy, started = 0, 0.0, time.perf_counter()
        try:
            key, job = self._job_for(work)
            self._ensure(max(len(ph) for ph in phases))
            for phase in phases:
                work.check()
                # every tile of a phase starts from the image as it stood before the phase
                starts = {k: np.ascontiguousarray(crop(work.canvas, box, shape)) for k, box, _ in phase}
                todo = deque((k, box, sides, 0) for k, box, sides in phase)
                running: dict = {}
                while todo or running:
                    while self.idle and todo:
                        k, box, sides, attempt = todo.popleft()
                        actor = self.idle.pop()
                        ref = actor.solve.remote(key, [job], box, starts[k], work.path.name)
                        running[ref] = (actor, k, box, sides, attempt)
                    ready, _ = ray.wait(list(running), num_returns=1, timeout=0.25)
                    work.check()
                    for ref in ready:
                        actor, k, box, sides, attempt = running.pop(ref)
                        try:
                            outcome = ray.get(ref)
                        except ray.exceptions.RayActorError as exc:  # the worker died: a new one redoes the tile
                            if attempt >= self.retries:
                                raise UserError(f"tile {k + 1} of pass {work.pass_index + 1} failed {attempt + 1} "
                                                f"times (its worker died: {_first_line(exc)})") from None
                            work.log(f"notice: a worker died during tile {k + 1}/{n_tiles} of pass "
                                     f"{work.pass_index + 1}; the tile is redone on a new worker")
                            self.retried += 1
                            self._replace(actor)
                            todo.appendleft((k, box, sides, attempt + 1))
                            continue
                        self.idle.append(actor)
                        busy += outcome.seconds
                        blend(work.canvas, outcome.image, box, overlap, sides)
                        stalled += outcome.stall is not None
                        work.report(k + 1, n_tiles, outcome)
        except BaseException:  # Ctrl-C, cancel, a failed tile: stop every worker now
            self.close()
            raise
        wall = time.perf_counter() - started
        work.log(f"scale {work.index + 1} pass {work.pass_index + 1}: {n_tiles} tiles in {len(phases)} phases on "
                 f"{len(self.actors)} worker(s): {wall:.1f} s; the tiles took {busy:.1f} s of worker time "
                 f"({busy / max(wall * len(self.actors), 1e-9):.0%} of the workers' time)")
        return stalled


def _first_line(exc: BaseException) -> str:
    """Ray's message of a dead actor, shortened to its cause (``...Error: ...``) when it names one."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    causes = [line for line in lines if "Error: " in line and not line.startswith("ray.exceptions")]
    return ((causes or lines or [type(exc).__name__])[-1 if causes else 0])[:200]
