"""The runs history: what the studio folder's ``runs/<id>/`` folders hold, read back for the page.

A run folder is the CLI's (``result.png``, ``iter_XXXX.png``, ``losses.csv``, ``run.json``) plus the studio's
``config.yaml`` (the settings, runnable by the CLI) and ``studio.json`` (kind, label, how it ended). Loss
curves and comparisons are :mod:`nst.plot`'s; the zip is the folder as it is.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import yaml

from nst.errors import UserError
from nst.plot import read_losses


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def thumbnail(folder: Path) -> str | None:
    """The image that best shows a run: its result, else its latest snapshot."""
    if (folder / "result.png").is_file():
        return "result.png"
    snaps = sorted(folder.glob("iter_*.png"))
    return snaps[-1].name if snaps else None


def describe(folder: Path, live: dict | None = None) -> dict:
    """One history row: id, kind, label, status (live if the manager knows it), thumbnail, files."""
    meta = _read_json(folder / "studio.json")
    run = _read_json(folder / "run.json")
    status = (live or {}).get("status") or run.get("status") or meta.get("status") or "unknown"
    if status in ("queued", "running") and not live:
        status = "stopped"  # recorded as pending by a studio that is no longer running it
    return {"id": folder.name, "kind": meta.get("kind", "nst"), "label": meta.get("label", folder.name),
            "status": status, "message": (live or {}).get("message") or meta.get("message", ""),
            "created": meta.get("created", folder.stat().st_mtime), "thumbnail": thumbnail(folder),
            "snapshots": sorted(p.name for p in folder.glob("iter_*.png")),
            "has_result": (folder / "result.png").is_file(), "wall_seconds": run.get("wall_seconds"),
            "iterations_done": run.get("iterations_done"), "final_losses": run.get("final_losses")}


def list_runs(runs_dir: Path, live: dict[str, dict]) -> list[dict]:
    folders = [p for p in runs_dir.iterdir() if p.is_dir() and (p / "studio.json").is_file()]
    rows = [describe(p, live.get(p.name)) for p in folders]
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


def zip_folder(folder: Path) -> bytes:
    """The run folder as a zip (in memory: run folders are a few MB)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                z.write(p, f"{folder.name}/{p.relative_to(folder)}")
    return buf.getvalue()
