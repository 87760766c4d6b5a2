"""One sweep point as an ordinary run, and what a sweep knows about a point's folder (resume).

:func:`run_point` is the one code path of a point, called by the sequential runner and inside a Ray
worker alike: :func:`execute` of the point's kind (:mod:`nst.kinds`) in-process, with the CLI's output
contract, weights loaded once per process, the caller's :class:`nst.events.Control` (so a sweep can cancel
it), and every failure turned into an outcome instead of an exception: one failing point never stops the
others. Next to the run's own files the point leaves ``sweep_point.json`` (its key, values, host, outcome).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import traceback
from pathlib import Path
from typing import Any

from nst.errors import UserError

POINT_FILE = "sweep_point.json"
_WEIGHTS: dict = {}  # (network, weights file, download) -> (weights, WeightsInfo): once per process


def weights_for(cfg) -> tuple:
    from nst.weights import load_weights

    key = (cfg.model.network, cfg.model.weights, cfg.model.download)
    if key not in _WEIGHTS:
        _WEIGHTS[key] = load_weights(*key)
    return _WEIGHTS[key]


def node_id() -> str:
    """The Ray node this process runs on (short), or '' outside Ray."""
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()[:8]
    except Exception:  # noqa: BLE001 - not in Ray, or an old Ray: no node id, no harm
        pass
    return ""


def outcome(index: int, key: str, folder: Path | None, status: str, record: dict | None = None,
            error: str = "", host: str = "", node: str = "", reused: bool = False) -> dict:
    """What the driver needs of a point: plain data, cheap to send back from a worker."""
    record = record or {}
    precision = record.get("precision")
    return {"index": index, "key": key, "folder": str(folder) if folder else "", "status": status,
            "iterations": record.get("iterations_done", 0), "final_losses": record.get("final_losses") or {},
            "wall_seconds": record.get("wall_seconds", 0.0), "host": host, "node": node,
            "precision": precision.get("path", "") if isinstance(precision, dict) else (precision or ""),
            "error": error, "reused": reused}


def run_point(kind: str, cfg: Any, index: int, key: str, values: dict, control=None,
              log_to_file: bool = False) -> dict:
    """Run one point into ``cfg.output_dir``; never raises for a failing run (KeyboardInterrupt does pass)."""
    folder = Path(cfg.output_dir)
    host, node = socket.gethostname(), node_id()
    from nst.kinds import kind as kind_named

    run = kind_named(kind).execute

    def execute(weights):
        return run(cfg, weights, control=control,
                   progress_every=max(cfg.progress.every, cfg.optimizer.iterations // 5))

    folder.mkdir(parents=True, exist_ok=True)
    log = open(folder / "sweep.log", "w", encoding="utf-8") if log_to_file else None
    started = time.time()
    try:
        with contextlib.redirect_stderr(log) if log else contextlib.nullcontext():
            record = execute(weights_for(cfg))
        result = outcome(index, key, folder, record["status"], record, host=host, node=node)
    except UserError as exc:  # bad input of this point only
        result = outcome(index, key, folder, "failed", read_record(folder), error=str(exc), host=host, node=node)
    except KeyboardInterrupt:
        write_point_file(folder, key, values, outcome(index, key, folder, "interrupted", read_record(folder),
                                                      host=host, node=node))
        raise
    except Exception as exc:  # noqa: BLE001 - a crash of one point is recorded, the sweep goes on
        if log:
            traceback.print_exc(file=log)
        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        result = outcome(index, key, folder, "failed", read_record(folder), error=error, host=host, node=node)
    finally:
        if log:
            log.close()
    if not result["wall_seconds"]:
        result["wall_seconds"] = round(time.time() - started, 3)
    write_point_file(folder, key, values, result)
    return result


def write_point_file(folder: Path, key: str, values: dict, result: dict) -> None:
    try:
        data = {"key": key, "values": values, **{k: v for k, v in result.items() if k not in ("reused",)}}
        tmp = folder / (POINT_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, folder / POINT_FILE)
    except OSError:
        pass  # the folder went away (or is read-only): the outcome still reaches sweep.csv


def read_record(folder: Path | None) -> dict | None:
    """run.json of a folder, or None."""
    if folder is None:
        return None
    try:
        return json.loads((Path(folder) / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def previous(point) -> dict | None:
    """The outcome already in a point's folder when it is worth keeping: a finished run of this very config
    (result.png, snapshots, same run key), or a failed one (kept unless --rerun-failed). Else None."""
    from experiments.sweep.spec import run_key

    record = read_record(point.folder)
    folder = Path(point.folder)
    try:
        saved = json.loads((folder / POINT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    if not record and saved.get("key") == point.key and saved.get("status") == "failed":  # refused before running
        return outcome(point.index, point.key, folder, "failed", error=saved.get("error", ""),
                       host=saved.get("host", ""), node=saved.get("node", ""), reused=True)
    if not record or run_key(record.get("config", {})) != point.key:
        return None
    status = record.get("status")
    if status == "finished" and not ((folder / "result.png").is_file()
                                     and all((folder / f"iter_{s:04d}.png").is_file()
                                             for s in point.cfg.snapshots if s <= point.cfg.optimizer.iterations)):
        return None
    if status not in ("finished", "failed"):
        return None  # interrupted / cancelled: never done, run again
    return outcome(point.index, point.key, folder, status, record, error=saved.get("error", ""),
                   host=saved.get("host", ""), node=saved.get("node", ""), reused=True)
