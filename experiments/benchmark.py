"""Benchmark: seconds per loss+gradient evaluation on every numeric path, and the main jobs end to end.

    python -m experiments.benchmark [--sizes 256 512] [--paths float32 float32+xla bfloat16 bfloat16+xla]
                                    [--steps 5] [--runs] [--out runs/benchmark]

Prints the machine (CPU model, AVX-512 / AMX flags, GPU if any), then one row per (size, path): seconds
per evaluation (best of ``--steps`` after a warm-up) and the process's peak memory; each row runs in its
own process so its peak is its own. With ``--runs``: wall time, final total loss and peak memory of
``configs/oil_landscape.yaml`` (1000 iterations) and ``configs/fast.yaml`` as shipped (precision auto),
and fast.yaml's result scored under oil_landscape's objective in float32 (``nst.score``). The README's
"Speed" table comes from this script. Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("float32", "float32+xla", "bfloat16", "bfloat16+xla")


def machine() -> str:
    """CPU model and the flags that decide bf16 speed, plus GPUs."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            k, _, v = line.partition(":")
            info.setdefault(k.strip(), v.strip())
    except OSError:
        pass
    flags = set(info.get("flags", "").split())
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    gpus = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                          text=True).stdout.strip() if _has("nvidia-smi") else ""
    import os

    return (f"{info.get('model name', platform.processor())}, {os.cpu_count()} cores, flags: {' '.join(wanted)}"
            + (f"; GPU: {gpus}" if gpus else "; no GPU"))


def _has(cmd: str) -> bool:
    import shutil

    return shutil.which(cmd) is not None


def measure(size: int, path: str, steps: int) -> dict:
    """Runs inside the child process: time ``steps`` loss+gradient evaluations after one warm-up."""
    import numpy as np
    import tensorflow as tf

    from nst.config import load_config
    from nst.inputs import load_inputs
    from nst.outputs import peak_memory_mb
    from nst.precision import time_step
    from nst.recipe import TransferRecipe
    from nst.transfer import compute_targets, initial_image, make_extractors, make_objective
    from nst.weights import load_weights

    precision, _, xla = path.partition("+")
    cfg = load_config(ROOT / "configs" / "oil_landscape.yaml",
                      [f"image.size={size}", f"precision={precision}", "model.download=false"])
    content, styles, _ = load_inputs(cfg, log=lambda _s: None)
    weights, info = load_weights(cfg.model.network, cfg.model.weights, cfg.model.download)
    recipe = TransferRecipe.of(cfg, info.network)
    extractors = make_extractors(recipe, weights)
    objective = make_objective(extractors(precision), compute_targets(extractors("float32"), content, styles, recipe),
                               recipe)
    x = tf.constant(initial_image(cfg, content)[None])
    start = time.perf_counter()
    seconds, total = time_step(objective.step(bool(xla)), x, repeats=steps)
    return {"size": f"{content.shape[1]}x{content.shape[0]}", "path": path, "network": info.network,
            "s_per_eval": round(seconds, 3), "warmup_s": round(time.perf_counter() - start - seconds * steps, 1),
            "total": total, "peak_mb": round(peak_memory_mb()), "finite": bool(np.isfinite(total))}


def timed_run(config: str, out: Path) -> dict:
    """``python -m nst.run CONFIG --output OUT`` in its own process: wall time and its run.json."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nst.run", config, "--output", str(out)], cwd=ROOT,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        return {"config": config, "error": done.stderr.strip().splitlines()[-1]}
    run = json.loads((out / "run.json").read_text())
    return {"config": config, "wall_s": round(wall, 1), "total": run["final_losses"]["total"],
            "iterations": run["iterations_done"], "peak_mb": run["peak_memory_mb"], "path": run["precision"]["path"],
            "stop": run["stop_reason"], "fallbacks": run.get("precision_fallbacks", [])}


def score(image: Path, config: str) -> float:
    done = subprocess.run([sys.executable, "-m", "nst.score", str(image), "--config", config, "--set",
                           "precision=float32", "--json"], cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"nst.score failed: {done.stderr.strip()}")
    return json.loads(done.stdout)["images"][0]["losses"]["total"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[256, 512], help="evaluation sizes; none: skip the table")
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--runs", action="store_true", help="also run oil_landscape.yaml and fast.yaml end to end")
    p.add_argument("--configs", nargs="+", default=["configs/oil_landscape.yaml", "configs/fast.yaml"],
                   help="the run configs --runs times (default: the main job and fast.yaml)")
    p.add_argument("--out", default=str(ROOT / "runs" / "benchmark"), help="where --runs writes its run folders")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        size, path = args.child.split(",")
        print(json.dumps(measure(int(size), path, args.steps)))
        return
    print(f"machine: {machine()}")
    print(f"{'size':>9} {'path':>13} {'network':>7} {'s/eval':>7} {'warm-up s':>9} {'peak MB':>8}")
    for size in args.sizes:
        for path in args.paths:
            out = subprocess.run([sys.executable, "-m", "experiments.benchmark", "--child", f"{size},{path}",
                                  "--steps", str(args.steps)], capture_output=True, text=True, cwd=ROOT)
            if out.returncode:
                print(f"{size:>9} {path:>13} failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}", flush=True)
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{r['size']:>9} {r['path']:>13} {r['network']:>7} {r['s_per_eval']:>7.3f} {r['warmup_s']:>9.1f} "
                  f"{r['peak_mb']:>8}", flush=True)
    if not args.runs:
        return
    out = Path(args.out)
    print(f"\n{'config':>22} {'path':>13} {'iterations':>10} {'wall s':>7} {'total loss':>11} {'peak MB':>8}")
    for config in args.configs:
        r = timed_run(config, out / Path(config).stem)
        if "error" in r:
            print(f"{config:>22} failed: {r['error']}", flush=True)
            continue
        print(f"{config:>22} {r['path']:>13} {r['iterations']:>10} {r['wall_s']:>7.1f} {r['total']:>11.4g} "
              f"{r['peak_mb']:>8.0f}  {r['stop']}{'; ' + '; '.join(r['fallbacks']) if r['fallbacks'] else ''}",
              flush=True)
    for stem in ("oil_landscape", "fast"):
        image = out / stem / "result.png"
        if image.is_file():
            print(f"{stem} result.png under oil_landscape's float32 objective (nst.score): "
                  f"{score(image, 'configs/oil_landscape.yaml'):.4g}", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
