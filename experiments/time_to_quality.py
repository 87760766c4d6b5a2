"""Time to quality: how many loss+gradient evaluations (and seconds) each method needs to reach a target loss.

    python -m experiments.time_to_quality [--config configs/oil_landscape.yaml] [--size 256]
        [--target LOSS | --target-from METHOD] [--out runs/ttq256]
        --method NAME [KEY=VALUE ...] [--method NAME KEY=VALUE ...] ...

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
reference).

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


def run_one(config: str, size: int, name: str, sets: list[str], out: Path) -> dict:
    from nst.config import load_config
    from nst.events import Control
    from nst.inputs import load_inputs
    from nst.run import execute
    from nst.score import Scorer, load_scored_image
    from nst.transfer import make_extractor
    from nst.weights import load_weights

    folder = out / name
    cfg = load_config(config, [*base_sets(size), *sets, f"output_dir={json.dumps(str(folder / 'run'))}"])
    ref_cfg = load_config(config, base_sets(size))
    weights = load_weights(cfg.model.network, cfg.model.weights, cfg.model.download)
    content, styles, _ = load_inputs(ref_cfg, log=lambda _s: None)
    full = content.shape[0] * content.shape[1]
    rows, cost, last = [], [0.0], [0]

    def collect(ev) -> None:
        h, w = ev.size
        cost[0] += (ev.evaluations - last[0]) * (h * w) / full  # evaluations since the last event, at this size
        last[0] = ev.evaluations
        rows.append({"iteration": ev.iteration, "evaluations": ev.evaluations, "full_evals": round(cost[0], 3),
                     "seconds": round(ev.seconds, 3), "phase": ev.phase, "size": f"{w}x{h}",
                     "full_size": int(h * w == full), "total": ev.total})

    load_before, start = load(), time.perf_counter()
    record = execute(cfg, weights, control=Control([collect]))
    wall = time.perf_counter() - start
    load_after = load()
    scorer = Scorer(ref_cfg, content, styles, make_extractor(ref_cfg, weights[0], weights[1].network, "float32"))
    image, _ = load_scored_image(str(folder / "run" / "result.png"), (content.shape[1], content.shape[0]),
                                 ref_cfg.image.max_input_pixels)
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


def table(out: Path, names: list[str], target: float) -> list[dict]:
    rows = []
    for name in names:
        s = json.loads((out / name / "summary.json").read_text())
        hit = to_target(read_curve(out / name), target)
        rows.append({"method": name, "sets": " ".join(s["sets"]),
                     "evals_to_target": int(hit["evaluations"]) if hit else None,
                     "full_evals_to_target": hit["full_evals"] if hit else None,
                     "seconds_to_target": hit["seconds"] if hit else None,
                     "evaluations": s["evaluations"], "full_evals": s["full_evals"], "seconds": s["seconds"],
                     "final_total": s["scored_total"], "vs_target": s["scored_total"] / target,
                     "load": f"{s['load_before']} -> {s['load_after']}"})
    with open(out / "ttq.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    def fmt(v, spec):
        return "—" if v is None else format(v, spec)

    lines = [f"target {target:.4g} (float32 objective); CPU {json.loads((out / names[0] / 'summary.json').read_text())['cpu']}",
             "", "| method | evaluations to target | full-size evaluations to target | seconds to target | "
             "evaluations / full-size / seconds run | final loss (result.png) | / target | load (1, 5, 15 min) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {fmt(r['evals_to_target'], 'd')} | {fmt(r['full_evals_to_target'], '.0f')} | "
                     f"{fmt(r['seconds_to_target'], '.0f')} | {r['evaluations']} / {r['full_evals']:.0f} / "
                     f"{r['seconds']:.0f} | {r['final_total']:.4g} | {r['vs_target']:.3f} | {r['load']} |")
    (out / "ttq.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


def plot(out: Path, names: list[str], target: float, size: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name in names:
        curve = [r for r in read_curve(out / name) if r["full_size"]]
        if curve:
            ax.plot([r["full_evals"] for r in curve], [r["total"] for r in curve], label=name, lw=1.3)
    ax.axhline(target, color="k", ls="--", lw=0.8, label=f"target {target:.4g}")
    ax.set_yscale("log")
    ax.set_xlabel("loss+gradient evaluations (full-size equivalents: a coarse-scale evaluation counts its pixel share)")
    ax.set_ylabel("total loss at full size (float32 objective)")
    ax.set_title(f"time to quality, {size} px")
    lo = min(target, *(min(r["total"] for r in read_curve(out / n) if r["full_size"]) for n in names)) * 0.97
    ax.set_ylim(lo, target * 2.0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "ttq.png"
    fig.savefig(path, dpi=110)
    return path


# ---------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/oil_landscape.yaml", help="the config whose objective scores")
    p.add_argument("--size", type=int, default=256, help="image.size of every run")
    p.add_argument("--target", type=float, help="the target total loss")
    p.add_argument("--target-from", metavar="METHOD", help="take the target from this method's final loss")
    p.add_argument("--method", nargs="+", action="append", default=[], metavar="NAME KEY=VALUE",
                   help="a method: a name, then --set overrides (repeat for each method)")
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
        print(json.dumps(run_one(args.config, args.size, args.child, methods[args.child], out)))
        return
    if (args.target is None) == (args.target_from is None):
        raise SystemExit("error: give exactly one of --target LOSS and --target-from METHOD")
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
               str(args.size), "--out", str(out), "--child", name, "--method", name, *sets]
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
    target = args.target if args.target is not None else \
        json.loads((out / args.target_from / "summary.json").read_text())["final_curve_total"]
    table(out, names, target)
    print(f"plot: {plot(out, names, target, args.size)}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
