"""The studio's "make map" (issue 13): an automatic semantic map of an image, written as a new ``_sem.png``.

The request names an image the studio knows (a sample or an upload; confined like every path), optionally
the number of regions and the seed. For the content side it also names the style image and, when it has
one, the style map: the content photo's map is then painted in the style map's colours, its regions paired
with the style's by VGG feature similarity (:func:`doodle.automatch.auto_pair`, what
``doodle.content_map: auto`` does in a run); a style image without a map gets its automatic map too.
Every map is a fresh file in ``uploads/`` (:meth:`Folders.create`), never one the studio did not make, so
the user can retouch it and keep the original. The work (VGG16, k-means, refinement) takes seconds: the
route runs it in a worker thread, one map at a time.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np

from nst.errors import UserError
from nst.images import read_image
from studio.files import MAX_UPLOAD_PIXELS, Folders

FIELDS = ("image", "labels", "seed", "style", "style_map")
MAX_SEED = 2**32 - 1
_ONE_AT_A_TIME = threading.Lock()  # two maps at once would only share the same cores and double the memory


@dataclass(frozen=True)
class MapRequest:
    image: Path
    labels: int | None  # None: chosen by the silhouette (doodle.automap)
    seed: int
    style: Path | None = None  # set: ``image`` is the content photo, matched to this style
    style_map: Path | None = None  # the style's map (hand-painted or made before); None: made too


def _whole(value, name: str, low: int, high: int) -> int:
    """An int from JSON (a number or a numeric string, as the page's text inputs send it) in [low, high]."""
    whole = not isinstance(value, bool) and (isinstance(value, int) or re.fullmatch(r"\s*-?\d+\s*", str(value)))
    if not whole or not low <= int(value) <= high:
        raise UserError(f"{name} must be a whole number between {low} and {high}, got {value!r}")
    return int(value)


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def parse_request(data: dict, folders: Folders) -> MapRequest:
    """The checked request: known fields only, paths confined, labels and seed in range."""
    from doodle.automap import MAX_LABELS

    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise UserError(f"unknown automap field(s) {', '.join(unknown)}; use {', '.join(FIELDS)}")
    labels, seed = (None if _blank(data.get(k)) else data[k] for k in ("labels", "seed"))
    labels = None if labels is None else _whole(labels, "labels", 2, MAX_LABELS)  # None: the silhouette's choice
    seed = 0 if seed is None else _whole(seed, "seed", 0, MAX_SEED)
    style = folders.confine(data["style"], "style image") if data.get("style") else None
    style_map = folders.confine(data["style_map"], "style map") if data.get("style_map") else None
    if style_map is not None and style is None:
        raise UserError("style_map needs its style image: give style too")
    return MapRequest(folders.confine(data.get("image") or "", "image"), labels, seed, style, style_map)


def describe_map(rgb: np.ndarray, path: Path) -> dict:
    """A map's labels as the page shows them: colours (largest share first), shares, size; UserError if unusable."""
    from doodle.maps import find_labels, to_hex

    labels, warnings = find_labels({"map": rgb}, source="map", paths={"map": path})
    return {"map": str(path), "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
            "palette": [to_hex(c) for c in labels.palette],
            "shares": [round(float(s), 4) for s in labels.shares["map"]], "warnings": warnings}


def _read(path: Path, what: str, labels: int | None = None) -> np.ndarray:
    """An input image as float 0..255, checked as segmentable (into ``labels`` regions) before the network loads."""
    from doodle.automap import AutoMapOptions, check_image

    image = read_image(path, what, MAX_UPLOAD_PIXELS).astype(np.float32)
    check_image(image, labels, AutoMapOptions(), f"{what} {path.name}")
    return image


def make_map(req: MapRequest, folders: Folders) -> dict:
    """Segment (and match), check the maps, write them as new files; the response for the page."""
    from doodle.automap import auto_map
    from doodle.automatch import auto_pair
    from doodle.maps import load_map, match_map_to_image

    image = _read(req.image, "content image" if req.style else "image", req.labels)
    style = _read(req.style, "style image") if req.style else None
    hand = None
    if req.style_map is not None:
        hand, _ = match_map_to_image(load_map(req.style_map), style.shape[:2], f"style map {req.style_map.name}")
    with _ONE_AT_A_TIME:
        if style is None:
            rgb, info = auto_map(image, req.labels, req.seed)
            made, notes = {req.image: rgb}, [f"{req.image.name}: {info.describe()}"]
        else:
            # the style side is the reference: labels only count for a style map made here
            style_rgb, rgb, notes = auto_pair(style, hand, image, None, req.labels, req.seed)
            made = {req.image: rgb, **({req.style: style_rgb} if hand is None else {})}
    summaries = {src: describe_map(m, src) for src, m in made.items()}  # refuse a useless map before writing
    written = {src: _write(m, src, folders) for src, m in made.items()}
    out = _entry(written[req.image], summaries[req.image])
    out["notes"] = notes
    if req.style in written:
        out["style_map"] = _entry(written[req.style], summaries[req.style])
    return out


def _write(rgb: np.ndarray, source: Path, folders: Folders) -> Path:
    from nst.images import save_png

    meta = {"nst:automap": f"studio make map of {source.name}"}
    return folders.create(source.stem, "_sem.png", lambda path: save_png(rgb, path, meta))


def _entry(path: Path, summary: dict) -> dict:
    return {**summary, "path": str(path), "map": str(path), "url": "/api/file?path=" + quote(str(path))}
