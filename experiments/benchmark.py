"""Benchmark: seconds per optimiser iteration (one VGG forward + backward) and peak memory.

    python experiments/benchmark.py [--sizes 256 512] [--precisions float32 bfloat16] [--steps 5]

Each (size, precision) runs in its own process so its peak memory is its own. Prints a table; the
README's numbers come from this script. Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(size: int, precision: str, steps: int, jit: bool) -> dict:
    """Runs inside the child process: time ``steps`` loss+gradient evaluations after one warm-up."""
    import numpy as np
    import tensorflow as tf

    from nst.config import load_config
    from nst.objective import value_and_grad
    from nst.outputs import peak_memory_mb
    from nst.inputs import load_inputs
    from nst.transfer import compute_targets, initial_image, make_extractor, make_objective
    from nst.weights import load_weights

    cfg = load_config(ROOT / "configs" / "oil_landscape.yaml",
                      [f"image.size={size}", f"precision={precision}", "model.download=false"])
    content, styles, _ = load_inputs(cfg)
    weights, info = load_weights(cfg.model.network, cfg.model.weights, cfg.model.download)
    extractor = make_extractor(cfg, weights, info.network)
    objective = make_objective(extractor, compute_targets(extractor, content, styles, cfg), cfg)
    step = value_and_grad(objective, jit_compile=jit or precision == "bfloat16")
    x = tf.constant(initial_image(cfg, content)[None])
    step(x)  # trace + warm-up
    start = time.perf_counter()
    for _ in range(steps):
        _, grad = step(x)
        grad.numpy()
    per_it = (time.perf_counter() - start) / steps
    return {"size": f"{content.shape[1]}x{content.shape[0]}", "precision": precision, "jit": jit,
            "network": info.network, "s_per_it": round(per_it, 3), "peak_mb": round(peak_memory_mb()),
            "threads": tf.config.threading.get_intra_op_parallelism_threads() or "default",
            "finite": bool(np.isfinite(grad.numpy()).all())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--jit", action="store_true", help="also time XLA-compiled float32 steps (bfloat16 always is)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        size, precision, jit = args.child.split(",")
        print(json.dumps(measure(int(size), precision, args.steps, jit == "1")))
        return
    print(f"{'size':>9} {'precision':>9} {'xla':>4} {'network':>7} {'s/iter':>7} {'peak MB':>8}")
    for size in args.sizes:
        for precision in args.precisions:
            for jit in ([False, True] if args.jit and precision == "float32" else [precision == "bfloat16"]):
                out = subprocess.run([sys.executable, __file__, "--child", f"{size},{precision},{int(jit)}",
                                      "--steps", str(args.steps)], capture_output=True, text=True, cwd=ROOT)
                if out.returncode:
                    print(f"{size:>9} {precision:>9} failed: {out.stderr.strip().splitlines()[-1]}")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{r['size']:>9} {r['precision']:>9} {str(jit):>4} {r['network']:>7} "
                      f"{r['s_per_it']:>7.3f} {r['peak_mb']:>8}", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
