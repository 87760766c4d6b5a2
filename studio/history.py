"""The runs history: what the studio folder's ``runs/<id>/`` folders hold, read back for the page.

A run folder is the CLI's (``result.png``, ``iter_XXXX.png``, ``losses.csv``, ``run.json``) plus the studio's
``config.yaml`` (the settings, runnable by the CLI) and ``studio.json`` (kind, label, how it ended). Loss
curves and comparisons are :mod:`nst.plot`'s; the zip is the folder as it is, less any link out of the
studio's folders (each member goes through the studio's one confinement function).

A run folder's files are data, not trusted: a broken or foreign ``studio.json`` costs only its own row,
and what a row says (id, label, kind, status, file names) carries no HTML the page could run.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import zipfile
from pathlib import Path

import yaml

from nst.errors import UserError
from nst.plot import read_losses


STATUSES = ("queued", "running", "finished", "cancelled", "interrupted", "failed", "error", "stopped", "unknown")
SNAPSHOT = re.compile(r"iter_\d{1,9}\.png")
_MARKUP = re.compile(r"[<>&\"'`\x00-\x1f\x7f]")


def clean_label(text: str) -> str:
    """A run label as the page shows it: one line, at most 80 characters, no markup characters."""
    return " ".join(_MARKUP.sub(" ", str(text)).split())[:80]


def _read_json(path: Path) -> dict:
    """A JSON object from a file, or {} (missing, unreadable, not JSON, not an object)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _number(value) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def snapshots(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("iter_*.png") if SNAPSHOT.fullmatch(p.name) and p.is_file())


def thumbnail(folder: Path) -> str | None:
    """The image that best shows a run: its result, else its latest snapshot."""
    if (folder / "result.png").is_file():
        return "result.png"
    snaps = snapshots(folder)
    return snaps[-1] if snaps else None


def describe(folder: Path, live: dict | None = None) -> dict:
    """One history row: id, kind, label, status (live if the manager knows it), thumbnail, files."""
    meta = _read_json(folder / "studio.json")
    run = _read_json(folder / "run.json")
    live = live or {}
    status = live.get("status") or run.get("status") or meta.get("status") or "unknown"
    if status in ("queued", "running") and not live:
        status = "stopped"  # recorded as pending by a studio that is no longer running it
    message = live.get("message") or meta.get("message") or ""
    losses = run.get("final_losses")
    return {"id": folder.name, "kind": meta.get("kind") if meta.get("kind") in ("nst", "doodle") else "nst",
            "label": clean_label(meta.get("label")) if isinstance(meta.get("label"), str) else folder.name,
            "status": status if status in STATUSES else "unknown",
            "message": " ".join(re.sub(r"[<>]", " ", message).split()) if isinstance(message, str) else "",
            "created": _number(meta.get("created")) or folder.stat().st_mtime, "thumbnail": thumbnail(folder),
            "snapshots": snapshots(folder), "has_result": (folder / "result.png").is_file(),
            "wall_seconds": _number(run.get("wall_seconds")), "iterations_done": _number(run.get("iterations_done")),
            "final_losses": losses if isinstance(losses, dict) else None}


def list_runs(folders, live: dict[str, dict]) -> list[dict]:
    """Every run folder of the studio (:class:`studio.files.Folders`) as a row, newest first; a folder that
    is no run of this studio (a link out, an odd name, no studio.json) or cannot be read is left out."""
    rows = []
    for p in folders.runs.iterdir():
        try:
            folders.run_dir(p.name)
            if (p / "studio.json").is_file():
                rows.append(describe(p, live.get(p.name)))
        except (UserError, OSError):
            continue
    return sorted(rows, key=lambda r: r["created"], reverse=True)


def run_detail(folder: Path, live: dict | None) -> dict:
    """A run reopened: its row, its config (for the panel), its loss columns."""
    if not (folder / "studio.json").is_file():
        raise UserError(f"no such run: {folder.name}")
    out = describe(folder, live)
    try:
        out["config"] = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        out["config"] = None
    try:
        cols = read_losses(folder)
        out["losses"] = {k: [float(x) for x in v] for k, v in cols.items()}
    except (UserError, OSError, ValueError):
        out["losses"] = None
    return out


def zip_folder(folder: Path, confine) -> bytes:
    """The run folder as a zip (in memory: run folders are a few MB). ``confine`` is the studio's
    :meth:`studio.files.Folders.confine`: a member it refuses (a link out of the studio) is left out;
    linked folders are not entered; hidden files (locks, temporaries) are not run results."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for top, dirs, files in os.walk(folder):  # followlinks=False: a linked folder is not entered
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                p = Path(top) / name
                if name.startswith("."):
                    continue
                try:
                    real = confine(p)
                except UserError:
                    continue
                if real.is_file():
                    z.write(real, f"{folder.name}/{p.relative_to(folder)}")
    return buf.getvalue()
