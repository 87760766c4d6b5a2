"""docs/controls.jpg: Gatys et al. 2017's spatial and scale control, from two finished runs.

``python -m experiments.controls_figure --spatial runs/spatial_control --scale runs/scale_control
--out docs/controls.jpg`` (after ``python -m nst.run configs/spatial_control.yaml`` and
``configs/scale_control.yaml``). Panels: the content with the spatial mask's border drawn in, the spatial
result, the scale-control result, and small copies of the paintings each used. It reads each run's
``run.json`` for its inputs, so it draws what the runs did. No optimisation here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from nst.config import MaskSpec
from nst.region_masks import split_mask

PANEL = 256  # long side of each panel, px
THUMB = 72  # long side of a painting's thumbnail, px


def _fit(img: Image.Image, long_side: int) -> Image.Image:
    w, h = img.size
    f = long_side / max(w, h)
    return img.convert("RGB").resize((max(1, round(w * f)), max(1, round(h * f))), Image.LANCZOS)


def _config(run: Path) -> dict:
    return json.loads((run / "run.json").read_text(encoding="utf-8"))["config"]


def _with_thumbs(panel: Image.Image, paths: list[str]) -> Image.Image:
    """The panel with thumbnails of ``paths`` in a row below it."""
    thumbs = [_fit(Image.open(p), THUMB) for p in paths]
    out = Image.new("RGB", (panel.width, panel.height + THUMB + 4), "white")
    out.paste(panel, (0, 0))
    x = 0
    for t in thumbs:
        out.paste(t, (x, panel.height + 4))
        x += t.width + 4
    return out


def _mask_overlay(content: Image.Image, spec: dict) -> Image.Image:
    """The content with the masked region tinted and its border line drawn."""
    m = split_mask(MaskSpec(**spec), (content.height, content.width))
    rgb = np.asarray(content, np.float32)
    tinted = rgb * (0.55 + 0.45 * m[..., None]) + np.array([40, 40, 0]) * m[..., None]
    img = Image.fromarray(np.clip(tinted, 0, 255).astype(np.uint8))
    row = int(round(spec["at"] * content.height))
    ImageDraw.Draw(img).line([(0, row), (content.width, row)], fill=(255, 255, 0), width=1)
    return img


def figure(spatial: Path, scale: Path) -> Image.Image:
    sc, kc = _config(spatial), _config(scale)
    result_s = Image.open(spatial / "result.png").convert("RGB")
    content = _fit(Image.open(sc["content"]), max(result_s.size)).resize(result_s.size)
    mask_spec = next(e["mask"] for e in sc["style"] if e.get("mask"))
    panels = [
        _with_thumbs(_fit(_mask_overlay(content, mask_spec), PANEL), []),
        _with_thumbs(_fit(result_s, PANEL), [e["path"] for e in sc["style"]]),
        _with_thumbs(_fit(Image.open(scale / "result.png"), PANEL),
                     [*(e["path"] for s in kc["scales"] for e in s["style"]), *(e["path"] for e in kc["style"])]),
    ]
    out = Image.new("RGB", (sum(p.width for p in panels) + 8 * (len(panels) - 1), max(p.height for p in panels)),
                    "white")
    x = 0
    for p in panels:
        out.paste(p, (x, 0))
        x += p.width + 8
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.controls_figure", description=__doc__.split("\n")[0])
    p.add_argument("--spatial", type=Path, required=True, help="a finished run of configs/spatial_control.yaml")
    p.add_argument("--scale", type=Path, required=True, help="a finished run of configs/scale_control.yaml")
    p.add_argument("--out", type=Path, default=Path("docs/controls.jpg"))
    args = p.parse_args(argv)
    figure(args.spatial, args.scale).save(args.out, quality=88)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
