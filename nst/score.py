"""``python -m nst.score IMAGE [IMAGE ...] --config CONFIG [--reference RUN_DIR] [--json]``: grade an image.

Computes the content, style, tv and total loss of any image (a student's result, another tool's
output) under a config's network, layers and weights, with the very objective the optimiser
minimises (:func:`nst.transfer.make_objective`, evaluated through its compiled step),
so the score of a run's snapshot equals that run's ``losses.csv`` row up to 8-bit PNG rounding.
The image is resized to the config's output size (the content image at ``image.size``). Lower is
better. The values are printed beside the reference run's: the config's ``output_dir`` (or
``--reference RUN_DIR``), read from its ``run.json`` / ``losses.csv``. See docs/GRADING.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nst.cli import quiet_tensorflow_import, run_main, say
from nst.config import NSTConfig, load_config, to_dict
from nst.errors import UserError
from nst.events import AGGREGATES, aggregate
from nst.plot import config_differences, read_losses, read_run_config

TERMS = ("content", "style", "tv", "total")
# The config keys that define the objective; a reference that differs in one of them is not comparable.
OBJECTIVE_KEYS = ("content", "style", "precision", "image.size", "image.style_scale", "model.", "layers.", "loss.",
                  "color.")


@dataclass(frozen=True)
class Reference:
    run_dir: str
    iteration: int
    losses: dict[str, float]
    status: str  # run.json's status (finished | interrupted | failed), or "unknown" without run.json
    differences: list[str]  # config keys where the reference ran with other settings


class Scorer:
    """The config's objective, built once; call it on (H, W, 3) 0..255 images of the output size."""

    def __init__(self, cfg: NSTConfig, content: np.ndarray, styles: list[tuple[np.ndarray, float]],
                 extractor):
        from nst.recipe import TransferRecipe
        from nst.transfer import compute_targets, make_objective, prepare_styles

        self.cfg, self.size = cfg, (content.shape[1], content.shape[0])  # (width, height)
        recipe = TransferRecipe.of(cfg, extractor.network)
        targets = compute_targets(extractor, content, prepare_styles(cfg, content, styles), recipe)
        self._objective = make_objective(extractor, targets, recipe)
        self._step = self._objective.step()  # the optimiser's own compiled function

    def __call__(self, image: np.ndarray) -> dict[str, float]:
        import tensorflow as tf

        if (image.shape[1], image.shape[0]) != self.size:
            raise ValueError(f"image is {image.shape[1]}x{image.shape[0]}, the objective wants "
                             f"{self.size[0]}x{self.size[1]}")
        self._objective.fit(np.asarray(image, np.float32))  # mrf: its nearest patches are this image's
        terms, _ = self._step(tf.constant(np.asarray(image, np.float32)[None]))
        values = {k: float(v) for k, v in terms.items()}
        return {**{k: aggregate(values, k) for k in AGGREGATES}, **values}  # fixed terms first, then any others


def find_reference(run_dir: Path, cfg: NSTConfig) -> Reference | None:
    """The final losses of the run in ``run_dir`` (run.json, else the last losses.csv row), or None.

    A run.json or losses.csv that is there but unusable is a UserError naming it, not "missing".
    """
    info, path = None, run_dir / "run.json"
    if path.is_file():
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"reference {path} is not readable JSON ({type(exc).__name__})") from None
        if not isinstance(info, dict):
            raise UserError(f"reference {path} holds a {type(info).__name__}, not a run record")
    losses, iteration = None, 0
    if info and info.get("final_losses") is not None:
        losses, iteration = info["final_losses"], info.get("iterations_done", 0)
        bad = [k for k in TERMS if not isinstance(losses, dict) or not _is_number(losses.get(k))]
        if bad or not _is_number(iteration):
            raise UserError(f"reference {path}: final_losses lacks a number for {', '.join(bad) or 'iterations_done'}")
        iteration = int(iteration)
    elif (run_dir / "losses.csv").is_file():
        cols = read_losses(run_dir)  # its errors name the file and the problem
        losses = {k: float(cols[k][-1]) for k in TERMS}
        iteration = int(cols["iteration"][-1])
    if losses is None:
        return None
    recorded = read_run_config(run_dir)
    if recorded:
        diffs = [d for d in config_differences([recorded, to_dict(cfg)])
                 if d.startswith(OBJECTIVE_KEYS) and d != "model.download"]
    else:
        diffs = ["(no run.json: settings unknown)"]
    return Reference(str(run_dir), iteration, {k: float(losses[k]) for k in TERMS},
                     str(info.get("status", "unknown")) if info else "unknown", diffs)


def _is_number(value) -> bool:
    if isinstance(value, str):  # a failed run records a non-finite loss as "inf" / "nan"
        try:
            float(value)
        except ValueError:
            return False
        return True
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_scored_image(path: str, size: tuple[int, int], limit: int) -> tuple[np.ndarray, str | None]:
    """Read an image and resize it to the output ``size`` (width, height); say if it was resized."""
    from nst.images import read_image, resize

    raw = read_image(path, "image to score", limit)
    if (raw.shape[1], raw.shape[0]) == tuple(size):
        return raw.astype(np.float32), None
    return resize(raw, size, f"image to score {Path(path).name}"), f"{raw.shape[1]}x{raw.shape[0]}"


def score_images(paths: list[str], cfg: NSTConfig) -> tuple[list[dict], dict]:
    """Load inputs and weights as nst.run does, then score every image. Returns (scores, setup info)."""
    from nst.inputs import load_inputs
    from nst.weights import load_weights

    content, styles, _ = load_inputs(cfg)
    size = (content.shape[1], content.shape[0])
    images = [(p, *load_scored_image(p, size, cfg.image.max_input_pixels)) for p in paths]  # fail before TF work
    with quiet_tensorflow_import():
        from nst.recipe import TransferRecipe
        from nst.transfer import make_extractors  # imports TensorFlow

    weights, info = load_weights(cfg.model.network, cfg.model.weights, cfg.model.download)
    recipe = TransferRecipe.of(cfg, info.network)  # unknown layers fail here
    if info.notice:
        say(f"notice: {info.notice}")
    scorer = Scorer(cfg, content, styles, make_extractors(recipe, weights)("float32"))
    scores = [{"image": str(p), "resized_from": was, "losses": scorer(img)} for p, img, was in images]
    setup = {"network": info.network, "weights_sha256": info.sha256, "size": list(size),
             "pooling": cfg.model.pooling}
    if cfg.color.preserve == "luminance":
        setup["note"] = ("color.preserve=luminance recolours the result after optimising, so a result.png scores "
                         "higher than the run's last losses.csv row; compare like with like")
    return scores, setup


def format_table(scores: list[dict], ref: Reference | None) -> str:
    names = [Path(s["image"]).name[:22] for s in scores]
    heads = [*names, *([f"reference @{ref.iteration}"] if ref else [])]
    width = max(14, *(len(h) + 2 for h in heads))
    lines = [f"{'':<9}" + "".join(f"{h:>{width}}" for h in heads)]
    for term in dict.fromkeys([*TERMS, *(k for s in scores for k in s["losses"])]):  # open term set, fixed first
        vals = [s["losses"].get(term, float("nan")) for s in scores] + ([ref.losses.get(term, float("nan"))]
                                                                         if ref else [])
        lines.append(f"{term:<9}" + "".join(f"{v:>{width}.5g}" for v in vals))
    if ref:
        ratios = [s["losses"]["total"] / ref.losses["total"] if ref.losses["total"] else float("nan")
                  for s in scores]
        lines.append(f"{'/ ref':<9}" + "".join(f"{r:>{width}.3f}" for r in ratios))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m nst.score",
        description="Content, style, tv and total loss of images under a config's objective (lower is better), "
                    "next to the config's reference run.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image(s) to score; resized to the config's output size")
    p.add_argument("--config", required=True, help="the YAML config whose network, layers and weights define the loss")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--reference", metavar="RUN_DIR", help="reference run folder (default: the config's output_dir)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of a table")
    args = p.parse_args(argv)

    cfg = load_config(args.config, args.set)
    problem = ""
    if args.reference:
        ref_dir = Path(args.reference)
        if not ref_dir.is_dir():
            raise UserError(f"reference run folder not found: {ref_dir}")
        ref = find_reference(ref_dir, cfg)
        if ref is None:
            raise UserError(f"reference run folder {ref_dir} holds neither run.json with final losses nor losses.csv")
    else:
        ref_dir, ref, problem = Path(cfg.output_dir), None, ""
        try:
            ref = find_reference(ref_dir, cfg) if ref_dir.is_dir() else None
        except UserError as exc:  # not asked for by name: say why it is unusable, and score anyway
            problem = str(exc)

    scores, setup = score_images(args.images, cfg)
    ref_text = (f"reference run: {ref.run_dir} ({ref.status}, iteration {ref.iteration})" if ref else
                f"reference run: none found ({problem or f'no run.json or losses.csv in {ref_dir}'}); make one "
                f"with `python -m nst.run {args.config}` or pass --reference RUN_DIR")
    if args.json:
        out = {"config": str(args.config), "overrides": args.set, **setup, "images": scores,
               "reference": ({"run_dir": ref.run_dir, "iteration": ref.iteration, "status": ref.status,
                              "losses": ref.losses, "config_differences": ref.differences} if ref else None)}
        if ref is None:
            out["reference_note"] = ref_text
        json.dump(out, sys.stdout, indent=2)
        print()
        return 0
    sets = f" (--set {' '.join(args.set)})" if args.set else ""
    print(f"scored under {args.config}{sets}: {setup['network']}, {setup['size'][0]}x{setup['size'][1]} px, "
          f"{setup['pooling']} pooling; weighted loss terms, lower is better")
    for s in scores:
        if s["resized_from"]:
            print(f"note: {Path(s['image']).name} was resized from {s['resized_from']} to "
                  f"{setup['size'][0]}x{setup['size'][1]}")
    print(ref_text)
    if ref and ref.status != "finished":
        print(f"warning: the reference run is not finished (status {ref.status}); its values are those of its "
              f"last logged iteration")
    if ref and ref.differences:
        print("warning: the reference ran with other settings (" + ", ".join(ref.differences[:6]) +
              "); its values are not comparable")
    if "note" in setup:
        print(f"note: {setup['note']}")
    print(format_table(scores, ref))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
