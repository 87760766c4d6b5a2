"""A clip, frame after frame, on the engine (Ruder, Dosovitskiy & Brox 2016). No files are read or written.

What stays fixed over the clip is made once: the style Grams (from the styles as prepared for the first
frame), the numeric path (precision / XLA, probed once at the frames' size for the whole clip's work and
pinned with ``run_plan(choice=...)``), and one :class:`nst.objective.Objective` of named terms
``content, style, tv, temporal`` per path, whose compiled step is traced once: for each frame only the
content targets (:meth:`ContentTerm.set_target`) and the warped previous result with its consistency
weights (:meth:`TemporalTerm.set_target`) change.

Frame 1 runs ``optimizer.iterations`` from the config's init (through ``scales`` when set, via
:func:`nst.transfer.stylize`); every later frame runs ``video.iterations`` from the previous result warped
along the backward flow (``video.init: warped``) or from the config's init (``frame``, i.e. independent
per-frame stylisation when ``video.temporal_weight`` is 0).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nst.colors import luminance_transfer
from nst.engine import Extractors, Numerics, choose_path, run_plan
from nst.events import Control
from nst.features import FeatureExtractor
from nst.objective import Objective
from nst.style_forms import style_targets
from nst.terms import content_targets
from nst.plan import Scale
from nst.recipe import TransferRecipe
from nst.transfer import Targets, initial_image, make_objective, prepare_styles, stylize
from nst.video.config import VideoConfig
from nst.video.flow import frame_pair, warp
from nst.video.temporal import TemporalTerm


@dataclass
class Frame:
    image: np.ndarray  # (H, W, 3) float32, the stylised frame
    iterations: int
    stop: str
    info: dict = field(default_factory=dict)  # reliable share, flow seconds, precision: for run.json


class ClipStylizer:
    def __init__(self, cfg: VideoConfig, extractors: Extractors, styles: list[tuple[np.ndarray, float]],
                 first_frame: np.ndarray, frames: int, log=None, cache_dir: Path | None = None):
        self.cfg, self.extractors, self.log = cfg, extractors, log or (lambda _s: None)
        self.raw_styles, self.cache_dir = styles, cache_dir
        self.hw = tuple(first_frame.shape[:2])
        self.recipe = TransferRecipe.of(cfg, extractors.network)
        self.styles = prepare_styles(cfg, first_frame.astype(np.float32), styles)
        self._objectives: dict[str, Objective] = {}
        # one numeric path for the clip, probed at the frames' size with the whole clip's work
        work = [Scale(self.hw, cfg.optimizer.iterations + cfg.video.iterations * max(0, frames - 1))]
        x0 = initial_image(cfg, first_frame.astype(np.float32))
        self.choice = choose_path(work, _FrameTask(self, x0, None, None), extractors, x0,
                                  Numerics(cfg.precision, cfg.optimizer.xla, cache_dir), self.log)
        self.log(f"precision: {self.choice.name} ({self.choice.why}), for every frame")

    def objective(self, extractor: FeatureExtractor, frame: np.ndarray, warped, weights) -> Objective:
        """The clip's objective for ``extractor``'s path, given this frame's targets (step reused)."""
        key = extractor.precision
        content = content_targets(extractor, frame, list(self.recipe.content_layers))
        if key not in self._objectives:
            style = style_targets(extractor, self.styles, self.recipe)
            base = make_objective(extractor, Targets(content, style), self.recipe)
            v = self.cfg.video
            self._objectives[key] = Objective(extractor, {**base.terms, "temporal": TemporalTerm(
                self.hw, v.temporal_weight, v.temporal_form)})
        obj = self._objectives[key]
        obj.terms["content"].set_target(content)
        obj.terms["temporal"].set_target(warped, weights)
        return obj

    def _quiet(self, text: str) -> None:
        if not text.startswith("precision:"):  # said once for the clip
            self.log(text)

    def first(self, frame: np.ndarray, control: Control) -> Frame:
        """Frame 1: the config's init, ``optimizer.iterations`` (coarse to fine through ``scales`` if set)."""
        f = frame.astype(np.float32)
        if self.cfg.scales:
            r = stylize(f, self.raw_styles, self.cfg, extractors=self.extractors, control=control, log=self._quiet,
                        numerics=Numerics(choice=self.choice))
            return Frame(r.image, r.iterations, r.stop, {"precision": r.info["precision"]["path"]})
        return self._run(f, [Scale(self.hw, self.cfg.optimizer.iterations)], initial_image(self.cfg, f), None, None,
                         control, {})

    def next(self, frame: np.ndarray, previous_frame: np.ndarray, previous_result: np.ndarray,
             control: Control) -> Frame:
        """A later frame: flow from the input frames, the previous result warped into this one."""
        v, f = self.cfg.video, frame.astype(np.float32)
        start = time.perf_counter()
        backward, weights = frame_pair(frame, previous_frame, v.flow)
        warped = warp(previous_result, backward)
        info = {"flow_seconds": round(time.perf_counter() - start, 3), "reliable": round(float(weights.mean()), 4)}
        x0 = warped if v.init == "warped" else initial_image(self.cfg, f)
        pull = (warped, weights) if v.temporal_weight > 0 else (None, None)
        return self._run(f, [Scale(self.hw, v.iterations)], x0, *pull, control, info)

    def _run(self, f, plan, x0, warped, weights, control, info) -> Frame:
        r = run_plan(plan, _FrameTask(self, f, warped, weights), extractors=self.extractors,
                     x0=np.clip(x0, 0, 255).astype(np.float32), opt=self.cfg.optimizer, control=control,
                     numerics=Numerics(choice=self.choice), log=self._quiet)
        image = luminance_transfer(r.image, f) if self.cfg.color.preserve == "luminance" else r.image
        return Frame(image, r.iterations, r.stop, {**info, "precision": r.info["scales"][-1]["precision"]})


class _FrameTask:
    """One frame as the engine's task: the clip's objective with this frame's targets (frames run whole)."""

    def __init__(self, clip: ClipStylizer, frame: np.ndarray, warped, weights):
        self.clip, self.frame, self.warped, self.weights = clip, frame, warped, weights

    def whole(self, _index: int, _hw, extractor: FeatureExtractor) -> Objective:
        return self.clip.objective(extractor, self.frame, self.warped, self.weights)
