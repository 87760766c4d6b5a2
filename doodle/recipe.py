"""The doodle's recipe: what a doodle run optimises, resolved once from its config for one network.

The objective builders (:mod:`doodle.engine`), the tiles (:mod:`doodle.tiles`) and the per-region yardstick
read these plain values instead of the config: canonical layer names with their weights, each loss weight
and form. :meth:`DoodleRecipe.of` raises a UserError for an unknown layer name, before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from doodle.losses import total_variation_original
from nst.features import pools_before
from nst.images import MIN_SIDE
from nst.losses import total_variation
from nst.recipe import canonical_weights

TV_FORMS = {"squared": total_variation, "original": total_variation_original}


@dataclass(frozen=True)
class DoodleRecipe:
    network: str
    pooling: str
    method: str  # gram | patch
    style_layers: dict[str, float]  # the method's style layers (patch: the MRF layers) -> weight
    gram_layers: dict[str, float]  # patch: the regional Grams beside the MRF (colour anchor); {} for gram
    region_layers: dict[str, float]  # layers.style: the per-region yardstick's layers, whatever the method
    content_layers: dict[str, float]  # {} without a content photo or with content_weight 0
    content_weight: float
    style_weight: float
    tv_weight: float
    content_form: str
    tv_form: str  # squared | original
    gram_form: str  # area | original
    mask_smoothing: bool
    patch_size: int
    patch_stride: int
    semantic_weight: float

    @classmethod
    def of(cls, cfg, network: str, has_content: bool) -> DoodleRecipe:
        d, loss = cfg.doodle, cfg.loss
        patch = d.method == "patch"
        content = {} if not has_content or loss.content_weight == 0 else canonical_weights(cfg.layers.content, network)
        return cls(network, cfg.model.pooling, d.method,
                   canonical_weights(d.patch_layers if patch else cfg.layers.style, network),
                   canonical_weights(d.patch_gram_layers, network) if patch else {},
                   canonical_weights(cfg.layers.style, network), content, loss.content_weight, loss.style_weight,
                   loss.tv_weight, loss.content_form, d.tv_form, d.gram_form, d.mask_smoothing, d.patch_size,
                   d.patch_stride, d.semantic_weight)

    @property
    def tv(self):
        return TV_FORMS[self.tv_form]

    @property
    def layers(self) -> list[str]:
        """Every layer the run reads: the style side (the patch method's colour Grams included), then content."""
        return list(dict.fromkeys([*self.style_layers, *self.gram_layers, *self.content_layers]))

    @property
    def min_side(self) -> int:
        """The smallest image side a phase can have: 16 px, and patch_size positions at the deepest patch layer."""
        if self.method != "patch":
            return MIN_SIDE
        return max(MIN_SIDE, self.patch_size * 2 ** max(pools_before(n, self.network) for n in self.style_layers))
