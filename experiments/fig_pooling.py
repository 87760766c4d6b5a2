"""Ablation: average vs max pooling in the VGG, side by side (Gatys et al. 2015, section 2).

    python -m experiments.fig_pooling [--quick] [--config configs/fig_pooling.yaml]

The paper replaces VGG's max pooling by average pooling because it "improves the gradient flow and
one obtains slightly more appealing results". Two runs that differ only in ``model.pooling`` (the
avg one is Fig 3.1's run). The losses are computed by different networks, so compare the images,
not the numbers. Writes <name>.png and <name>.csv.
"""

from __future__ import annotations

from experiments.common import Context, FigureConfig, FigureResult, variants_figure


def build(fig: FigureConfig, ctx: Context) -> FigureResult:
    return variants_figure(fig, ctx, ("content", "style"), note="losses of different networks: compare images")


if __name__ == "__main__":
    from experiments.common import figure_main

    figure_main(build, "fig_pooling.yaml", __doc__.splitlines()[0])
