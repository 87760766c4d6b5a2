"""The README's hand-map vs automatic-map doodle figure, from two finished ``doodle.run`` folders.

    python experiments/automap_doodle_figure.py HAND_RUN AUTO_RUN docs/automap_doodle.jpg

Top row: style | content | result with the hand maps | result with automatic maps; bottom row: the style
and content maps of each run, cut from its ``labels.png`` (drawn by :func:`doodle.maps.render_labels_png`:
the maps side by side under a caption line, at their own size).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

TILE = 160
PAD = 4


def run_images(run: Path) -> tuple[Image.Image, list[Image.Image], dict]:
    """(result, [style map, content map] cut from labels.png, run.json) of a finished doodle run."""
    info = json.loads((run / "run.json").read_text())
    if info.get("status") != "finished":
        raise SystemExit(f"{run} is not a finished run (status {info.get('status')})")
    labels = np.asarray(Image.open(run / "labels.png").convert("RGB"))
    # the maps are the saturated blocks below the caption: split the columns at the white gap between them
    rows = np.flatnonzero((labels.std(axis=2) > 40).mean(axis=1) > 0.3)
    band = labels[rows.min(): rows.max() + 1]
    coloured = (band.std(axis=2) > 40).mean(axis=0) > 0.3
    edges = np.flatnonzero(np.diff(np.r_[0, coloured.astype(int), 0]))
    maps = [Image.fromarray(band[:, a:b]) for a, b in zip(edges[::2], edges[1::2]) if b - a > 20][:2]
    return Image.open(run / "result.png").convert("RGB"), maps, info


def main(hand: str, auto: str, out: str) -> None:
    hand_result, hand_maps, info = run_images(Path(hand))
    auto_result, auto_maps, _ = run_images(Path(auto))
    cfg = info["config"]
    top = [Image.open(cfg["style"]).convert("RGB"), Image.open(cfg["content"]).convert("RGB"), hand_result,
           auto_result]
    bottom = hand_maps + auto_maps
    canvas = Image.new("RGB", (4 * TILE + 5 * PAD, 2 * TILE + 3 * PAD), "white")
    for r, row in enumerate((top, bottom)):
        for c, im in enumerate(row):
            resample = Image.LANCZOS if r == 0 else Image.NEAREST
            canvas.paste(im.resize((TILE, TILE), resample), (PAD + c * (TILE + PAD), PAD + r * (TILE + PAD)))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, quality=85)
    print(f"wrote {out} ({Path(out).stat().st_size // 1024} KB)")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__.splitlines()[2].strip())
    main(*sys.argv[1:])
