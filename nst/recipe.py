"""Style transfer's recipe: what a run optimises, resolved once from its config for one network.

The objective builders (:mod:`nst.transfer`), the scorer, the video and the tiles read these plain values
instead of the config: layer names are canonical (``block4_conv2``; the config may say ``conv4_2``), every
weight and form is a value. Built by :meth:`TransferRecipe.of` right after the network is known; an
unknown layer name is a :class:`nst.errors.UserError` there, before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from nst.features import canonical_layer


def canonical_weights(named: dict[str, float], network: str) -> dict[str, float]:
    """{paper or Keras layer name: weight} -> {canonical name: weight}, in the given order."""
    return {canonical_layer(k, network): v for k, v in named.items()}


@dataclass(frozen=True)
class TransferRecipe:
    network: str
    pooling: str  # avg (the paper's advice) | max
    content_layers: dict[str, float]  # canonical layer -> weight (eq. 2.7's sum over content layers)
    style_layers: dict[str, float]  # canonical layer -> w_l (eq. 2.5)
    content_weight: float  # alpha
    style_weight: float  # beta
    tv_weight: float
    content_form: str  # paper | original
    style_form: str = "gram"  # the style statistic (nst.style_forms)
    projections: int | None = None  # sliced_wasserstein: directions per layer (None: the layer's channels)
    histogram_weight: float = 1.0  # histogram: the histogram term's weight relative to the Gram term's
    patch_size: int = 3  # mrf
    patch_stride: int = 2  # mrf: every n-th style patch each way is a candidate
    seed: int = 0  # sliced_wasserstein: the directions' seed (the run's)

    @classmethod
    def of(cls, cfg, network: str) -> TransferRecipe:
        """The recipe of an nst config (or any config with its layers and loss sections) on ``network``."""
        loss = cfg.loss
        return cls(network, cfg.model.pooling, canonical_weights(cfg.layers.content, network),
                   canonical_weights(cfg.layers.style, network), loss.content_weight, loss.style_weight,
                   loss.tv_weight, loss.content_form, loss.style_form, loss.projections,
                   loss.histogram_weight, loss.patch_size, loss.patch_stride, cfg.seed)

    @property
    def layers(self) -> list[str]:
        """Every layer the objective reads (content first), for the feature extractor."""
        return [*self.content_layers, *self.style_layers]
