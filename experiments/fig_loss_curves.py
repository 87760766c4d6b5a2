"""Fig 3.1: content, style and total loss against L-BFGS iteration, with the point where the curve flattens.

    python -m experiments.fig_loss_curves [--quick] [--config configs/fig_loss_curves.yaml]

One run of the figure's base config (the paper's Tuebingen + Starry Night, 1000 iterations; the
same run Fig 3.2 shows). The flattening point comes from the data by the rule of
:func:`nst.plot.flattening_point` with the figure config's ``flatten`` settings: the first iteration
after which the total loss never again improves by ``threshold`` (relative) over the next
``window x iterations`` iterations. The right panel draws that relative improvement, so the rule can
be checked by eye. Writes <name>.png, <name>.csv (the curves and the improvement) and
<name>_flattening.csv (the rule and its result).
"""

from __future__ import annotations

import time

import numpy as np

from experiments.common import Context, FigureConfig, FigureResult, footer_text, save_figure, write_csv
from nst.plot import flattening_point, read_losses

COLORS = {"content": "tab:blue", "style": "tab:orange", "total": "black"}


def relative_improvement(values: np.ndarray, window: int) -> np.ndarray:
    """r(j) = (L(j) - L(j + window)) / L(j); NaN where j + window is past the end."""
    r = np.full(len(values), np.nan)
    r[:-window] = (values[:-window] - values[window:]) / np.abs(values[:-window])
    return r


def build(fig: FigureConfig, ctx: Context) -> FigureResult:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    start = time.time()
    run = ctx.run(ctx.nst_config(fig), "loss curves")
    cols = read_losses(run)
    it = cols["iteration"]
    rule = fig.flatten
    window = max(1, round(rule.window * len(it)))
    flat = flattening_point(it, cols[rule.term], window, rule.threshold)
    rel = relative_improvement(cols[rule.term], window)

    figure, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.3), gridspec_kw={"width_ratios": [1.6, 1]})
    for term in ("content", "style", "total"):
        ax.plot(it, cols[term], label=f"{term} loss", color=COLORS[term], linewidth=1.6 if term == "total" else 1.2)
    ax.set_yscale("log")
    ax.set_xlabel("L-BFGS iteration")
    ax.set_ylabel("weighted loss (log scale)")
    ax.grid(True, which="both", alpha=0.25)
    ax2.plot(it, np.where(rel > 0, rel, np.nan), color="0.3", linewidth=1.2,
             label=f"relative {rule.term} improvement\nover the next {window} iterations")
    ax2.axhline(rule.threshold, color="tab:red", linestyle=":", linewidth=1,
                label=f"threshold {rule.threshold:g}")
    ax2.set_yscale("log")
    ax2.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax2.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax2.yaxis.set_minor_formatter(NullFormatter())
    ax2.set_xlabel("L-BFGS iteration")
    ax2.set_title("the flattening rule", fontsize=10)
    ax2.grid(True, which="both", alpha=0.25)
    for a in (ax, ax2):
        if flat is not None:
            a.axvline(flat, color="tab:red", linestyle="--", linewidth=1.2,
                      label=f"flattens at iteration {flat}" if a is ax else None)
    if flat is not None:
        y = cols[rule.term][int(np.searchsorted(it, flat))]
        ax.plot([flat], [y], "o", color="tab:red", markersize=5)
        ax.annotate(f"  iteration {flat}\n  ({flat / it[-1]:.0%} of the run)", (flat, y), fontsize=8.5,
                    color="tab:red", va="bottom")
    ax.legend(fontsize=8.5, loc="upper right")
    ax2.legend(fontsize=7.5, loc="upper right")
    ax.set_title(fig.title, fontsize=10.5)
    flat_text = f"flattens at iteration {flat}" if flat is not None else "does not flatten within the run"
    figure.text(0.5, 0.005, footer_text(ctx, run, f"{flat_text} (paper: ~200 of 1000)"), ha="center",
                va="bottom", fontsize=7, color="0.35")
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    png = save_figure(figure, ctx.out / f"{fig.name}.png")

    rows = [{"iteration": int(i), **{t: float(cols[t][k]) for t in ("content", "style", "tv", "total", "seconds")},
             f"rel_improvement_{window}": float(rel[k])} for k, i in enumerate(it)]
    csv = write_csv(rows, ctx.out / f"{fig.name}.csv")
    write_csv([{"term": rule.term, "window_fraction": rule.window, "window_iterations": window,
                "threshold": rule.threshold, "iterations": int(it[-1]),
                "flattening_iteration": flat if flat is not None else "",
                "loss_at_flattening": float(cols[rule.term][int(np.searchsorted(it, flat))]) if flat else "",
                "final_loss": float(cols[rule.term][-1]), "run_dir": str(run)}],
              ctx.out / f"{fig.name}_flattening.csv")
    return FigureResult(fig.name, png, csv, [str(run)], time.time() - start,
                        {"flattening_iteration": flat, "iterations": int(it[-1]), "window": window,
                         "threshold": rule.threshold})


if __name__ == "__main__":
    from experiments.common import figure_main

    figure_main(build, "fig_loss_curves.yaml", __doc__.splitlines()[0])
