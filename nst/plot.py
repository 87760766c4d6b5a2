"""``python -m nst.plot RUN_DIR [RUN_DIR ...] [--output PNG] [--log]``: loss curves of runs on shared axes.

Reads each run folder's ``losses.csv`` (the contract of :mod:`nst.outputs`: ``iteration, content,
style, tv, total, seconds``, weighted terms, then any further terms of the objective such as
``style.mrf``, and the ``phase`` and ``size`` of each row) and draws one panel per loss term, one line
per run, so that settings can be compared. Runs are labelled by their folder name plus, when several runs are
drawn and their ``run.json`` files say what they ran, the config keys in which they differ.

Also home of :func:`flattening_point`, the rule the Fig 3.1 script uses to find where a loss curve
flattens (Gatys et al. 2015 observe ~200 of 1000 L-BFGS iterations).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
from pathlib import Path

import numpy as np

from nst.cli import run_main, say
from nst.errors import UserError
from nst.events import CSV_HEADER, TILE_COLUMNS

TERMS = ("content", "style", "tv", "total")
# Config keys that never change a run's losses: left out when labelling runs by their differences.
IGNORED_KEYS = ("output_dir", "progress", "snapshots")


# ---------------------------------------------------------------- reading runs


def read_losses(run_dir: str | Path) -> dict[str, np.ndarray]:
    """A run's ``losses.csv`` as columns ``{"iteration": int array, "content": ..., "seconds": ...}``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir}")
    path = run_dir / "losses.csv"
    if not path.is_file():
        raise UserError(f"no losses.csv in {run_dir}: not a run folder (python -m nst.run writes one)")
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path} is not a text CSV file ({type(exc).__name__})") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    header = tuple(c.strip() for c in rows[0]) if rows else ()
    if header[:len(CSV_HEADER)] != CSV_HEADER:
        raise UserError(f"{path} does not start with the header {','.join(CSV_HEADER)}")
    body = [r for r in rows[1:] if r]
    if not body:
        raise UserError(f"{path} has no iterations yet")
    for n, r in enumerate(rows[1:], 2):
        if r and len(r) != len(header):
            raise UserError(f"{path} line {n} has {len(r)} values, the header {len(header)}")
    numeric = [i for i, name in enumerate(header) if name != "size"]  # size is "WxH"
    try:
        table = np.array([[float(r[i]) for i in numeric] for r in body], dtype=np.float64)
    except ValueError as exc:
        raise UserError(f"{path} has a value that is not a number: {exc}") from None
    cols = {header[i]: table[:, j] for j, i in enumerate(numeric)}
    cols["iteration"] = cols["iteration"].astype(int)
    if "phase" in cols:
        cols["phase"] = cols["phase"].astype(int)
    return cols


def term_columns(cols: dict[str, np.ndarray]) -> list[str]:
    """The loss columns of a read losses.csv: the fixed aggregates and total, then the objective's own terms."""
    return [k for k in cols if k not in ("iteration", "seconds", "phase", *TILE_COLUMNS)]


def read_run_config(run_dir: str | Path) -> dict | None:
    """The resolved config a run recorded in ``run.json``, or None."""
    path = Path(run_dir) / "run.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    config = info.get("config") if isinstance(info, dict) else None
    return config if isinstance(config, dict) else None  # a run.json that is not a run record: no config


def flatten_dict(data: dict, prefix: str = "") -> dict[str, object]:
    """{"loss": {"style_weight": 1e3}} -> {"loss.style_weight": 1e3}; lists stay values."""
    out = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and not key.startswith("layers."):
            out.update(flatten_dict(v, key + "."))
        else:
            out[key] = v
    return out


def config_differences(configs: list[dict]) -> list[str]:
    """Dotted keys whose values differ between the configs (those that can change the losses)."""
    flat = [flatten_dict(c) for c in configs]
    keys = sorted(set().union(*flat))
    return [k for k in keys if not k.startswith(IGNORED_KEYS)
            and len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1]


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and "/" in value:
        return Path(value).name
    if isinstance(value, list) and value and isinstance(value[0], dict) and "path" in value[0]:
        return "+".join(Path(v["path"]).name for v in value)  # style: [{path, weight}]
    if isinstance(value, dict):
        return ",".join(value)
    return str(value)


def run_labels(run_dirs: list[Path]) -> list[str]:
    """Folder names, plus ``key=value`` of the config keys in which the runs differ."""
    names = [Path(d).resolve().name for d in run_dirs]
    configs = [read_run_config(d) for d in run_dirs]
    if len(run_dirs) < 2 or any(c is None for c in configs):
        return names if len(set(names)) == len(names) else [str(d) for d in run_dirs]
    diffs = config_differences(configs)[:3]
    labels = []
    for name, cfg in zip(names, configs):
        flat = flatten_dict(cfg)
        extra = ", ".join(f"{k.split('.')[-1]}={_short(flat.get(k))}" for k in diffs)
        labels.append(f"{name} ({extra})" if extra else name)
    if len(set(labels)) < len(labels):
        labels = [f"{lab} [{d}]" for lab, d in zip(labels, run_dirs)]
    return labels


# ---------------------------------------------------------------- where a curve flattens


def flattening_point(iterations, values, window: int, threshold: float) -> int | None:
    """The first iteration after which the loss stops improving by much.

    Rule: with ``r(j) = (L(j) - L(j + window)) / L(j)``, the relative improvement over the next
    ``window`` iterations, the flattening point is the first iteration ``i`` such that
    ``r(j) < threshold`` for every ``j >= i`` (so a later burst of progress moves it later).
    Returns None when the curve never flattens within the run (or the run is shorter than the window).
    """
    it = np.asarray(iterations)
    v = np.asarray(values, dtype=np.float64)
    window = max(1, int(window))
    if len(v) <= window:
        return None
    rel = (v[:-window] - v[window:]) / np.maximum(np.abs(v[:-window]), 1e-300)  # (n - window,)
    above = np.nonzero(rel >= threshold)[0]
    first = 0 if len(above) == 0 else int(above[-1]) + 1
    if first >= len(rel):
        return None
    return int(it[first])


# ---------------------------------------------------------------- drawing


def active_terms(runs: list[dict[str, np.ndarray]]) -> list[str]:
    """content, style, total always; tv and the objective's own terms (style.mrf ...) where some run has them."""
    extra = [t for r in runs for t in term_columns(r) if t not in TERMS]
    names = [*TERMS, *dict.fromkeys(extra)]
    return [t for t in names if t in ("content", "style", "total")
            or any(t in r and np.any(r[t] != 0) for r in runs)]


def plot_runs(run_dirs: list[str | Path], output: str | Path, log: bool = False, title: str | None = None) -> Path:
    """Draw the runs' loss curves (one panel per term, one colour per run) into ``output``."""
    from matplotlib.figure import Figure  # no pyplot: leaves a notebook's backend and figures alone

    run_dirs = [Path(d) for d in run_dirs]
    runs = [read_losses(d) for d in run_dirs]
    labels = run_labels(run_dirs)
    terms = active_terms(runs)
    labels_ncol = 1 if len(runs) > 3 or max(map(len, labels)) > 40 else len(runs)
    legend_rows = math.ceil(len(runs) / labels_ncol)
    height = 3.3 + 0.2 * legend_rows  # inches: the panels, then one legend line per row
    fig = Figure(figsize=(4.2 * len(terms), height))
    axes = fig.subplots(1, len(terms), sharex=True, squeeze=False)
    for ax, term in zip(axes[0], terms):
        for run, label in zip(runs, labels):
            if term not in run:
                continue  # a term of another objective (an nst run beside a doodle's style.mrf)
            y = run[term]
            if log:
                y = np.where(y > 0, y, np.nan)  # log axes cannot show zeros
            ax.plot(run["iteration"], y, label=label, linewidth=1.4)
        ax.set_title(f"{term} loss" + (" (weighted)" if term != "total" else ""))
        ax.set_xlabel("iteration")
        if log:
            ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("loss" + (" (log scale)" if log else ""))
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=labels_ncol, fontsize=8, frameon=False)
    fig.suptitle(title or ("loss curves: " + ", ".join(Path(d).resolve().name for d in run_dirs))[:110])
    fig.tight_layout(rect=(0, (0.1 + 0.2 * legend_rows) / height, 1, 1))
    output = Path(output)
    tmp = output.with_name(f".tmp-{output.name}")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        # marked as nst's, so that a new run in this folder may delete it (nst.outputs.is_ours)
        png = output.suffix.lower() == ".png"
        meta = {"nst:plot": " ".join(map(str, run_dirs))} if png else {"Creator": "nst.plot"}
        fig.savefig(tmp, dpi=110, format=output.suffix[1:].lower(), metadata=meta)
        os.replace(tmp, output)  # never a half-written figure
    except OSError as exc:
        raise UserError(f"cannot write {output}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return output


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m nst.plot", description="Loss curves of one or several runs.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders holding losses.csv")
    p.add_argument("--output", "-o", metavar="PNG",
                   help="image to write (default: RUN_DIR/loss_curves.png for one run, loss_curves.png for several)")
    p.add_argument("--log", action="store_true", help="logarithmic loss axis")
    p.add_argument("--title", help="figure title")
    args = p.parse_args(argv)
    output = Path(args.output) if args.output else (
        Path(args.runs[0]) / "loss_curves.png" if len(args.runs) == 1 else Path("loss_curves.png"))
    if output.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise UserError(f"--output must end in .png, .pdf or .svg, got {output.name}")
    blocked = next((p for p in output.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise UserError(f"--output {output} lies under {blocked}, which is a file, not a folder")
    path = plot_runs(args.runs, output, log=args.log, title=args.title)
    say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
