"""``python -m doodle.segment IMAGE [--labels K] [--output MAP.png] [--with OTHER] [--seed N]``: automatic maps.

Writes a semantic map of IMAGE (flat colours, one per region, ready to retouch in any paint program and
to use as a ``_sem.png``) made by :mod:`doodle.automap`. With ``--with OTHER`` the other image is
segmented into as many regions and its regions are paired with IMAGE's by VGG feature similarity
(:mod:`doodle.automatch`), so the same colour means the same kind of region in both maps; give the
style painting first. The palette and the matching are printed, and ``--preview`` draws both maps with
the palette (as a doodle run's ``labels.png``). Every file it writes (``--output``, ``--with-output``,
``--preview``) is checked before any work: a .png in an existing folder, never an existing file without
``--force``, never one of the input images even with it, never two outputs of one name.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from nst.cli import run_main, say
from nst.errors import UserError
from nst.images import read_image, save_png

MAX_SEED = 2**32 - 1  # what scikit-learn's random_state takes


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m doodle.segment",
                                 description="Make a semantic map (flat colours per region) of an image, "
                                             "without hand painting.")
    ap.add_argument("image", help="the photo or painting to segment")
    ap.add_argument("--labels", type=int, default=None, metavar="K",
                    help="number of regions (default: chosen automatically by a silhouette criterion)")
    ap.add_argument("--output", type=Path, default=None, metavar="MAP.png",
                    help="where to write the map (default: ./<image>_sem.png)")
    ap.add_argument("--with", dest="other", default=None, metavar="OTHER_IMAGE",
                    help="also segment this image, its regions matched to IMAGE's colours")
    ap.add_argument("--with-output", type=Path, default=None, metavar="MAP.png",
                    help="where to write OTHER's map (default: ./<other>_sem.png)")
    ap.add_argument("--preview", type=Path, default=None, metavar="LABELS.png",
                    help="also draw the map(s) with the palette and shares, as a doodle run's labels.png")
    ap.add_argument("--seed", type=int, default=0, help="seeds the clustering (same seed, same map)")
    ap.add_argument("--force", action="store_true", help="overwrite existing map files")
    return ap.parse_args(argv)


def _target(given: Path | None, image: str, force: bool, inputs: list[str] = (), flag: str = "--output",
            what: str = "output map") -> Path:
    """An output path, checked before any work: a .png in an existing folder, not one of the ``inputs`` (even
    with --force), not an existing file unless --force."""
    path = given if given is not None else Path.cwd() / f"{Path(image).stem}_sem.png"
    if path.suffix.lower() != ".png":
        raise UserError(f"{what} {path} must be a .png file (flat colours must not be JPEG-compressed)")
    if not path.parent.is_dir():
        raise UserError(f"output folder {path.parent} does not exist")
    for source in inputs:
        if source and Path(source).exists() and Path(source).resolve() == path.resolve():
            raise UserError(f"{flag} {path} is the input image {source}: it would be replaced, even with --force; "
                            f"choose another {flag}")
    if path.exists() and not force:
        raise UserError(f"{path} exists; refusing to overwrite it (a hand-retouched map?): pass --force or "
                        f"choose another {flag}")
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder")
    return path


def _save(map_rgb: np.ndarray, path: Path, source: str) -> None:
    try:
        save_png(map_rgb, path, {"nst:automap": f"python -m doodle.segment of {Path(source).name}"})
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    say(f"wrote {path}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.labels is not None and args.labels < 2:
        raise UserError(f"--labels must be at least 2, got {args.labels}")
    if not 0 <= args.seed <= MAX_SEED:
        raise UserError(f"--seed must be in 0..{MAX_SEED} (a 32-bit seed), got {args.seed}")
    inputs = [args.image, args.other]
    out = _target(args.output, args.image, args.force, inputs)
    other_out = (_target(args.with_output, args.other, args.force, inputs, "--with-output") if args.other
                 else None)
    if other_out is not None and other_out.resolve() == out.resolve():
        raise UserError(f"both maps would be written to {out}; give --output or --with-output")
    if args.preview is not None:
        preview = _target(args.preview, args.image, args.force, inputs, "--preview", "preview")
        if preview.resolve() in {p.resolve() for p in (out, other_out) if p is not None}:
            raise UserError(f"--preview {preview} is also a map's output; give it its own name")
    image = read_image(args.image, "image").astype(np.float32)
    other = read_image(args.other, "--with image").astype(np.float32) if args.other else None

    from doodle.automap import AutoMapOptions, check_image, segment_labels
    from doodle.automatch import auto_pair

    check_image(image, args.labels, AutoMapOptions(), Path(args.image).name)  # before the network loads
    if other is None:
        labels, info = segment_labels(image, args.labels, args.seed)
        say(f"{Path(args.image).name}: {info.describe()}")
        maps = {Path(args.image).stem: info.palette[labels]}
    else:
        check_image(other, None, AutoMapOptions(), Path(args.other).name)
        first, second, notes = auto_pair(image, None, other, None, args.labels, args.seed)
        for note in notes:
            say(note)
        maps = {Path(args.image).stem: first, Path(args.other).stem: second}
    _save(maps[Path(args.image).stem], out, args.image)
    if other is not None:
        _save(maps[Path(args.other).stem], other_out, args.other)
    if args.preview:
        from doodle.maps import find_labels, render_labels_png

        label_set, _ = find_labels(maps, source=Path(args.image).stem)
        render_labels_png(label_set, list(maps), args.preview)
        say(f"wrote {args.preview}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
