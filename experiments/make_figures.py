"""Every figure in one command: ``python -m experiments.make_figures [--quick] [--only NAME ...] [--docs]``.

Reads every ``configs/fig_*.yaml``, hands each to its script (the config's ``figure`` key names it),
and writes ``<out>/<name>.png`` + ``<name>.csv`` for each, the runs behind them under ``<out>/runs/``
(shared between figures when their configs are identical, and reused by later invocations), and
``<out>/summary.json`` (which figure used which runs, how long it took, key numbers).

* ``--quick``: small images and few iterations (96 px, 50 iterations, snapshots 5/15/50), into
  ``figures/quick/``: every figure in a few minutes on two CPU cores; CI runs it.
* default: the paper's settings (512 px, 1000 iterations, snapshots 50/300/1000) into ``figures/``:
  hours on a CPU, minutes on a GPU.
* ``--docs``: also write small copies of the README's figures into ``docs/`` (each under 150 KB).

``make figures`` and ``make figures-quick`` call this.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import time
from pathlib import Path

from experiments.common import (CONFIGS, DOCS, FigureResult, common_args, load_figure_config, make_context)
from nst.cli import run_main, say
from nst.errors import UserError

# figure kind (the `figure:` key of a figure config) -> the module whose build() draws it
SCRIPTS = {
    "loss_curves": "experiments.fig_loss_curves",
    "comparison": "experiments.fig_comparison",
    "doodle": "experiments.fig_doodle",
    "pooling": "experiments.fig_pooling",
    "weight_ratio": "experiments.fig_weight_ratio",
    "style_layers": "experiments.fig_style_layers",
    "content_layers": "experiments.fig_content_layers",
    "style_forms": "experiments.fig_style_forms",
}
ORDER = list(SCRIPTS)  # the main run first, so the ablations find it finished
DOCS_MAX_BYTES = 150_000
DOCS_MAX_WIDTH = 1000


def figure_configs(folder: Path = CONFIGS) -> list:
    configs = [load_figure_config(p) for p in sorted(folder.glob("fig_*.yaml"))]
    return sorted(configs, key=lambda c: ORDER.index(c.figure))


def select(configs: list, only: list[str]) -> list:
    if not only:
        return configs
    keys = {c.name: c for c in configs} | {Path(c.path).stem: c for c in configs} | {c.figure: c for c in configs}
    unknown = [o for o in only if o not in keys]
    if unknown:
        known = ", ".join(c.figure for c in configs)
        raise UserError(f"unknown figure {', '.join(unknown)}; known: {known} (or the config/file names)")
    chosen = {id(keys[o]) for o in only}
    return [c for c in configs if id(c) in chosen]


def write_docs_png(src: Path, dst: Path) -> Path:
    """A copy of ``src`` no wider than DOCS_MAX_WIDTH and under DOCS_MAX_BYTES (palette PNG if needed)."""
    from PIL import Image

    dst.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as img:
        img = img.convert("RGB")
        width = DOCS_MAX_WIDTH
        while True:
            small = img if img.width <= width else img.resize((width, round(img.height * width / img.width)),
                                                              Image.LANCZOS)
            small.save(dst, optimize=True)
            if dst.stat().st_size <= DOCS_MAX_BYTES:
                return dst
            small.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
                dst, optimize=True)
            if dst.stat().st_size <= DOCS_MAX_BYTES or width < 400:
                return dst
            width = int(width * 0.85)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.make_figures", description=__doc__.splitlines()[0])
    common_args(p)
    p.add_argument("--only", nargs="+", default=[], metavar="NAME",
                   help="only these figures (figure kind, output name or config file stem)")
    p.add_argument("--docs", action="store_true", help="also write small copies of the key figures into docs/")
    p.add_argument("--docs-dir", default=str(DOCS), metavar="DIR", help="where --docs writes (default: docs/)")
    p.add_argument("--list", action="store_true", help="list the figures and their configs, then exit")
    args = p.parse_args(argv)
    configs = select(figure_configs(), args.only)
    if args.list:
        for c in configs:
            print(f"{c.figure:<15} {c.name:<26} {Path(c.path).relative_to(CONFIGS.parent)}")
        return 0
    ctx = make_context(args)
    ctx.out.mkdir(parents=True, exist_ok=True)
    summary_path = ctx.out / "summary.json"
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        summary = {}
    summary.setdefault("figures", {})
    start = time.time()
    for fig in configs:
        say(f"[{fig.name}] {fig.title}")
        build = importlib.import_module(SCRIPTS[fig.figure]).build
        res: FigureResult = build(fig, ctx)
        say(f"[{fig.name}] wrote {res.png.name}, {res.csv.name} ({res.seconds:.0f} s)")
        entry = {"png": str(res.png), "csv": str(res.csv), "runs": res.runs, "seconds": round(res.seconds, 1),
                 "config": fig.path, "title": fig.title, **res.extra}
        if args.docs and fig.docs:
            copy = res.extra.get("docs_copy")  # a figure that made its own small copy (a JPEG of paintings)
            Path(args.docs_dir).mkdir(parents=True, exist_ok=True)
            entry["docs"] = str(shutil.copyfile(copy, Path(args.docs_dir) / Path(copy).name) if copy else
                                write_docs_png(res.png, Path(args.docs_dir) / res.png.name))
            say(f"[{fig.name}] docs copy: {entry['docs']}")
        summary["figures"][fig.name] = entry
    summary.update({"mode": ctx.mode, "command": "python -m experiments.make_figures " + " ".join(argv),
                    "seconds": round(time.time() - start, 1), "runs_made": ctx.runs_made,
                    "runs_reused": ctx.runs_reused})
    summary_path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    say(f"{len(configs)} figures in {time.time() - start:.0f} s ({len(ctx.runs_made)} runs made, "
        f"{len(ctx.runs_reused)} found finished and reused) -> {ctx.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
