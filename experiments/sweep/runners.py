"""Running a sweep's points: one after another in this process (``--local``), or as Ray tasks.

Both runners call :func:`experiments.sweep.point.run_point` for each point and hand every outcome to the
caller as it arrives; both print ``points: done / running / failed / to go, ETA`` lines. On Ctrl-C the
running points are cancelled (their folders say ``interrupted`` locally, ``cancelled`` under Ray: the
worker's :class:`nst.events.Control` stops the engine after the current iteration), points not started
are reported as ``not run``, and :class:`Interrupted` carries the outcomes so far.

Ray: one actor per parallel slot, with the sweep file's ``resources`` (CPUs, GPU fraction); an actor is
one worker process, so the VGG weights are loaded once per worker and reused by every point it runs.
The code of ``nst`` and ``doodle`` is shipped to the workers (Ray ``py_modules``); images, weights and
the output folder are read and written by path, so on several machines they must sit on a shared
filesystem (docs/SWEEPS.md).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from experiments.sweep.point import outcome, previous, run_point, set_aside_damaged
from experiments.sweep.spec import Point, Resources
from nst.cli import say
from nst.cluster import send_token_if_present  # noqa: F401 - the sweep's name for it (tests, docs)
from nst.errors import UserError

OnResult = Callable[[dict], None]


class Interrupted(Exception):
    """Ctrl-C during a sweep: the running points were stopped and recorded."""


class Tally:
    """Counts and the progress line: done / running / failed / to go, with an ETA from the points so far."""

    def __init__(self, total: int, parallel: int = 1):
        self.total, self.parallel = total, max(1, parallel)
        self.done = self.failed = self.running = 0
        self.seconds: list[float] = []
        self.started = time.time()
        self._last = 0.0

    def add(self, result: dict) -> None:
        self.done += 1
        self.failed += result["status"] != "finished"
        if result["status"] == "finished":
            self.seconds.append(result["wall_seconds"])

    def eta(self) -> str:
        left = self.total - self.done
        if not left:
            return "0 s"
        if not self.seconds:
            return "?"
        per = sum(self.seconds) / len(self.seconds)
        return fmt_seconds(per * left / min(self.parallel, left))

    def line(self, note: str = "", force: bool = False) -> None:
        if not force and time.time() - self._last < 10:
            return
        self._last = time.time()
        say(f"points: {self.done - self.failed} done, {self.running} running, {self.failed} failed, "
            f"{self.total - self.done - self.running} to go; ETA {self.eta()}"
            f" ({fmt_seconds(time.time() - self.started)} so far){'; ' + note if note else ''}")


def fmt_seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def note_of(point, result: dict) -> str:
    what = result["status"] + (f" ({result['error']})" if result["error"] else "")
    return f"#{point.index} {point.label or point.key}: {what}"


# ---------------------------------------------------------------- in this process


def run_local(kind: str, points: list, on_result: OnResult) -> None:
    tally = Tally(len(points))
    for i, p in enumerate(points):
        tally.running = 1
        tally.line(f"#{p.index} {p.label} started", force=True)
        try:
            result = run_point(kind, p.cfg, p.index, p.key, p.values)
        except KeyboardInterrupt:
            from experiments.sweep.point import read_record

            on_result(outcome(p.index, p.key, p.folder, "interrupted", read_record(p.folder)))
            for q in points[i + 1:]:
                on_result(outcome(q.index, q.key, None, "not run"))
            raise Interrupted() from None
        tally.running = 0
        tally.add(result)
        on_result(result)
        tally.line(note_of(p, result), force=True)


# ---------------------------------------------------------------- Ray


class PointWorker:
    """A Ray actor: runs one point at a time; ``cancel`` (from a second thread) stops the one running."""

    def __init__(self):
        self.control = None
        self.stopping = False

    def run(self, kind: str, cfg, index: int, key: str, values: dict) -> dict:
        from nst.events import Control

        if self.stopping:
            return outcome(index, key, None, "not run")
        self.control = Control()
        try:
            return run_point(kind, cfg, index, key, values, control=self.control, log_to_file=True)
        finally:
            self.control = None

    def cancel(self) -> bool:
        self.stopping = True
        if self.control is not None:
            self.control.cancel()
            return True
        return False


def shipped_modules() -> list[str]:
    """The packages Ray ships to every worker: this checkout's nst and doodle."""
    import doodle
    import nst

    return [str(Path(nst.__file__).parent), str(Path(doodle.__file__).parent)]


def connect(address: str | None, timeout: float = 60.0) -> None:
    """Ray for a sweep, through :func:`nst.cluster.connect` (one way to connect for every command): a new local
    Ray (address None or ``local``: Ray's own default would join a cluster `ray start` left on this machine) or a
    cluster (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``), probed first and joined within ``timeout`` seconds;
    nst and doodle are shipped to the workers."""
    from nst.cluster import connect as join

    join(None if address in (None, "local") else address, timeout=min(timeout, 10.0), modules=shipped_modules(),
         init_timeout=timeout)


def slots(resources, n_points: int, max_parallel: int | None) -> int:
    import ray

    total = ray.cluster_resources()
    fit = int(total.get("CPU", 1) // resources.cpus)
    if resources.gpus:
        fit = min(fit, int(total.get("GPU", 0) // resources.gpus))
        if fit < 1:
            raise UserError(f"the Ray cluster has {total.get('GPU', 0):g} GPUs; a point asks for {resources.gpus:g}")
    return max(1, min(n_points, fit, max_parallel or n_points))


def run_ray(kind: str, points: list, on_result: OnResult, resources, address: str | None = None,
            max_parallel: int | None = None, cancel_timeout: float = 300.0, connect_timeout: float = 60.0) -> None:
    connect(address, connect_timeout)  # first: without Ray (or without the cluster) this is the one-line error
    import ray

    n = slots(resources, len(points), max_parallel)
    Actor = ray.remote(max_concurrency=2)(PointWorker)
    opts = {"num_cpus": resources.cpus, "num_gpus": resources.gpus}
    idle = [Actor.options(**opts).remote() for _ in range(n)]
    pending, running = deque(points), {}
    tally = Tally(len(points), n)
    say(f"ray: {n} workers ({resources.cpus:g} CPU, {resources.gpus:g} GPU each) on "
        f"{len(ray.nodes())} node(s), {len(points)} points")
    try:
        while pending or running:
            while idle and pending:
                actor, p = idle.pop(), pending.popleft()
                running[actor.run.remote(kind, p.cfg, p.index, p.key, p.values)] = (actor, p)
            tally.running = len(running)
            tally.line()
            ready, _ = ray.wait(list(running), num_returns=1, timeout=2.0)
            for ref in ready:
                actor, p = running.pop(ref)
                result = _gather(ref, p)
                if result["error"].startswith("worker died"):
                    actor = Actor.options(**opts).remote()
                idle.append(actor)
                tally.add(result)
                tally.running = len(running)
                on_result(result)
                tally.line(note_of(p, result), force=True)
    except KeyboardInterrupt:
        say(f"\ncancelling {len(running)} running point(s) (Ctrl-C again to leave at once)")
        for actor, _ in running.values():
            actor.cancel.remote()
        deadline = time.time() + cancel_timeout
        for ref, (actor, p) in running.items():
            try:
                ready, _ = ray.wait([ref], timeout=max(0.0, deadline - time.time()))
                result = _gather(ref, p) if ready else outcome(p.index, p.key, p.folder, "interrupted",
                                                               error="did not stop in time")
            except KeyboardInterrupt:
                result = outcome(p.index, p.key, p.folder, "interrupted")
            on_result(result)
        for p in pending:
            on_result(outcome(p.index, p.key, None, "not run"))
        raise Interrupted() from None
    finally:
        for actor in [*idle, *(a for a, _ in running.values())]:
            ray.kill(actor)


def _gather(ref, p) -> dict:
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayActorError as exc:
        from experiments.sweep.point import read_record

        return outcome(p.index, p.key, p.folder, "failed", read_record(p.folder),
                       error=f"worker died: {str(exc).splitlines()[0][:200]}")
    except ray.exceptions.RayError as exc:
        return outcome(p.index, p.key, p.folder, "failed", error=f"ray: {str(exc).splitlines()[0][:200]}")


@dataclass
class Execution:
    """How to run points: in this process, or on Ray (a local one by default, or ``address``)."""
    local: bool = True
    address: str | None = None
    max_parallel: int | None = None
    resources: Resources = field(default_factory=Resources)
    rerun_failed: bool = False
    force: bool = False  # rerun finished points too
    connect_timeout: float = 60.0  # seconds to reach a cluster given by address


def run_points(kind: str, points: list[Point], how: Execution) -> dict[int, dict]:
    """Run the points that need it; return every point's outcome by index (resumed ones marked ``reused``).

    Raises :class:`experiments.sweep.runners.Interrupted` (after recording) on Ctrl-C; its ``args[0]`` is the dict.
    """
    outcomes: dict[int, dict] = {}
    todo = []
    for p in points:
        if p.error:
            outcomes[p.index] = outcome(p.index, p.key, None, "failed", error=p.error)
            continue
        old = None if how.force else previous(p)
        if old and not (old["status"] == "failed" and how.rerun_failed):
            outcomes[p.index] = old
        else:
            if old and old.get("damaged"):
                set_aside_damaged(p)  # --rerun-failed: the point's damaged outputs are kept aside, then rerun
            todo.append(p)
    kept = sum(o.get("reused", False) for o in outcomes.values())
    if kept:
        say(f"{kept} point(s) already done (resumed: finished or failed; --rerun-failed reruns failed ones)")
    if not todo:
        return outcomes

    def on_result(result: dict) -> None:
        outcomes[result["index"]] = result

    try:
        if how.local:
            run_local(kind, todo, on_result)
        else:
            run_ray(kind, todo, on_result, how.resources, how.address, how.max_parallel,
                    connect_timeout=how.connect_timeout)
    except Interrupted:
        raise Interrupted(outcomes) from None
    return outcomes
