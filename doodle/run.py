"""``python -m doodle.run CONFIG [--set key.path=value ...] [--output DIR]``: one neural doodle run.

Champandard 2016 (arXiv:1603.01768). Wires config -> inputs and labels -> weights -> engine -> output folder,
with nst's output contract (``result.png`` last, with the config as PNG text; ``iter_XXXX.png``;
``losses.csv``; ``run.json``) plus ``labels.png`` (style and target label maps with the palette).
Everything that can be refused is checked before the output folder is touched.
"""

from __future__ import annotations

from pathlib import Path

from nst.cli import quiet_tensorflow_import, run_main, say
from nst.config import to_dict
from nst.determinism import seed_everything
from nst.events import Control
from nst.outputs import RunRecorder, prepare_dir, record_run
from nst.progress import ProgressPrinter
from nst.run import config_from_args, overrides, parse_args
from nst.weights import cache_dir, load_weights

from doodle.config import DoodleConfig, defaults_yaml, load_doodle_config
from doodle.maps import labels_preview, to_hex


def execute(cfg: DoodleConfig, loaded_weights=None, control: Control | None = None) -> dict:
    """One doodle from a validated config into its output folder; returns run.json's record.

    Like :func:`nst.run.execute`: ``loaded_weights`` = (weights, WeightsInfo) loads the network once for many
    runs; ``control`` adds subscribers and lets the caller cancel (the record then says ``cancelled``).
    """
    with quiet_tensorflow_import():
        from doodle.engine import make_extractors, needed_layers, paint, phase_plan
    from doodle.inputs import load_inputs
    from doodle.tiles import check_tiles
    from nst.tiles import describe, plan_work

    inputs = load_inputs(cfg)
    for note in inputs.notes:
        say(note)
    if inputs.labels is not None:
        say(inputs.labels.describe())
    else:
        say("no semantic maps: " + ("plain style transfer" if cfg.content else "texture synthesis"))
    weights, info = loaded_weights or load_weights(cfg.model.network, cfg.model.weights, cfg.model.download)
    needed_layers(cfg, info.network, inputs.scene.content is not None)  # unknown layer names fail here
    plan = phase_plan(cfg, inputs.scene.size, info.network)  # and too many phases for the size here
    check_tiles(cfg, plan)  # and a method that cannot run in tiles at a print size here
    say(f"network: {info.network} ({info.source})\nweights: {info.path} sha256 {info.sha256}")
    if info.notice:
        say(f"notice: {info.notice}")
    h, w = inputs.scene.size
    out = prepare_dir(Path(cfg.output_dir))
    say(f"doodle ({cfg.doodle.method}): {w}x{h} px in {len(plan)} phase(s) {describe(plan, cfg.tiles)}; "
        f"output -> {out}")
    seed_everything(cfg.seed)
    extractors = make_extractors(cfg, weights, info.network, inputs.scene.content is not None)

    printer = ProgressPrinter(cfg.optimizer.iterations, cfg.progress.every, cfg.progress.quiet,
                              work=plan_work(plan, cfg.tiles))
    recorder = RunRecorder(out, to_dict(cfg), cfg.snapshots, info, cfg.seed, on_event=printer)
    recorder.extra.update({
        "method": cfg.doodle.method,
        "labels": None if inputs.labels is None else {
            "palette": [to_hex(c) for c in inputs.labels.palette],
            "shares": {name: [round(float(s), 5) for s in inputs.labels.shares[name]] for name in inputs.map_names},
        },
    })
    control = control or Control()
    control.subscribers.insert(0, recorder)

    def work():
        if inputs.labels is not None:  # inside the recorded run: a failed write marks it failed
            recorder.write_png("labels.png", labels_preview(inputs.labels, inputs.map_names))
        result = paint(inputs.scene, cfg, extractors, control, inputs.init_file, log=say, cache_dir=cache_dir())
        recorder.extra.update(result.info, phases=result.info["scales"])
        return result.image, result.stop

    return record_run(recorder, printer, work)


def main(argv: list[str]) -> int:
    args = parse_args(argv, prog="python -m doodle.run", what="neural doodle")
    cfg = config_from_args(args, "python -m doodle.run CONFIG [--set key=value ...] [--output DIR]", defaults_yaml,
                           lambda: load_doodle_config(args.config, overrides(args)))
    if cfg is not None:
        execute(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
