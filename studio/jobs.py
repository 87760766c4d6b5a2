"""The studio's work model: one run at a time in a worker thread, a visible queue, live state for every page.

A :class:`Job` is one run folder under ``runs/<id>/``. The :class:`Manager` owns the queue and the one worker
thread that calls the engine (``nst.run.execute`` / ``doodle.run.execute``, the CLI's own wiring, so the folder
is exactly the CLI's); it subscribes to the run's :class:`nst.events.Control` for progress (loss rows, a PNG
preview) and cancels through it. Pages read :meth:`Manager.state`; nothing here knows of HTTP.
"""

from __future__ import annotations

import io
import itertools
import json
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nst.errors import UserError
from nst.events import Control, Progress
from nst.images import to_uint8

PREVIEW_EVERY_S = 0.25  # at most four preview PNGs a second: the page cannot show more, encoding costs
PREVIEW_MAX_SIDE = 1024  # previews of larger images (prints) are shrunk to this long side
PREVIEW_SHARE = 0.1  # and spaced so that encoding them takes at most this share of the run's time
MAX_QUEUED = 16  # runs waiting behind the running one: more would only fill the disk with queued folders


class QueueFull(UserError):
    status = 429  # the HTTP status of this refusal (studio.app reads it)


@dataclass
class Job:
    id: str
    kind: str  # nst | doodle
    cfg: Any
    label: str
    status: str = "queued"  # queued | running | finished | cancelled | interrupted | failed | error
    message: str = ""
    iteration: int = 0
    total_iterations: int = 0
    phase: int = 0
    phases: int = 1
    size: tuple = (0, 0)
    tile: int = 0  # prints: the tile of the last iteration (1-based within its pass; 0: a whole image)
    tiles: int = 0
    tile_pass: int = 0
    tile_passes: int = 0
    seconds_left: float = -1.0  # the engine's estimate (-1: none yet)
    losses: list = field(default_factory=list)  # one {iteration, total, content, style, tv, phase} per iteration
    preview: bytes | None = None
    preview_version: int = 0
    created: float = field(default_factory=time.time)
    control: Control = field(default_factory=Control)

    @property
    def folder(self) -> Path:
        return Path(self.cfg.output_dir)

    def summary(self, with_losses: bool = False) -> dict:
        out = {"id": self.id, "kind": self.kind, "label": self.label, "status": self.status, "message": self.message,
               "iteration": self.iteration, "total_iterations": self.total_iterations or self.cfg.optimizer.iterations,
               "phase": self.phase, "phases": self.phases, "size": list(self.size),
               "tile": self.tile, "tiles": self.tiles, "tile_pass": self.tile_pass, "tile_passes": self.tile_passes,
               "seconds_left": round(self.seconds_left, 1),
               "preview_version": self.preview_version, "created": self.created}
        if with_losses:
            out["losses"] = list(self.losses)
        return out

    def write_meta(self) -> None:
        """``studio.json`` beside the CLI's files: what the history shows of a run (kind, label, how it ended)."""
        meta = {"id": self.id, "kind": self.kind, "label": self.label, "status": self.status,
                "message": self.message, "created": self.created}
        tmp = self.folder / ".studio.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
        tmp.replace(self.folder / "studio.json")


def png_bytes(image, max_side: int | None = None) -> bytes:
    """PNG of an image; with ``max_side``, shrunk to fit it first (a 4096 px print's preview would take
    seconds to encode and the page shows it at a few hundred px)."""
    from PIL import Image

    picture = Image.fromarray(to_uint8(image))
    if max_side and max(picture.size) > max_side:
        picture.thumbnail((max_side, max_side), Image.LANCZOS)
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue()


class Manager:
    """The queue, the worker thread, and the live state pages poll (``version`` grows at every change)."""

    def __init__(self, runs_dir: Path, where=None):
        self.runs_dir = runs_dir
        self.where = where  # nst.cluster.Where: where a print's tiles run (None: here, one after another)
        self.jobs: dict[str, Job] = {}
        self.queue: deque[Job] = deque()
        self.current: Job | None = None
        self.version = 0
        self.lock = threading.Condition()
        self.stopping = False
        self.weights: dict[tuple, Any] = {}  # (network, weights file, download) -> loaded weights, once per server
        self.thread = threading.Thread(target=self._work, name="studio-engine", daemon=True)
        self.thread.start()
        self._ids = itertools.count(1)

    def new_id(self) -> str:
        """A fresh run id: time-ordered and never an existing folder's."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        while True:
            run_id = f"{stamp}-{next(self._ids):03d}"
            if not (self.runs_dir / run_id).exists():
                return run_id

    def _changed(self) -> None:
        with self.lock:
            self.version += 1
            self.lock.notify_all()

    def submit(self, job: Job, config_yaml: str) -> Job:
        """Queue a job: its folder (config.yaml, studio.json) is made only once the queue has room."""
        with self.lock:
            if self.stopping:
                raise UserError("the studio is shutting down")
            if len(self.queue) >= MAX_QUEUED:
                raise QueueFull(f"the queue is full ({len(self.queue)} runs waiting): wait for one to end or "
                                f"cancel one")
            try:
                job.folder.mkdir(parents=True, exist_ok=False)
                (job.folder / "config.yaml").write_text(config_yaml, encoding="utf-8")
                job.write_meta()
            except OSError as exc:  # a full disk, a read-only folder: nothing half-made stays behind
                for name in ("config.yaml", "studio.json", ".studio.json.tmp"):
                    (job.folder / name).unlink(missing_ok=True)
                try:
                    job.folder.rmdir()
                except OSError:
                    pass
                raise UserError(f"cannot create the run folder {job.folder}: {exc.strerror or exc}") from None
            self.jobs[job.id] = job
            self.queue.append(job)
            self.lock.notify_all()
        self._changed()
        return job

    def cancel(self, run_id: str) -> Job:
        with self.lock:
            job = self.jobs.get(run_id)
            if job is None:
                raise UserError(f"run {run_id} is not queued or running")
            if job in self.queue:
                self.queue.remove(job)
                job.status, job.message = "cancelled", "cancelled before it started"
                job.write_meta()
            job.control.cancel()  # a running job stops after its current iteration
        self._changed()
        return job

    def state(self) -> dict:
        with self.lock:
            return {"version": self.version,
                    "current": self.current.summary(with_losses=True) if self.current else None,
                    "queue": [j.summary() for j in self.queue],
                    "where": self.where.describe() if self.where is not None else "here, serially"}

    def wait(self, version: int, timeout: float) -> int:
        """Block until the state's version passes ``version`` (or ``timeout``); returns the version now."""
        with self.lock:
            self.lock.wait_for(lambda: self.version != version or self.stopping, timeout)
            return self.version

    def shutdown(self, timeout: float = 60.0) -> None:
        """Cancel the running job and everything queued; wait for the run folder to be recorded."""
        with self.lock:
            self.stopping = True
            for job in self.queue:
                job.status, job.message = "cancelled", "the studio stopped before it started"
                job.write_meta()
            self.queue.clear()
            if self.current:
                self.current.control.cancel()
            self.lock.notify_all()
        self.thread.join(timeout)

    # ------------------------------------------------------------------ the worker thread

    def _work(self) -> None:
        while True:
            with self.lock:
                self.lock.wait_for(lambda: self.queue or self.stopping)
                if self.stopping:
                    return
                job = self.current = self.queue.popleft()
                job.status = "running"
            self._changed()
            self._run(job)
            with self.lock:
                self.current = None
            self._changed()

    def _loaded_weights(self, cfg):
        from nst.weights import load_weights

        key = (cfg.model.network, cfg.model.weights, cfg.model.download)
        if key not in self.weights:
            self.weights[key] = load_weights(*key)
        return self.weights[key]

    def _run(self, job: Job) -> None:
        last_preview, gap = [0.0], [PREVIEW_EVERY_S]

        def on_progress(ev: Progress) -> None:
            job.iteration, job.total_iterations = ev.iteration, ev.total_iterations
            job.phase, job.phases, job.size = ev.phase, ev.phases, ev.size
            job.tile, job.tiles, job.tile_pass, job.tile_passes = ev.tile, ev.tiles, ev.tile_pass, ev.tile_passes
            job.seconds_left = ev.seconds_left
            job.losses.append({"iteration": ev.iteration, "total": ev.total, "content": ev.content,
                               "style": ev.style, "tv": ev.tv, "phase": ev.phase})
            now = time.monotonic()
            if now - last_preview[0] >= gap[0] or ev.iteration == ev.total_iterations:
                job.preview, job.preview_version = png_bytes(ev.image, PREVIEW_MAX_SIDE), job.preview_version + 1
                last_preview[0] = time.monotonic()
                gap[0] = max(PREVIEW_EVERY_S, (last_preview[0] - now) / PREVIEW_SHARE)
            self._changed()

        job.control.subscribe(on_progress)
        try:
            if job.control.cancelled:
                raise _CancelledEarly
            from nst.kinds import kind

            extra = {"where": self.where} if self.where is not None and self.where.parallel else {}
            record = kind(job.kind).execute(job.cfg, loaded_weights=self._loaded_weights(job.cfg), control=job.control,
                                            **extra)
            job.status = record.get("status", "failed")
            job.message = record.get("stop_reason", "")
        except _CancelledEarly:
            job.status, job.message = "cancelled", "cancelled before it started"
        except UserError as exc:
            job.status, job.message = "error", f"error: {exc}"
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the worker; the page gets one line
            traceback.print_exc(file=sys.stderr)
            job.status, job.message = "failed", f"error: internal error ({type(exc).__name__}: {exc}); see the server log"
        job.write_meta()


class _CancelledEarly(Exception):
    """Cancel arrived between leaving the queue and starting the engine."""
