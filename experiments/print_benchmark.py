"""Prints benchmark: wall time, peak memory and seams of ``configs/print_4k.yaml`` at several sizes.

    python -m experiments.print_benchmark [--sizes 1024 2048 4096] [--config configs/print_4k.yaml]
                                          [--out runs/print_benchmark] [--set key=value ...] [--report-only]

Each size is one ordinary run (``python -m nst.run CONFIG --set image.size=S``) in its own process, so its
peak RSS (``run.json``'s ``peak_memory_mb``, the process's ru_maxrss) is its own. For every finished run it
prints a table row (size, tiles, wall time, peak RSS) and, when the final scale was tiled, the seam ratio
(:func:`nst.tiles.seam_ratio`: mean gradient magnitude along all tile borders / the image-wide mean) and
writes 256 px crops around interior tile corners at 100% into ``<run>/corners/`` to look at.
``--report-only`` reads runs already there (e.g. a long 4096 px run started with nohup). The README's
"Prints" table comes from this script. Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_size(config: Path, size: int, out: Path, extra: list[str]) -> int:
    cmd = [sys.executable, "-m", "nst.run", str(config), "--set", f"image.size={size}", "--output", str(out),
           *[a for s in extra for a in ("--set", s)]]
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode


def corner_crops(image, run: dict, out: Path, half: int = 128, count: int = 4) -> list[Path]:
    """Crops (2*half px square, 100%) centred on interior tile corners of the last pass, plus one far from any."""
    import numpy as np

    from nst.config import TilesConfig
    from nst.images import save_png
    from nst.tiles import border_lines

    tiles = TilesConfig(**run["config"]["tiles"])
    h, w = image.shape[:2]
    rows, cols = border_lines((h, w), tiles, tiles.passes)
    out.mkdir(exist_ok=True)
    corners = [(r, c) for r in rows for c in cols]
    picks = [corners[i] for i in np.linspace(0, len(corners) - 1, min(count, len(corners))).astype(int)]
    paths = []
    for r, c in picks:
        y, x = min(max(0, r - half), h - 2 * half), min(max(0, c - half), w - 2 * half)
        p = out / f"corner_y{r}_x{c}.png"
        save_png(image[y:y + 2 * half, x:x + 2 * half], p)
        paths.append(p)
    return paths


def report(run_dir: Path, size: int) -> dict | None:
    import numpy as np

    from nst.config import TilesConfig
    from nst.images import read_image
    from nst.plan import is_tiled
    from nst.tiles import border_lines, seam_ratio

    info_path, result = run_dir / "run.json", run_dir / "result.png"
    if not info_path.is_file():
        return None
    run = json.loads(info_path.read_text())
    row = {"size": size, "status": run["status"], "wall_s": run["wall_seconds"], "peak_mb": run["peak_memory_mb"],
           "scales": [f"{s['width']}x{s['height']}" + (f" tiles {'+'.join(map(str, s['tiles']))}" if "tiles" in s
                                                      else "") for s in run.get("scales", [])]}
    if result.is_file():
        image = read_image(result, "result", 10 ** 9).astype(np.float32)
        tiles = TilesConfig(**run["config"]["tiles"])
        if is_tiled(image.shape[:2], tiles):
            rows, cols = border_lines(image.shape[:2], tiles, tiles.passes)
            row["seam_ratio"] = round(seam_ratio(image, rows, cols), 3)
            row["corners"] = [str(p) for p in corner_crops(image, run, run_dir / "corners")]
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.print_benchmark", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "print_4k.yaml")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "print_benchmark")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--report-only", action="store_true", help="only read the runs already in --out")
    args = p.parse_args(argv)
    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout.strip()
    print(cpu)
    rows = []
    for size in args.sizes:
        out = args.out / str(size)
        if not args.report_only:
            run_size(args.config, size, out, args.set)
        row = report(out, size)
        if row:
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| size | scales | wall time | peak RSS | seam ratio |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {' -> '.join(r['scales'])} | {r['wall_s'] / 60:.1f} min | {r['peak_mb'] / 1024:.2f} GB "
              f"| {r.get('seam_ratio', '-')} |")
    (args.out / "benchmark.json").parent.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps({"cpu": cpu, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
