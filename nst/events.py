"""The progress event: what the optimiser reports after each iteration.

The CLI's progress line, ``losses.csv``, snapshots, notebooks' live plots and figure scripts all
read this one small dataclass (the pattern of crowsonkb/style-transfer-pytorch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

CSV_HEADER = ("iteration", "content", "style", "tv", "total", "seconds")


@dataclass(frozen=True)
class Progress:
    iteration: int  # 1-based, counted over the whole run
    content: float  # weighted terms: content + style + tv = total
    style: float
    tv: float
    total: float
    seconds: float  # wall time since the optimiser started
    image: np.ndarray  # (H, W, 3) float32 RGB 0..255, the current image (do not modify)

    def csv_row(self) -> str:
        return (f"{self.iteration},{self.content:.6g},{self.style:.6g},{self.tv:.6g},{self.total:.6g},"
                f"{self.seconds:.3f}")


Callback = Callable[[Progress], None]
