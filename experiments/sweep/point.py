"""One sweep point as an ordinary run, and what a sweep knows about a point's folder (resume).

:func:`run_point` is the one code path of a point, called by the sequential runner and inside a Ray
worker alike: :func:`execute` of the point's kind (:mod:`nst.kinds`) in-process, with the CLI's output
contract, weights loaded once per process, the caller's :class:`nst.events.Control` (so a sweep can cancel
it), and every failure turned into an outcome instead of an exception: one failing point never stops the
others. Next to the run's own files the point leaves ``sweep_point.json`` (its key, values, host, outcome).

A point whose ``run.json`` is damaged (cut short by a crash or a full disk) counts as failed; ``--rerun-failed``
runs it again after moving its damaged outputs aside as ``damaged_<name>`` (the run would otherwise refuse
files it cannot prove it wrote).
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

    started = time.time()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        log = open(folder / "sweep.log", "w", encoding="utf-8") if log_to_file else None
    except OSError as exc:  # the point's folder is a file, or cannot be made: this point fails, the sweep goes on
        return outcome(index, key, folder, "failed", error=f"cannot use the point's folder {folder}: "
                       f"{exc.strerror or exc}", host=host, node=node)
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
    """run.json of a folder (a JSON object), or None."""
    if folder is None:
        return None
    return _read_object(Path(folder) / "run.json")


def _read_object(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def set_aside_damaged(point) -> list[str]:
    """Rename the point's outputs that are there but carry no mark of this tool (a cut-short run.json,
    a truncated PNG or log) to ``damaged_<name>``, so that the point can run again; returns the names."""
    from nst.cli import say
    from nst.outputs import OUTPUT_NAMES, is_ours

    folder = Path(point.folder)
    moved = []
    for path in [*(folder / n for n in OUTPUT_NAMES), *sorted(folder.glob("iter_*.png"))]:
        if path.is_file() and not is_ours(path):
            target, n = folder / f"damaged_{path.name}", 2
            while target.exists():
                target, n = folder / f"damaged{n}_{path.name}", n + 1
            try:
                os.replace(path, target)
            except OSError:
                continue  # the run refuses it and says so: one point fails, the sweep goes on
            moved.append(path.name)
    if moved:
        say(f"note: point #{point.index}: damaged {', '.join(moved)} kept as damaged_*; running it again")
    return moved


def previous(point) -> dict | None:
    """The outcome already in a point's folder when it is worth keeping: a finished run of this very config
    (result.png, snapshots, same run key), or a failed one (kept unless --rerun-failed). Else None."""
    from experiments.sweep.spec import run_key

    record = read_record(point.folder)
    folder = Path(point.folder)
    saved = _read_object(folder / POINT_FILE) or {}
    if record is None and (folder / "run.json").exists():  # cut short (a crash, a full disk): never finished
        result = outcome(point.index, point.key, folder, "failed", host=saved.get("host", ""),
                         error="its run.json is damaged (cut short?); --rerun-failed runs the point again",
                         reused=True)
        return {**result, "damaged": True}
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
