"""``python -m doodle.run CONFIG [--set key.path=value ...] [--output DIR]``: one neural doodle run.

Champandard 2016 (arXiv:1603.01768). Wires config -> inputs and labels -> weights -> engine -> output folder,
with nst's output contract (``result.png`` last, with the config as PNG text; ``iter_XXXX.png``;
``losses.csv``; ``run.json``) plus ``labels.png`` (style and target label maps with the palette).
Everything that can be refused is checked before the output folder is touched.
"""

from __future__ import annotations

from pathlib import Path

from nst.cli import quiet_tensorflow_import, run_main, say
from nst.cluster import Where, where_from_args
from nst.events import Control
from nst.kinds import Kind
from nst.recorded_run import network, recorded_run
from nst.run import config_from_args, overrides, parse_args
from nst.weights import cache_dir

from doodle.config import PATH_KEYS, DoodleConfig, defaults_yaml, load_doodle_config
from doodle.maps import labels_preview, to_hex


def execute(cfg: DoodleConfig, loaded_weights=None, control: Control | None = None,
            progress_every: int | None = None, where: Where | None = None) -> dict:
    """One doodle from a validated config into its output folder; returns run.json's record.

    Like :func:`nst.run.execute`: ``loaded_weights`` = (weights, WeightsInfo) loads the network once for many
    runs; ``control`` adds subscribers and lets the caller cancel (the record then says ``cancelled``);
    ``where``: a print's tiles on Ray (:mod:`nst.cluster`, :mod:`nst.tile_pool`).
    """
    with quiet_tensorflow_import():
        from doodle.engine import make_extractors, paint, phase_plan
        from doodle.recipe import DoodleRecipe
        from nst.engine import Numerics
        from nst.plan import describe
        from nst.tile_pool import pool_for
    from doodle.inputs import load_inputs

    inputs = load_inputs(cfg)
    for note in inputs.notes:
        say(note)
    if inputs.labels is not None:
        say(inputs.labels.describe())
    else:
        say("no semantic maps: " + ("plain style transfer" if cfg.content else "texture synthesis"))
    weights, info = network(cfg, loaded_weights)
    recipe = DoodleRecipe.of(cfg, info.network, inputs.scene.content is not None)  # unknown layer names fail here
    plan = phase_plan(cfg, inputs.scene.size, recipe)  # too many phases for the size, or a method not for tiles
    h, w = inputs.scene.size
    # Ray reached (or a one-line error) before the folder is touched
    runner = pool_for(where, plan, info, say, ("doodle",))

    def headline(out: Path) -> str:
        return f"doodle ({cfg.doodle.method}): {w}x{h} px in {len(plan)} phase(s) {describe(plan)}; output -> {out}"

    def work(control: Control, recorder):
        if inputs.labels is not None:  # inside the recorded run: a failed write marks it failed
            recorder.write_png("labels.png", labels_preview(inputs.labels, inputs.map_names))
        result = paint(inputs.scene, cfg, extractors=make_extractors(recipe, weights), control=control,
                       init_file=inputs.init_file, log=say,
                       numerics=Numerics(cfg.precision, cfg.optimizer.xla, cache_dir()), tile_runner=runner)
        result.info["phases"] = result.info["scales"]
        return result

    extra = {
        "method": cfg.doodle.method,
        "labels": None if inputs.labels is None else {
            "palette": [to_hex(c) for c in inputs.labels.palette],
            "shares": {name: [round(float(s), 5) for s in inputs.labels.shares[name]] for name in inputs.map_names},
        },
    }
    try:
        return recorded_run(cfg, info, plan, headline=headline, work=work, control=control,
                            progress_every=progress_every, extra=extra)
    finally:
        if runner is not None:
            runner.close()


def main(argv: list[str]) -> int:
    args = parse_args(argv, prog="python -m doodle.run", what="neural doodle")
    where = where_from_args(args)
    cfg = config_from_args(args, "python -m doodle.run CONFIG [--set key=value ...] [--output DIR]", defaults_yaml,
                           lambda: load_doodle_config(args.config, overrides(args)))
    if cfg is not None:
        execute(cfg, where=where)
    return 0


KIND = Kind(name="doodle", title="neural doodle", command="python -m doodle.run", schema=DoodleConfig,
            load=load_doodle_config, path_keys=PATH_KEYS,
            inputs=("style", "content", "doodle.style_map", "doodle.target_map", "doodle.content_map"),
            execute=execute, marker="doodle")

if __name__ == "__main__":
    raise SystemExit(run_main(main))
