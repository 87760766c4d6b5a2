"""Fig 3.2: content | style | result after 50 | 300 | 1000 iterations, one row per run.

    python -m experiments.fig_comparison [--quick] [--config configs/fig_comparison.yaml]

Each variant of the figure config is one run (the first is the paper's Tuebingen + Starry Night, the
same run as Fig 3.1); the columns are the run's snapshots (``snapshots`` of its config: 50/300/1000 at
paper settings, 5/15/50 in quick mode), each titled with its iteration and total loss.
Writes <name>.png and <name>.csv (one line per image panel: run, iteration, losses).
"""

from __future__ import annotations

import time
from pathlib import Path

from experiments.common import (Context, FigureConfig, FigureResult, Panel, footer_text, image_grid, input_panels,
                                run_row, write_csv)


def build(fig: FigureConfig, ctx: Context) -> FigureResult:
    start = time.time()
    grid, labels, rows, runs = [], [], [], []
    cfgs = [ctx.nst_config(fig, v) for v in fig.variants]
    for v, cfg, run in zip(fig.variants, cfgs, ctx.run_many(cfgs, [f"{fig.name}: {v.label}" for v in fig.variants])):
        runs.append(str(run))
        panels = input_panels(cfg, ("content", "style"))
        for it in sorted(set(cfg.snapshots) | {cfg.optimizer.iterations}):
            row = run_row(v.label, run, it)
            rows.append(row)
            panels.append(Panel(Path(row["image"]), f"{it} iterations\ntotal loss {row['total']:.3g}"))
        grid.append(panels)
        labels.append(v.label)
    png = image_grid(grid, ctx.out / f"{fig.name}.png", fig.title, row_labels=labels,
                     footer=footer_text(ctx, Path(runs[0])))
    return FigureResult(fig.name, png, write_csv(rows, ctx.out / f"{fig.name}.csv"), runs, time.time() - start)


if __name__ == "__main__":
    from experiments.common import figure_main

    figure_main(build, "fig_comparison.yaml", __doc__.splitlines()[0])
