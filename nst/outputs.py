"""A run's output folder: ``result.png``, ``iter_XXXX.png``, ``losses.csv``, ``run.json``.

The contract other tools rely on. ``result.png`` is written last and atomically, with the resolved
config embedded as PNG text, so its presence means the run finished. ``run.json`` records what ran
(config, network, weights and their SHA-256, versions, seed, wall time, peak memory) and how it ended.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import yaml

from nst.cli import say
from nst.errors import UserError
from nst.events import CSV_HEADER, TILE_COLUMNS, Cancelled, Progress, extra_columns
from nst.images import save_png, save_tiff
from nst.weights import WeightsInfo

STALE = ("result.png", "result.tif", "run.json", "losses.csv", "labels.png")


def versions() -> dict[str, str]:
    import keras
    import numpy
    import PIL
    import scipy
    import tensorflow

    return {"python": platform.python_version(), "tensorflow": tensorflow.__version__, "keras": keras.__version__,
            "numpy": numpy.__version__, "scipy": scipy.__version__, "pillow": PIL.__version__,
            "platform": platform.platform()}


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def prepare_dir(path: Path) -> Path:
    """Create the folder, prove it is writable, and clear a previous run's outputs from it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"output dir {path} is not writable: {exc.strerror or exc}") from None
    for name in STALE:
        (path / name).unlink(missing_ok=True)
    for old in path.glob("iter_*.png"):
        old.unlink()
    return path


class RunRecorder:
    """Receives progress events; writes the log, the snapshots, and at the end the result and run.json."""

    def __init__(self, out_dir: Path, config: dict, snapshots: list[int], weights: WeightsInfo, seed: int,
                 on_event=None):
        self.out_dir, self.config, self.snapshots = out_dir, config, set(snapshots)
        self.weights, self.seed, self.on_event = weights, seed, on_event
        self.started = time.time()
        self.last: Progress | None = None
        self.extra: dict = {}
        self.columns: list[str] | None = None  # the objective's own terms after the fixed columns, from event 1
        self.tiled = False  # a tiled run (nst.tiles) adds tile,pass columns, known from event 1
        self.csv = open(out_dir / "losses.csv", "w", encoding="utf-8")

    def _header(self, extra: list[str]) -> None:
        self.columns = extra
        tail = list(TILE_COLUMNS) if self.tiled else []
        self.csv.write(",".join([*CSV_HEADER, *extra, "phase", "size", *tail]) + "\n")

    def __call__(self, ev: Progress) -> None:
        self.last = ev
        if self.columns is None:
            self.tiled = ev.tile_passes > 0
            self._header(extra_columns(ev.terms))
        self.csv.write(",".join(ev.csv_values(self.columns, self.tiled)) + "\n")
        self.csv.flush()
        if ev.iteration in self.snapshots:
            save_png(ev.image, self.out_dir / f"iter_{ev.iteration:04d}.png", self._png_text(ev))
        if self.on_event:
            self.on_event(ev)

    def _png_text(self, ev: Progress | None = None) -> dict[str, str]:
        text = {"nst:config": yaml.safe_dump(self.config, sort_keys=False),
                "nst:network": self.weights.network, "nst:weights_sha256": self.weights.sha256}
        if ev is not None:
            text["nst:iteration"] = str(ev.iteration)
            text["nst:scale"] = f"{ev.phase + 1}/{ev.phases} {ev.size[1]}x{ev.size[0]}"
        return text

    def record(self, status: str, stop: str = "") -> dict:
        last = self.last
        info = {
            "status": status,
            "stop_reason": stop,
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "wall_seconds": round(time.time() - self.started, 3),
            "peak_memory_mb": round(peak_memory_mb(), 1),
            "iterations_done": last.iteration if last else 0,
            "final_losses": ({"content": last.content, "style": last.style, "tv": last.tv, "total": last.total,
                              **last.terms} if last else None),
            "seed": self.seed,
            "network": self.weights.network,
            "weights": {"source": self.weights.source, "path": self.weights.path, "sha256": self.weights.sha256,
                        "notice": self.weights.notice},
            "versions": versions(),
            **self.extra,
            "config": self.config,
        }
        fd, tmp = tempfile.mkstemp(suffix=".json", dir=self.out_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(info, f, indent=2)
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.out_dir / "run.json")
        return info

    def finish(self, image, stop: str) -> dict:
        if self.columns is None:
            self._header([])
        self.csv.close()
        info = self.record("finished", stop)  # run.json first: result.png is the "done" marker
        opts = self.config.get("result") or {}  # prints: bit depth, sRGB profile, DPI (nst.config.ResultConfig)
        depth, icc, dpi = opts.get("bit_depth", 8), opts.get("icc", False), opts.get("dpi")
        text = self._png_text()
        if opts.get("tiff"):
            save_tiff(image, self.out_dir / "result.tif", depth, icc, dpi, text["nst:config"])
        save_png(image, self.out_dir / "result.png", text, depth, icc, dpi)
        return info

    def abort(self, status: str, stop: str = "") -> dict:
        if self.columns is None:
            self._header([])
        if not self.csv.closed:
            self.csv.close()
        return self.record(status, stop)


def record_run(recorder: RunRecorder, printer, work) -> dict:
    """Run ``work() -> (image, stop reason)`` under ``recorder``; returns run.json's record.

    An interrupted or failed run keeps its snapshots and log and says so in run.json; only a finished
    one gets result.png.
    """
    try:
        image, stop = work()
    except Cancelled as exc:  # stopped by its caller (studio, sweep): recorded, not an error
        printer.close()
        say(f"cancelled: {exc}; snapshots, losses.csv and run.json kept")
        return recorder.abort("cancelled", str(exc))
    except KeyboardInterrupt:
        recorder.abort("interrupted")
        raise
    except BaseException:
        recorder.abort("failed")
        raise
    printer.close()
    done = recorder.finish(image, stop)
    out = recorder.out_dir
    say(f"done: {out / 'result.png'} ({done['iterations_done']} iterations, {done['wall_seconds']:.1f} s, "
        f"peak {done['peak_memory_mb']:.0f} MB; {stop})")
    return done
