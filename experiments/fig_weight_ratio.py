"""Ablation: the content/style weight ratio alpha/beta (Gatys et al. 2015, Fig 3's columns).

    python -m experiments.fig_weight_ratio [--quick] [--config configs/fig_weight_ratio.yaml]

One run per ratio (1e-2 .. 1e-5; 1e-3 is Fig 3.1's run): a large ratio keeps the photo, a small one
gives mostly texture. Writes <name>.png and <name>.csv (each run's final weighted losses).
"""

from __future__ import annotations

from experiments.common import Context, FigureConfig, FigureResult, variants_figure


def build(fig: FigureConfig, ctx: Context) -> FigureResult:
    return variants_figure(fig, ctx, ("content", "style"), note="the content term grows with the pixel count, the style term does not")


if __name__ == "__main__":
    from experiments.common import figure_main

    figure_main(build, "fig_weight_ratio.yaml", __doc__.splitlines()[0])
