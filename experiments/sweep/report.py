"""What a sweep writes beside its runs: ``sweep.csv`` and ``contact_sheet.png`` (+ ``loss_curves.png``).

``sweep.csv``: one row per point, in sweep order: its index, the varying keys' values, status, the final
weighted loss terms, ``score_*`` (every result scored under one reference objective with
:mod:`nst.score`, when the sweep file names a ``score`` config: losses of points with other weights or
pooling are not comparable, scores are), iterations, wall time, host and Ray node, the precision path
(from run.json's ``precision``), the run folder and any error.

The contact sheet: each point's result as a thumbnail, labelled by the varying keys (a two-key grid
becomes rows x columns), a failed point as a grey cell saying so; below, the loss curves of all finished
points on shared axes (:func:`nst.plot.plot_runs`, also written alone as ``loss_curves.png``).
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from nst.cli import say
from nst.errors import UserError
from experiments.sweep.spec import Point, short

FIXED = ("index",)
TAIL = ("status", "iterations", "wall_seconds", "host", "node", "precision", "reused", "folder", "error")


def rows(points: list[Point], outcomes: dict[int, dict], varying: list[str], scores: dict[int, dict]) -> list[dict]:
    terms = list(dict.fromkeys(t for o in outcomes.values() for t in o["final_losses"]))
    out = []
    for p in points:
        o = outcomes.get(p.index) or {"status": "not run", "final_losses": {}, "folder": "", "error": ""}
        row = {"index": p.index, **{k: csv_value(p.values.get(k)) for k in varying}, "status": o["status"]}
        row.update({t: o["final_losses"].get(t, "") for t in terms})
        row.update({f"score_{k}": v for k, v in scores.get(p.index, {}).items()})
        row.update({k: o.get(k, "") for k in TAIL if k not in row})
        row["error"] = row["error"] or p.error
        out.append(row)
    return out


def csv_value(v) -> str:
    return json.dumps(v) if isinstance(v, (dict, list)) else ("" if v is None else str(v))


def write_csv(table: list[dict], path: Path) -> Path:
    keys: list[str] = []
    for r in table:
        keys += [k for k in r if k not in keys]
    try:
        fd, tmp = tempfile.mkstemp(suffix=".csv", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                w = csv.DictWriter(f, fieldnames=keys, restval="")
                w.writeheader()
                for r in table:
                    w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)  # a reader never sees half a table
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def score(points: list[Point], outcomes: dict[int, dict], config_path: str, sets: list[str] = ()) -> dict[int, dict]:
    """Every finished result scored under the objective of ``config_path`` (an nst config) with the sweep's
    ``set`` overrides (so at the sweep's image size)."""
    from nst.config import load_config
    from nst.score import score_images

    done = [p for p in points if outcomes.get(p.index, {}).get("status") == "finished"]
    if not done:
        return {}
    try:
        cfg = load_config(config_path, list(sets))
    except UserError as exc:
        raise UserError(f"sweep key 'score': {exc}") from None
    say(f"scoring {len(done)} result(s) under {Path(config_path).name}'s objective")
    scores, _ = score_images([str(Path(p.folder) / "result.png") for p in done], cfg)
    return {p.index: {k: s["losses"][k] for k in ("content", "style", "tv", "total")} for p, s in zip(done, scores)}


# ---------------------------------------------------------------- contact sheet


def layout(points: list[Point], varying: list[str]) -> tuple[list[list[Point | None]], list[str], list[str]]:
    """(cells, row labels, column labels): a full two-key grid as rows x columns, else rows of ~sqrt(n)."""
    if len(varying) == 2:
        a, b = varying
        ra = list(dict.fromkeys(json.dumps(p.values.get(a), sort_keys=True) for p in points))
        cb = list(dict.fromkeys(json.dumps(p.values.get(b), sort_keys=True) for p in points))
        if len(ra) * len(cb) == len(points):
            cells = [[None] * len(cb) for _ in ra]
            for p in points:
                cells[ra.index(json.dumps(p.values.get(a), sort_keys=True))][
                    cb.index(json.dumps(p.values.get(b), sort_keys=True))] = p
            return (cells, [f"{a}={short(json.loads(v))}" for v in ra], [f"{b}={short(json.loads(v))}" for v in cb])
    ncols = max(1, int(np.ceil(np.sqrt(len(points)))))
    cells = [points[i:i + ncols] for i in range(0, len(points), ncols)]
    return cells, [], []


def thumbnail(path: Path, size: int) -> np.ndarray | None:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            img.thumbnail((size, size), Image.LANCZOS)
            return np.asarray(img)
    except OSError:
        return None


def contact_sheet(points: list[Point], outcomes: dict[int, dict], varying: list[str], path: Path, title: str,
                  size: int = 160) -> Path:
    from matplotlib.figure import Figure

    from nst.plot import plot_runs

    cells, row_labels, col_labels = layout(points, varying)
    finished = [Path(p.folder) for p in points if outcomes.get(p.index, {}).get("status") == "finished"]
    curves = plot_runs(finished, path.with_name("loss_curves.png"), log=True,
                       title=f"loss curves of the {len(finished)} finished points") if finished else None
    thumbs = {p.index: thumbnail(Path(p.folder) / "result.png", size) for p in points
              if p.folder and outcomes.get(p.index, {}).get("status") == "finished"}
    shapes = [t.shape for t in thumbs.values() if t is not None]
    aspect = float(np.median([h / w for h, w, _ in shapes])) if shapes else 0.75
    # all in inches: panels, a title band above each row of panels, the row labels, the curves below
    nrows, ncols = len(cells), max(len(r) for r in cells)
    pw = max(1.6, size / 80)
    ph, band, label_w, head = pw * aspect, 0.45, (0.5 if row_labels else 0.1), 0.5
    curves_img = thumbnail(curves, 2000) if curves else None
    width = max(label_w + ncols * pw + 0.1, 8.0 if curves_img is not None else 0)
    curves_h = width * curves_img.shape[0] / curves_img.shape[1] if curves_img is not None else 0
    height = head + nrows * (ph + band) + curves_h
    left = (width - ncols * pw - label_w) / 2 + label_w  # the grid centred
    fig = Figure(figsize=(width, height))
    for r, row in enumerate(cells):
        for c, p in enumerate(row):
            y = height - head - r * (ph + band) - band - ph
            ax = fig.add_axes(((left + c * pw + 0.04) / width, y / height, (pw - 0.08) / width, ph / height))
            ax.set_xticks([])
            ax.set_yticks([])
            if p is None:
                ax.axis("off")
                continue
            o = outcomes.get(p.index, {"status": "not run", "final_losses": {}})
            img = thumbs.get(p.index)
            if img is not None:
                ax.imshow(img, aspect="auto")
            else:
                ax.set_facecolor("0.85")
                ax.text(0.5, 0.5, (o["status"] + "\n" + o.get("error", "")[:60]).strip(), ha="center",
                        va="center", fontsize=6.5, color="0.25", wrap=True, transform=ax.transAxes)
            total = o["final_losses"].get("total")
            loss = f"total {total:.3g}" if total is not None and o["status"] == "finished" else o["status"]
            label = col_labels[c] if (col_labels and r == 0) else ("" if col_labels else p.label)
            ax.set_title(f"{label}\n{loss}" if label else loss, fontsize=7)
            if c == 0 and row_labels:
                ax.set_ylabel(row_labels[r], fontsize=7.5)
    if curves_img is not None:
        ax = fig.add_axes((0, 0, 1, curves_h / height))
        ax.imshow(curves_img)
        ax.axis("off")
    fig.suptitle(title, fontsize=10, y=1 - 0.12 / height, va="top")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
        os.close(fd)
        try:
            fig.savefig(tmp, dpi=100, format="png")
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)  # atomic, as sweep.csv
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
