"""``python -m nst.run CONFIG [--set key.path=value ...] [--output DIR]``: one style-transfer run.

Wires config -> images -> weights -> engine -> output folder. Everything that can be refused
(config, images, weights, layer names, output folder) is checked before the first iteration.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nst.cli import quiet_tensorflow_import, run_main, say
from nst.config import NSTConfig, defaults_yaml, load_config, to_dict
from nst.determinism import seed_everything
from nst.errors import UserError
from nst.events import Control
from nst.inputs import load_inputs
from nst.outputs import RunRecorder, prepare_dir, record_run
from nst.progress import ProgressPrinter
from nst.weights import cache_dir, load_weights


def parse_args(argv: list[str], prog: str = "python -m nst.run", what: str = "style transfer") -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=f"Run one {what} experiment from a YAML config.")
    p.add_argument("config", nargs="?", help="YAML experiment config (see configs/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set image.size=256 --set optimizer.iterations=200")
    p.add_argument("--output", metavar="DIR", help="output folder (overrides output_dir)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--defaults", action="store_true", help="print every key with its default and exit")
    return p.parse_args(argv)


def overrides(args: argparse.Namespace) -> list[str]:
    # --output "" is passed on (and refused by validation), not ignored
    return [*args.set, *([f"output_dir={json.dumps(args.output)}"] if args.output is not None else [])]


def execute(cfg: NSTConfig, loaded_weights=None, progress_every: int | None = None,
            control: Control | None = None) -> dict:
    """One run from a validated config into its output folder; returns run.json's record.

    ``loaded_weights`` = (weights, WeightsInfo) lets a caller running many configs (figure scripts, sweeps)
    load the network once. ``control`` adds the caller's subscribers and lets it cancel (studio, sweeps);
    a cancelled run returns its record with status ``cancelled``.
    """
    late = [s for s in cfg.snapshots if s > cfg.optimizer.iterations]
    if late:
        say(f"notice: snapshots {late} lie past optimizer.iterations ({cfg.optimizer.iterations}); not written")
    content, styles, init = load_inputs(cfg)  # image errors come before TensorFlow's slow import

    with quiet_tensorflow_import():
        from nst.tiles import describe, plan_work
        from nst.transfer import layer_weights, make_extractors, scale_plan, stylize

    weights, info = loaded_weights or load_weights(cfg.model.network, cfg.model.weights, cfg.model.download)
    layer_weights(cfg, info.network)  # unknown layers fail here, before the output folder is touched
    plan = scale_plan(cfg, content.shape[:2])
    say(f"network: {info.network} ({info.source})\nweights: {info.path} sha256 {info.sha256}")
    if info.notice:
        say(f"notice: {info.notice}")
    out = prepare_dir(Path(cfg.output_dir))
    scales = describe(plan, cfg.tiles)
    say(f"content {Path(cfg.content).name}: {content.shape[1]}x{content.shape[0]}; scales {scales}; output -> {out}")
    seed_everything(cfg.seed)
    extractors = make_extractors(cfg, weights, info.network)

    printer = ProgressPrinter(cfg.optimizer.iterations, progress_every or cfg.progress.every, cfg.progress.quiet,
                              work=plan_work(plan, cfg.tiles))
    recorder = RunRecorder(out, to_dict(cfg), cfg.snapshots, info, cfg.seed, on_event=printer)
    control = control or Control()
    control.subscribers.insert(0, recorder)

    def work():
        result = stylize(content, styles, cfg, extractors, control, init, log=say, cache_dir=cache_dir())
        recorder.extra.update(result.info)
        return result.image, result.stop

    return record_run(recorder, printer, work)


def config_from_args(args: argparse.Namespace, usage: str, defaults, load):
    """The CONFIG part shared by the run CLIs (nst.run, doodle.run, nst.video): ``--defaults`` prints every key
    with its default, a missing CONFIG is a usage error, ``--print-config`` prints the resolved config. Returns
    the loaded config, or None when the command only printed."""
    if args.defaults:
        print(defaults(), end="")
        return None
    if not args.config:
        raise UserError(f"no CONFIG given; usage: {usage}")
    cfg = load()
    if args.print_config:
        import yaml

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return None
    return cfg


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    cfg = config_from_args(args, "python -m nst.run CONFIG [--set key=value ...] [--output DIR]",
                           lambda: defaults_yaml(NSTConfig), lambda: load_config(args.config, overrides(args)))
    if cfg is not None:
        execute(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
