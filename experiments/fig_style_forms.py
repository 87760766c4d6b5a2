"""Style statistics side by side: every ``loss.style_form`` on the same pairs, network, optimiser and iterations.

    python -m experiments.fig_style_forms [--quick] [--config configs/fig_style_forms.yaml] [--set KEY=VALUE]

Rows are the figure config's ``variants`` (content x style pairs), columns its ``columns`` (one form each,
with the form's own settings, e.g. mrf on Li & Wand's layers). Every cell is one run (a sweep point, reused
when an identical run is finished). Then the cross-scoring: every result is scored under every column's
objective (:class:`nst.score.Scorer`, the optimiser's own compiled step, so scoring under the run's own form
gives the run's own loss up to 8-bit PNG rounding). Under a form F, the table gives each result's style loss
over the style loss of F's own result: 1 on the diagonal, below 1 where another form's result scores better
under F than F's own. Writes <name>.png (the grid), <name>.jpg (a small copy for docs/), <name>.csv (one row
per run: losses, evaluations, seconds per evaluation), <name>_scores.csv (every result x every form) and
<name>_scores.md (the table, per pair).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from experiments.common import (Context, FigureConfig, FigureResult, Panel, footer_text, image_grid, input_panels,
                                run_json, run_row, write_csv)

JPEG_MAX_BYTES = 140_000  # docs copies stay small (tests/test_figures.py checks < 150 kB)
JPEG_MAX_WIDTH = 1400


def score_results(ctx: Context, fig: FigureConfig, variant, results: dict[str, Path]) -> list[dict]:
    """Every result of one pair scored under every column's objective: [{result, scored_under, style, ...}]."""
    from nst.inputs import load_inputs
    from nst.recipe import TransferRecipe
    from nst.score import Scorer, load_scored_image
    from nst.transfer import make_extractors
    from nst.weights import load_weights

    rows = []
    for column in fig.columns:
        cfg = ctx.nst_config(fig, variant, column.set)
        content, styles, _ = load_inputs(cfg, log=lambda _s: None)
        weights, info = load_weights(cfg.model.network, cfg.model.weights, cfg.model.download)
        scorer = Scorer(cfg, content, styles, make_extractors(TransferRecipe.of(cfg, info.network), weights)("float32"))
        size = (content.shape[1], content.shape[0])
        for label, run in results.items():
            image, _ = load_scored_image(str(run / "result.png"), size, cfg.image.max_input_pixels)
            losses = scorer(image)
            rows.append({"pair": variant.label, "result": label, "scored_under": column.label,
                         "style": losses["style"], "content": losses["content"], "total": losses["total"]})
    own = {r["scored_under"]: r["style"] for r in rows if r["result"] == r["scored_under"]}
    for r in rows:  # relative to the scoring form's own result
        base = own.get(r["scored_under"])
        r["style_over_own"] = r["style"] / base if base else math.nan
    return rows


def score_table(rows: list[dict], columns: list[str]) -> str:
    """Markdown, one table per pair: results down, the form scored under across, style / own result's."""
    out = []
    for pair in dict.fromkeys(r["pair"] for r in rows):
        out += [f"**{pair}** (style loss under the column's form / that form's own result's)", "",
                "| result \\ scored under | " + " | ".join(columns) + " |",
                "|---|" + "---|" * len(columns)]
        for result in columns:
            vals = {r["scored_under"]: r["style_over_own"] for r in rows if r["pair"] == pair and r["result"] == result}
            out.append(f"| {result} | " + " | ".join(f"{vals[c]:.3g}" for c in columns) + " |")
        out.append("")
    return "\n".join(out)


def write_jpeg(src: Path, dst: Path) -> Path:
    """A JPEG copy of ``src`` no wider than JPEG_MAX_WIDTH and under JPEG_MAX_BYTES."""
    from PIL import Image

    with Image.open(src) as img:
        img = img.convert("RGB")
        if img.width > JPEG_MAX_WIDTH:
            img = img.resize((JPEG_MAX_WIDTH, round(img.height * JPEG_MAX_WIDTH / img.width)), Image.LANCZOS)
        # Lower the quality first, then the width, until the copy fits (a 200 px wide copy is kept as it is).
        while True:
            for quality in (88, 80, 70, 60, 50):
                img.save(dst, "JPEG", quality=quality, optimize=True)
                if dst.stat().st_size <= JPEG_MAX_BYTES:
                    return dst
            if img.width <= 200:
                return dst
            img = img.resize((img.width * 4 // 5, img.height * 4 // 5), Image.LANCZOS)


def build(fig: FigureConfig, ctx: Context) -> FigureResult:
    from experiments.benchmark import machine
    from nst.errors import UserError

    if not fig.variants or not fig.columns:
        raise UserError(f"{fig.path}: a style_forms figure needs 'variants' (pairs) and 'columns' (forms)")
    start = time.time()
    load_before = os.getloadavg()
    cfgs, labels, cells = [], [], []
    for v in fig.variants:
        for c in fig.columns:
            cfgs.append(ctx.nst_config(fig, v, c.set))
            labels.append(f"{fig.name}: {v.label} / {c.label}")
            cells.append((v, c))
    folders = ctx.run_many(cfgs, labels)
    grid, rows, scores, runs = [], [], [], []
    for v in fig.variants:
        panels = input_panels(ctx.nst_config(fig, v), ("content", "style"))
        results = {}
        for (cv, c), run in zip(cells, folders):
            if cv is not v:
                continue
            info = run_json(run)
            per_eval = info["evaluation_seconds"] / max(1, info["evaluations"])
            row = run_row(c.label, run, pair=v.label, evaluations=info["evaluations"], s_per_eval=per_eval)
            rows.append(row)
            runs.append(str(run))
            results[c.label] = run
            panels.append(Panel(Path(row["image"]), f"{c.label}\n{per_eval:.2g} s/eval"))
        grid.append(panels)
        scores += score_results(ctx, fig, v, results)
    load_after = os.getloadavg()
    note = (f"{machine()}; load {load_before[0]:.1f} -> {load_after[0]:.1f}; s/eval: seconds per loss+gradient "
            f"evaluation in that run")
    png = image_grid(grid, ctx.out / f"{fig.name}.png", fig.title, row_labels=[v.label for v in fig.variants],
                     footer=footer_text(ctx, Path(runs[0]), note))
    jpeg = write_jpeg(png, ctx.out / f"{fig.name}.jpg")
    score_csv = write_csv(scores, ctx.out / f"{fig.name}_scores.csv")
    table = ctx.out / f"{fig.name}_scores.md"
    table.write_text(score_table(scores, [c.label for c in fig.columns]), encoding="utf-8")
    extra = {"docs_copy": str(jpeg), "scores_csv": str(score_csv), "scores_md": str(table),
             "machine": machine(), "load": [round(load_before[0], 2), round(load_after[0], 2)]}
    return FigureResult(fig.name, png, write_csv(rows, ctx.out / f"{fig.name}.csv"), runs, time.time() - start, extra)


if __name__ == "__main__":
    from experiments.common import figure_main

    figure_main(build, "fig_style_forms.yaml", __doc__.splitlines()[0])
