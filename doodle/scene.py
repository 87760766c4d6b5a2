"""What a doodle paints from, in memory: the style painting, its label masks, the output's layout, a photo.

Images are float32 RGB 0..255; masks are float32 (H, W, K) summing to 1 over the K labels at each pixel.
:meth:`Scene.scaled` gives the same scene at another output size (coarse-to-fine phases).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nst.images import resize
from nst.masks import resize_masks


@dataclass(frozen=True)
class Scene:
    """What a doodle paints from, all in memory: images float32 RGB 0..255, masks float32 summing to 1."""

    style: np.ndarray  # (Hs, Ws, 3) the style painting at its working size
    style_masks: np.ndarray  # (Hs, Ws, K) its label masks; K = 1 (all ones) without maps
    target_masks: np.ndarray  # (H, W, K) the output's layout: the doodle, or the content photo's map
    content: np.ndarray | None = None  # (H, W, 3) optional photo to repaint

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.target_masks.shape[:2])

    @classmethod
    def without_maps(cls, style: np.ndarray, size_hw: tuple[int, int], content: np.ndarray | None = None) -> Scene:
        """Texture synthesis (no content) or plain style transfer: one label covering both images."""
        return cls(style, np.ones((*style.shape[:2], 1), np.float32), np.ones((*size_hw, 1), np.float32), content)

    def scaled(self, hw: tuple[int, int]) -> Scene:
        """The scene for an output of ``hw`` = (h, w): style and masks scaled by the same factor."""
        if hw == self.size:
            return self
        f = max(hw) / max(self.size)
        shw = (max(1, round(self.style.shape[0] * f)), max(1, round(self.style.shape[1] * f)))
        style = resize(self.style, (shw[1], shw[0]), "style image (coarse phase)")
        content = None if self.content is None else resize(self.content, (hw[1], hw[0]), "content (coarse phase)")
        return Scene(style, resize_masks(self.style_masks, shw), resize_masks(self.target_masks, hw), content)
