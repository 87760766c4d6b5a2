"""``python -m nst.run CONFIG [--set key.path=value ...] [--output DIR]``: one style-transfer run.

Wires config -> images -> weights -> engine -> output folder. Everything that can be refused
(config, images, weights, layer names, output folder) is checked before the first iteration.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nst.cli import quiet_tensorflow_import, run_main, say
from nst.cluster import Where, add_flags, where_from_args
from nst.config import PATH_KEYS, NSTConfig, defaults_yaml, load_config, to_dict
from nst.errors import UserError
from nst.events import Control
from nst.inputs import load_controls, load_inputs
from nst.kinds import Kind
from nst.recorded_run import network, recorded_run
from nst.weights import cache_dir


def parse_args(argv: list[str], prog: str = "python -m nst.run", what: str = "style transfer") -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=f"Run one {what} experiment from a YAML config.")
    p.add_argument("config", nargs="?", help="YAML experiment config (see configs/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set image.size=256 --set optimizer.iterations=200")
    p.add_argument("--output", metavar="DIR", help="output folder (overrides output_dir)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--defaults", action="store_true", help="print every key with its default and exit")
    add_flags(p)
    return p.parse_args(argv)


def overrides(args: argparse.Namespace) -> list[str]:
    # --output "" is passed on (and refused by validation), not ignored
    return [*args.set, *([f"output_dir={json.dumps(args.output)}"] if args.output is not None else [])]


def execute(cfg: NSTConfig, loaded_weights=None, progress_every: int | None = None,
            control: Control | None = None, where: Where | None = None) -> dict:
    """One run from a validated config into its output folder; returns run.json's record.

    ``loaded_weights`` = (weights, WeightsInfo) lets a caller running many configs (figure scripts, sweeps)
    load the network once. ``control`` adds the caller's subscribers and lets it cancel (studio, sweeps);
    a cancelled run returns its record with status ``cancelled``. ``where`` (:mod:`nst.cluster`): with Ray,
    the tiles of a print's tiled scales run in parallel (:mod:`nst.tile_pool`); otherwise one after another.
    """
    late = [s for s in cfg.snapshots if s > cfg.optimizer.iterations]
    if late:
        say(f"notice: snapshots {late} lie past optimizer.iterations ({cfg.optimizer.iterations}); not written")
    content, styles, init = load_inputs(cfg)  # image errors come before TensorFlow's slow import
    masks, scale_styles = load_controls(cfg, content)  # spatial control's masks, scale control's styles

    with quiet_tensorflow_import():
        from nst.engine import Numerics
        from nst.plan import describe
        from nst.recipe import TransferRecipe
        from nst.tile_pool import pool_for
        from nst.transfer import make_extractors, scale_plan, stylize

    weights, info = network(cfg, loaded_weights)
    recipe = TransferRecipe.of(cfg, info.network)  # unknown layers fail here, before the output folder is touched
    plan = scale_plan(cfg, content.shape[:2])
    runner = pool_for(where, plan, info, say)  # Ray reached (or a one-line error) before the folder is touched

    def headline(out: Path) -> str:
        return f"content {Path(cfg.content).name}: {content.shape[1]}x{content.shape[0]}; scales {describe(plan)}; " \
               f"output -> {out}"

    def work(control: Control, _recorder):
        return stylize(content, styles, cfg, extractors=make_extractors(recipe, weights), control=control,
                       init_file=init, log=say, numerics=Numerics(cfg.precision, cfg.optimizer.xla, cache_dir()),
                       tile_runner=runner, masks=masks, scale_styles=scale_styles)

    try:
        return recorded_run(cfg, info, plan, headline=headline, work=work, control=control,
                            progress_every=progress_every)
    finally:
        if runner is not None:
            runner.close()


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
    where = where_from_args(args)
    cfg = config_from_args(args, "python -m nst.run CONFIG [--set key=value ...] [--output DIR]",
                           lambda: defaults_yaml(NSTConfig), lambda: load_config(args.config, overrides(args)))
    if cfg is not None:
        execute(cfg, where=where)
    return 0


KIND = Kind(name="nst", title="style transfer", command="python -m nst.run", schema=NSTConfig, load=load_config,
            path_keys=PATH_KEYS, inputs=("content", "style"), execute=execute)

if __name__ == "__main__":
    raise SystemExit(run_main(main))
