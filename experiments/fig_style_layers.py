"""Ablation: style reconstructions from conv1_1, up to conv2_1, ..., up to conv5_1 (Gatys et al. 2015, Fig 1).

    python -m experiments.fig_style_layers [--quick] [--config configs/fig_style_layers.yaml]

White noise is optimised to match only the style image's Gram matrices (content_weight 0, no
content layer) on a growing set of layers: the deeper the set, the larger the structures of the
painting that come back. Writes <name>.png and <name>.csv (each run's final style loss).
"""

from __future__ import annotations

from experiments.common import Context, FigureConfig, FigureResult, variants_figure


def build(fig: FigureConfig, ctx: Context) -> FigureResult:
    return variants_figure(fig, ctx, ("style",), key="style", note="white-noise start, content weight 0")


if __name__ == "__main__":
    from experiments.common import figure_main

    figure_main(build, "fig_style_layers.yaml", __doc__.splitlines()[0])
