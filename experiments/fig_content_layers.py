"""Ablation: content reconstructions from conv1_2, conv2_2, conv3_2, conv4_2, conv5_2 (Gatys et al. 2015, Fig 1).

    python -m experiments.fig_content_layers [--quick] [--config configs/fig_content_layers.yaml]

White noise is optimised to match only the photo's features at one layer (style_weight 0): the lower
layers give the photo back almost pixel for pixel, the higher ones keep the arrangement of objects
but lose the exact pixel values. Writes <name>.png and <name>.csv (each run's final content loss).
"""

from __future__ import annotations

from experiments.common import Context, FigureConfig, FigureResult, variants_figure


def build(fig: FigureConfig, ctx: Context) -> FigureResult:
    return variants_figure(fig, ctx, ("content",), key="content", note="white-noise start, style weight 0")


if __name__ == "__main__":
    from experiments.common import figure_main

    figure_main(build, "fig_content_layers.yaml", __doc__.splitlines()[0])
