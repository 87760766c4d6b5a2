"""Fig 3.3: a neural doodle (Champandard 2016): style | style map | doodle | result.

    python -m experiments.fig_doodle [--quick] [--config configs/fig_doodle.yaml]

One run of the doodle engine (through the sweep runner, :func:`doodle.run.execute`) with the figure
config's base doodle config (Monet's painting, its semantic map, and the Coastline doodle painted in
the same colours). Panels: the painting, its map, the doodle, the result; the run folder's
``labels.png`` (the labels found on the maps) is listed in the CSV. Writes <name>.png and <name>.csv.
"""

from __future__ import annotations

import time
from pathlib import Path

from experiments.common import (Context, FigureConfig, FigureResult, Panel, footer_text, image_grid,
                                run_row, write_csv)


def build(fig: FigureConfig, ctx: Context) -> FigureResult:
    from doodle.maps import pair_map_path

    start = time.time()
    variant = fig.variants[0] if fig.variants else None
    cfg = ctx.nst_config(fig, variant)  # a doodle config: its base config has a doodle section
    run = ctx.run(cfg, f"{fig.name}: doodle")
    style_map = Path(cfg.doodle.style_map) if cfg.doodle.style_map else pair_map_path(cfg.style)
    layout = cfg.doodle.target_map or cfg.doodle.content_map or (pair_map_path(cfg.content) if cfg.content else None)
    row = run_row("doodle", run, style=cfg.style, style_map=str(style_map), doodle=str(layout),
                  labels=str(run / "labels.png"), method=cfg.doodle.method)
    panels = [Panel(Path(cfg.style), "style (painting)"), Panel(style_map, "style map", nearest=True),
              Panel(Path(layout), "doodle (target map)", nearest=True),
              Panel(run / "result.png", f"result: {row['iteration']} iterations\ntotal loss {row['total']:.3g}")]
    note = f"method {cfg.doodle.method}, {cfg.doodle.phases} phase(s)"
    png = image_grid([panels], ctx.out / f"{fig.name}.png", fig.title, footer=footer_text(ctx, run, note))
    return FigureResult(fig.name, png, write_csv([row], ctx.out / f"{fig.name}.csv"), [str(run)],
                        time.time() - start)


if __name__ == "__main__":
    from experiments.common import figure_main

    figure_main(build, "fig_doodle.yaml", __doc__.splitlines()[0])
