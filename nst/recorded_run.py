"""The wiring every kind's run shares: the network announced, the folder taken, seeds set, progress printed
and recorded, the engine's result written — one place for ``nst.run`` and ``doodle.run``.

A kind's ``execute`` loads and checks its inputs, resolves its recipe and plan (every refusal before the
folder is touched), then hands :func:`recorded_run` the work to do. The folder contract (lock, atomic
writes, ``run.json`` from the start, ``result.png`` last) is :mod:`nst.outputs`'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from nst.cli import say
from nst.determinism import seed_everything
from nst.events import Control
from nst.outputs import RunRecorder, prepare_dir, record_run
from nst.plan import Scale, plan_work
from nst.progress import ProgressPrinter
from nst.weights import WeightsInfo, load_weights


def network(cfg, loaded_weights=None) -> tuple:
    """(weights, WeightsInfo): the caller's already loaded network (figures, sweeps), or the config's."""
    return loaded_weights or load_weights(cfg.model.network, cfg.model.weights, cfg.model.download)


def recorded_run(cfg, info: WeightsInfo, plan: list[Scale], *, headline: Callable[[Path], str],
                 work: Callable[[Control, RunRecorder], object], control: Control | None = None,
                 progress_every: int | None = None, extra: dict | None = None) -> dict:
    """Take ``cfg.output_dir``, run ``work(control, recorder) -> engine Result`` under a recorder; returns
    run.json's record. ``extra`` joins run.json at the start; the result's ``info`` at the end."""
    say(f"network: {info.network} ({info.source})\nweights: {info.path} sha256 {info.sha256}")
    if info.notice:
        say(f"notice: {info.notice}")
    out = prepare_dir(Path(cfg.output_dir))
    say(headline(out))
    seed_everything(cfg.seed)
    printer = ProgressPrinter(cfg.optimizer.iterations, progress_every or cfg.progress.every, cfg.progress.quiet,
                              work=plan_work(plan))
    recorder = RunRecorder(out, cfg, info, on_event=printer)
    recorder.extra.update(extra or {})
    control = control or Control()
    control.subscribers.insert(0, recorder)

    def run():
        result = work(control, recorder)
        recorder.extra.update(result.info)
        return result.image, result.stop

    return record_run(recorder, printer, run)
