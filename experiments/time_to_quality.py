"""Time to quality: how many loss+gradient evaluations (and seconds) each method needs to reach a target loss.

    python -m experiments.time_to_quality [--config configs/oil_landscape.yaml] [--size 256]
        [--target [LABEL=]LOSS ...] [--target-from METHOD [--at ITER ...]] [--stop-at LOSS]
        [--out runs/ttq256] [--xmax EVALS] --method NAME [KEY=VALUE ...] [--method NAME KEY=VALUE ...] ...

Each method is a list of ``--set`` overrides on the config (e.g. ``optimizer.history=100``,
``init.method=content``, ``scales=[{size: 0.5, iterations: 100}, {size: 1.0, iterations: 150}]``,
``optimizer.parameterization=laplacian``). Every method runs in its own process with the paper's float32
objective pinned (``precision=float32``, ``optimizer.xla=false``, no snapshots), through ``nst.run``'s own
``execute``; the engine's progress events give, after every iteration, the evaluations so far (line
searches included), the seconds and the total loss.

Scoring: the loss curve of a full-size row is the config's float32 objective (a method's overrides must not
touch the objective's keys: the script refuses them), so a coarse-to-fine run's curve starts at its first
full-size row. Cost is counted in *full-size evaluations*: an evaluation at a coarse scale counts its share of
the full size's pixels (``--set`` scales at 0.5 cost ~1/4). The final result (8-bit ``result.png``) is scored
with :class:`nst.score.Scorer` under the same objective. The target is ``--target`` or the final loss (its last
curve row, as run.json's final_losses) of the method named by ``--target-from`` (e.g. the 1000-iteration
reference), or its losses at the ``--at`` iterations; several targets give a column each. ``--stop-at LOSS``
cancels a method once its full-size loss is at or below LOSS (a cancelled run writes no result.png, so its
last image is written as ``stopped.png`` and scored).

Writes ``<out>/<method>/`` (the run folder, ``curve.csv``, ``summary.json``; a method whose summary exists with
the same overrides is not run again), ``<out>/ttq.csv`` / ``ttq.md`` (the table) and ``<out>/ttq.png`` (total
loss against full-size evaluations, every method in one plot). Every summary carries the CPU model and the
load average before and after its run. Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# keys that define the objective (as nst.score's OBJECTIVE_KEYS): a method may not change them
OBJECTIVE_PREFIXES = ("content", "style", "precision", "image.", "model.", "layers.", "loss.", "color.")
PINNED = ["precision=float32", "optimizer.xla=false", "snapshots=[]", "progress.quiet=true"]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip() + f", {os.cpu_count()} cores"
    return f"unknown CPU, {os.cpu_count()} cores"


def base_sets(size: int) -> list[str]:
    return [f"image.size={size}", *PINNED]


def check_method(name: str, sets: list[str]) -> None:
    for s in sets:
        key = s.split("=", 1)[0].strip()
        if "=" not in s or key.startswith(OBJECTIVE_PREFIXES):
            raise SystemExit(f"error: method {name}: '{s}' is not KEY=VALUE outside the objective's keys "
                             f"({', '.join(OBJECTIVE_PREFIXES)}); its curve would not be comparable")


# ---------------------------------------------------------------- one method (child process)


def run_one(config: str, size: int, name: str, sets: list[str], out: Path, stop_at: float | None = None) -> dict:
    import numpy as np
    from PIL import Image

    from nst.config import load_config
    from nst.events import Control
    from nst.inputs import load_inputs
    from nst.run import execute
    from nst.score import Scorer, load_scored_image
    from nst.recipe import TransferRecipe
    from nst.transfer import make_extractors
    from nst.weights import load_weights

    folder = out / name
    cfg = load_config(config, [*base_sets(size), *sets, f"output_dir={json.dumps(str(folder / 'run'))}"])
    ref_cfg = load_config(config, base_sets(size))
    weights = load_weights(cfg.model.network, cfg.model.weights, cfg.model.download)
    content, styles, _ = load_inputs(ref_cfg, log=lambda _s: None)
    full = content.shape[0] * content.shape[1]
    rows, cost, last, final = [], [0.0], [0], [None]
    control = Control()

    def collect(ev) -> None:
        h, w = ev.size
        cost[0] += (ev.evaluations - last[0]) * (h * w) / full  # evaluations since the last event, at this size
        last[0] = ev.evaluations
        rows.append({"iteration": ev.iteration, "evaluations": ev.evaluations, "full_evals": round(cost[0], 3),
                     "seconds": round(ev.seconds, 3), "phase": ev.phase, "size": f"{w}x{h}",
                     "full_size": int(h * w == full), "total": ev.total})
        if h * w == full:
            final[0] = ev.image
            if stop_at is not None and ev.total <= stop_at:  # reached: the rest of the curve costs time only
                control.cancel()

    load_before, start = load(), time.perf_counter()
    control.subscribe(collect)
    record = execute(cfg, weights, control=control)
    wall = time.perf_counter() - start
    load_after = load()
    extractor = make_extractors(TransferRecipe.of(ref_cfg, weights[1].network), weights[0])("float32")
    scorer = Scorer(ref_cfg, content, styles, extractor)
    result = folder / "run" / "result.png"
    if record.get("status") == "cancelled":  # stopped at --stop-at: the run wrote no result; score its last image
        result = folder / "stopped.png"
        Image.fromarray(np.clip(np.round(final[0]), 0, 255).astype(np.uint8)).save(result)
    image, _ = load_scored_image(str(result), (content.shape[1], content.shape[0]), ref_cfg.image.max_input_pixels)
    with open(folder / "curve.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = {"method": name, "sets": sets, "size": size, "network": weights[1].network,
               "cpu": cpu_model(), "load_before": load_before, "load_after": load_after, "wall_s": round(wall, 1),
               "status": record.get("status"), "iterations": rows[-1]["iteration"],
               "evaluations": rows[-1]["evaluations"], "full_evals": rows[-1]["full_evals"],
               "seconds": rows[-1]["seconds"], "final_curve_total": rows[-1]["total"],
               "scored_total": scorer(image)["total"], "stop": record.get("stop_reason"),
               "evaluation_seconds": record.get("evaluation_seconds"), "peak_mb": record.get("peak_memory_mb")}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


# ---------------------------------------------------------------- the table and the plot


def read_curve(folder: Path) -> list[dict]:
    with open(folder / "curve.csv") as f:
        return [{k: float(v) if k != "size" else v for k, v in r.items()} for r in csv.DictReader(f)]


def to_target(curve: list[dict], target: float) -> dict | None:
    """The first full-size row at or below ``target``, or None."""
    return next((r for r in curve if r["full_size"] and r["total"] <= target), None)


def table(out: Path, names: list[str], targets: list[tuple[str, float]]) -> list[dict]:
    """One row per method: for each target the full-size evaluations (raw evaluations) and seconds to reach it."""
    rows = []
    for name in names:
        s = json.loads((out / name / "summary.json").read_text())
        curve = read_curve(out / name)
        row = {"method": name, "sets": " ".join(s["sets"])}
        for label, value in targets:
            hit = to_target(curve, value)
            row[f"full_evals_to_{label}"] = hit["full_evals"] if hit else None
            row[f"evals_to_{label}"] = int(hit["evaluations"]) if hit else None
            row[f"seconds_to_{label}"] = hit["seconds"] if hit else None
        rows.append({**row, "evaluations": s["evaluations"], "full_evals": s["full_evals"], "seconds": s["seconds"],
                     "status": s["status"], "final_total": s["scored_total"],
                     "vs_last_target": s["scored_total"] / targets[-1][1],
                     "load": f"{s['load_before']} -> {s['load_after']}"})
    with open(out / "ttq.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    def fmt(v, spec):
        return "—" if v is None else format(v, spec)

    cpu = json.loads((out / names[0] / "summary.json").read_text())["cpu"]
    heads = " | ".join(f"to {label} ({value:.4g}): evaluations (raw) / s" for label, value in targets)
    lines = [f"float32 objective; CPU {cpu}; evaluations count full-size equivalents (a coarse-scale evaluation "
             "counts its pixel share), raw engine evaluations in brackets", "",
             f"| method | {heads} | run: evaluations / s | final loss (result.png) | / {targets[-1][0]} | "
             "load before -> after (1, 5, 15 min) |",
             "|---|" + "---|" * len(targets) + "---|---|---|---|"]
    for r in rows:
        cells = " | ".join(f"{fmt(r[f'full_evals_to_{l}'], '.0f')} ({fmt(r[f'evals_to_{l}'], 'd')}) / "
                           f"{fmt(r[f'seconds_to_{l}'], '.0f')}" for l, _ in targets)
        stopped = " (stopped at target)" if r["status"] == "cancelled" else ""
        lines.append(f"| {r['method']} | {cells} | {r['full_evals']:.0f} / {r['seconds']:.0f}{stopped} | "
                     f"{r['final_total']:.4g} | {r['vs_last_target']:.3f} | {r['load']} |")
    (out / "ttq.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


def plot(out: Path, names: list[str], targets: list[tuple[str, float]], size: int, xmax: float | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name in names:
        curve = [r for r in read_curve(out / name) if r["full_size"]]
        if curve:
            ax.plot([r["full_evals"] for r in curve], [r["total"] for r in curve], label=name, lw=1.3)
    for (label, value), style in zip(targets, ["--", ":", "-."] * 4):
        ax.axhline(value, color="k", ls=style, lw=0.8, label=f"{label} {value:.4g}")
    ax.set_yscale("log")
    ax.set_xlabel("loss+gradient evaluations (full-size equivalents: a coarse-scale evaluation counts its pixel share)")
    ax.set_ylabel("total loss at full size (float32 objective)")
    ax.set_title(f"time to quality, {size} px")
    low = min(v for _, v in targets)
    lo = min(low, *(min(r["total"] for r in read_curve(out / n) if r["full_size"]) for n in names)) * 0.97
    ax.set_ylim(lo, max(v for _, v in targets) * 2.0)
    if xmax:
        ax.set_xlim(0, xmax)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "ttq.png"
    fig.savefig(path, dpi=110)
    return path


def parse_target(text: str) -> tuple[str, float]:
    """``LABEL=LOSS`` or ``LOSS`` (labelled ``target``)."""
    label, _, value = text.rpartition("=")
    try:
        return (label or "target", float(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not LOSS or LABEL=LOSS") from None


def targets_of(args, out: Path) -> list[tuple[str, float]]:
    """(label, loss) pairs, lowest last: --target-from METHOD's losses at each --at iteration (its final loss
    without --at), then the --target values."""
    found = []
    if args.target_from:
        curve = read_curve(out / args.target_from)
        if not args.at:
            found.append((f"{args.target_from}@{int(curve[-1]['iteration'])}", curve[-1]["total"]))
        for it in args.at or []:
            row = next((r for r in curve if int(r["iteration"]) == it), None)
            if row is None:
                raise SystemExit(f"error: --at {it}: {args.target_from} has no iteration {it}")
            found.append((f"{args.target_from}@{it}", row["total"]))
    return sorted(found + list(args.target or []), key=lambda t: -t[1])


# ---------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/oil_landscape.yaml", help="the config whose objective scores")
    p.add_argument("--size", type=int, default=256, help="image.size of every run")
    p.add_argument("--target", type=parse_target, nargs="+", metavar="[LABEL=]LOSS", help="target total loss(es)")
    p.add_argument("--target-from", metavar="METHOD", help="take the targets from this method's curve")
    p.add_argument("--at", type=int, nargs="+", metavar="ITER",
                   help="with --target-from: its losses at these iterations (default: its final loss)")
    p.add_argument("--xmax", type=float, help="the plot's last evaluation")
    p.add_argument("--method", nargs="+", action="append", default=[], metavar="NAME KEY=VALUE",
                   help="a method: a name, then --set overrides (repeat for each method)")
    p.add_argument("--stop-at", type=float, metavar="LOSS",
                   help="end a method once its full-size loss is at or below LOSS (saves the time past a target)")
    p.add_argument("--out", help="folder (default runs/ttq<size>)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    out = Path(args.out or ROOT / "runs" / f"ttq{args.size}")
    methods = {m[0]: m[1:] for m in args.method}
    if not methods:
        raise SystemExit("error: give at least one --method NAME [KEY=VALUE ...]")
    for name, sets in methods.items():
        check_method(name, sets)
    if args.child:
        print(json.dumps(run_one(args.config, args.size, args.child, methods[args.child], out, args.stop_at)))
        return
    if args.target is None and args.target_from is None:
        raise SystemExit("error: give --target [LABEL=]LOSS and/or --target-from METHOD")
    if args.target_from and args.target_from not in methods:
        raise SystemExit(f"error: --target-from {args.target_from} is not one of the methods")
    print(f"machine: {cpu_model()}; load {load()}", flush=True)
    for name, sets in methods.items():
        summary = out / name / "summary.json"
        if summary.is_file() and json.loads(summary.read_text())["sets"] == sets:
            print(f"{name}: done before, kept", flush=True)
            continue
        (out / name).mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "experiments.time_to_quality", "--config", args.config, "--size",
               str(args.size), "--out", str(out), "--child", name, "--method", name, *sets,
               *(["--stop-at", str(args.stop_at)] if args.stop_at is not None else [])]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if done.returncode:
            print(f"{name}: failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}", flush=True)
            continue
        s = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name}: {s['evaluations']} evaluations ({s['full_evals']:.0f} full-size), {s['seconds']:.0f} s, "
              f"scored {s['scored_total']:.4g}; load {s['load_before']} -> {s['load_after']}", flush=True)
    names = [n for n in methods if (out / n / "summary.json").is_file()]
    if not names:
        return
    targets = targets_of(args, out)
    table(out, names, targets)
    print(f"plot: {plot(out, names, targets, args.size, args.xmax)}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
