"""What every figure script shares: the figure config schema, image grids, CSV/PNG output.

A figure config (``configs/fig_*.yaml``) names a base run config (``configs/oil_landscape.yaml``),
the variants the figure compares (``--set``-style overrides), and what ``--quick`` changes. A figure's
runs are a sweep: each variant is a point resolved and keyed by :mod:`experiments.sweep.spec` and run by
:func:`experiments.sweep.runners.run_points` (in this process, or on Ray with ``--ray`` / ``--address``), into
``<out>/runs/<base>-<run key>/``, where every figure (and every later invocation) asking for the same
config finds it finished.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union

import numpy as np

from nst.cli import run_main, say
from nst.config import NSTConfig, load_config, to_dict
from nst.errors import UserError
from experiments.sweep.spec import Point, point_config, resolve_sets, run_key
from nst.kinds import Kind, kind_of_config, kind_of_file

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
FIGURES = ROOT / "figures"
DOCS = ROOT / "docs"


# ---------------------------------------------------------------- figure configs


@dataclass(frozen=True)
class Variant:
    label: str  # shown on the figure
    set: list[str] = field(default_factory=list)  # --set overrides; relative paths resolve against the fig config
    base: Union[str, None] = None  # another base config for this variant (default: the figure's)


@dataclass(frozen=True)
class FlattenRule:
    """Where a loss curve flattens: see nst.plot.flattening_point."""
    term: str = "total"
    window: float = 0.05  # the look-ahead, as a fraction of the run's iterations (50 of 1000)
    threshold: float = 0.02  # relative improvement over the look-ahead below which the curve is flat


@dataclass(frozen=True)
class FigureConfig:
    figure: str = ""  # which script draws it: see experiments.make_figures.SCRIPTS
    name: str = ""  # output stem: <out>/<name>.png and <name>.csv
    title: str = ""
    base: str = ""  # the run config the variants start from, relative to this file
    full: list[str] = field(default_factory=list)  # overrides of the paper-settings mode (usually none)
    quick: list[str] = field(default_factory=list)  # overrides of --quick: small images, few iterations
    variants: list[Variant] = field(default_factory=list)
    columns: list[Variant] = field(default_factory=list)  # a second axis (style_forms: one per loss.style_form)
    flatten: FlattenRule = field(default_factory=FlattenRule)
    docs: bool = False  # with --docs, a small copy goes to docs/<name>.png
    path: str = ""  # filled in by the loader: where this config was read from


FIGURE_KINDS = ("loss_curves", "comparison", "doodle", "pooling", "weight_ratio", "style_layers", "content_layers",
                "style_forms")


def check_figure(cfg: FigureConfig) -> None:
    if cfg.figure not in FIGURE_KINDS:
        raise UserError(f"figure config key 'figure' must be one of {', '.join(FIGURE_KINDS)}; got '{cfg.figure}'")
    if not cfg.name or "/" in cfg.name:
        raise UserError("figure config key 'name' must be a file stem, e.g. fig3_1_loss_curves")
    if not cfg.base:
        raise UserError("figure config key 'base' must name the run config the figure starts from")
    for text in [*cfg.full, *cfg.quick, *(s for v in [*cfg.variants, *cfg.columns] for s in v.set)]:
        if "=" not in text:
            raise UserError(f"figure config override '{text}' must be key.path=value")
    if not 0 < cfg.flatten.window < 1 or cfg.flatten.threshold <= 0:
        raise UserError("figure config 'flatten' needs 0 < window < 1 and threshold > 0")


def load_figure_config(path: str | Path) -> FigureConfig:
    import dataclasses

    cfg = load_config(path, [], schema=FigureConfig, check=check_figure)
    return dataclasses.replace(cfg, path=str(Path(path).resolve()))


def fig_dir(fig: FigureConfig) -> Path:
    return Path(fig.path).parent


def base_path(fig: FigureConfig, variant: Variant | None = None) -> Path:
    return (fig_dir(fig) / ((variant.base if variant and variant.base else None) or fig.base)).resolve()


# ---------------------------------------------------------------- running


@dataclass
class Context:
    """One invocation: mode, output folder, extra overrides, how runs execute, and the runs made or reused."""
    quick: bool
    out: Path
    extra_sets: list[str] = field(default_factory=list)  # --set from the command line, applied last
    force: bool = False
    execution: object = None  # experiments.sweep's Execution (default: in this process)
    runs_made: list[str] = field(default_factory=list)  # runs made by this invocation
    runs_reused: list[str] = field(default_factory=list)  # runs a figure found finished (made earlier or before)

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"

    @property
    def runs_dir(self) -> Path:
        return self.out / "runs"

    def mode_sets(self, fig: FigureConfig) -> list[str]:
        return fig.quick if self.quick else fig.full

    def sets_for(self, fig: FigureConfig, variant: Variant | None = None, extra: list[str] = (),
                 kind: Kind | None = None) -> list[str]:
        """The overrides of one run: mode, variant, ``extra``, then the command line's ``--set``."""
        keys = (kind or kind_of_file(base_path(fig, variant))).path_keys
        return [*resolve_sets([*self.mode_sets(fig), *(variant.set if variant else []), *extra], fig_dir(fig), keys),
                *self.extra_sets]

    def nst_config(self, fig: FigureConfig, variant: Variant | None = None, extra: list[str] = ()):
        """The variant's run config (nst or doodle, by its base), ``output_dir`` = ``<out>/runs/<base>-<key>``."""
        base = base_path(fig, variant)
        kind = kind_of_file(base)
        return point_config(kind, base, self.sets_for(fig, variant, extra, kind), self.runs_dir)[0]

    def run_many(self, cfgs: list, labels: list[str]) -> list[Path]:
        """Run configs as one sweep (finished identical runs are reused); their folders, in order."""
        from experiments.sweep.runners import Execution, Interrupted, run_points

        kind = kind_of_config(cfgs[0]).name
        points = [Point(i, {"figure": label}, [], run_key(to_dict(c)), Path(c.output_dir), c)
                  for i, (c, label) in enumerate(zip(cfgs, labels))]
        how = self.execution or Execution()
        how.force = self.force
        try:
            outcomes = run_points(kind, points, how)
        except Interrupted:
            raise KeyboardInterrupt from None
        for p in points:
            o = outcomes[p.index]
            if o["status"] != "finished":
                raise UserError(f"run {p.folder.name} ({labels[p.index]}) {o['status']}: {o['error'] or 'see run.json'}")
            (self.runs_reused if o["reused"] else self.runs_made).append(str(p.folder))
            if o["reused"]:
                say(f"  reuse {p.folder.name} ({labels[p.index]})")
        self.runs_reused[:] = list(dict.fromkeys(self.runs_reused))
        return [p.folder for p in points]

    def run(self, cfg, label: str = "") -> Path:
        """Run one config (nst or doodle) through the sweep runner, or reuse a finished identical run."""
        return self.run_many([cfg], [label])[0]


# ---------------------------------------------------------------- reading runs back


def run_json(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))


def read_rgb(path: Path) -> np.ndarray:
    from nst.images import read_image

    return read_image(path, "figure image")


def losses_at(run_dir: Path, iteration: int) -> dict[str, float]:
    from nst.plot import read_losses

    cols = read_losses(run_dir)
    i = int(np.searchsorted(cols["iteration"], iteration))
    i = min(i, len(cols["iteration"]) - 1)
    return {k: float(cols[k][i]) for k in ("iteration", "content", "style", "tv", "total", "seconds")}


def snapshot(run_dir: Path, iteration: int) -> Path:
    """The image a run had after ``iteration`` (its result for the last iteration)."""
    path = Path(run_dir) / f"iter_{iteration:04d}.png"
    if path.is_file():
        return path
    if iteration >= run_json(run_dir)["iterations_done"]:
        return Path(run_dir) / "result.png"
    raise UserError(f"{run_dir} has no snapshot at iteration {iteration}")


def run_row(label: str, run_dir: Path, iteration: int | None = None, **extra) -> dict:
    """A CSV row describing one image of a figure: which run, which iteration, its losses."""
    info = run_json(run_dir)
    it = iteration or info["iterations_done"]
    row = {"label": label, **extra, "run_dir": str(run_dir), "iteration": it,
           "image": str(snapshot(run_dir, it))}
    row.update({k: v for k, v in losses_at(run_dir, it).items() if k != "iteration"})
    row["network"] = info["network"]
    return row


def describe(run_dir: Path) -> str:
    """'vgg16, 96x72 px, 50 L-BFGS its' for a figure footer."""
    info = run_json(run_dir)
    img = read_rgb(Path(run_dir) / "result.png")
    opt = info["config"]["optimizer"]
    method = "L-BFGS" if opt["method"] == "lbfgs" else "Adam"
    return f"{info['network']}, {img.shape[1]}x{img.shape[0]} px, {opt['iterations']} {method} iterations"


# ---------------------------------------------------------------- drawing and writing


def write_csv(rows: list[dict], path: Path) -> Path:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return path


@dataclass
class Panel:
    image: Union[np.ndarray, Path, None]  # None: an empty cell
    title: str = ""
    nearest: bool = False  # draw pixels as blocks (label maps)


def as_uint8(img: np.ndarray | None) -> np.ndarray | None:
    if img is None or img.dtype == np.uint8:
        return img
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def image_grid(rows: list[list[Panel]], path: Path, title: str, row_labels: list[str] | None = None,
               footer: str = "", panel_inches: float = 2.3) -> Path:
    """Panels in a grid, titles above each, optional labels left of each row, a footer line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arrays = [[as_uint8(read_rgb(p.image) if isinstance(p.image, Path) else p.image) for p in row] for row in rows]
    shapes = [a.shape for row in arrays for a in row if a is not None]
    aspect = float(np.median([s[0] / s[1] for s in shapes])) if shapes else 1.0
    ncols, nrows = max(len(r) for r in rows), len(rows)
    # all in inches: panel size, gaps (a gap above a row holds its two-line panel titles), margins
    pw, ph, gap_w, gap_h = panel_inches, panel_inches * aspect, 0.12, 0.5
    left, right, top, bottom = (0.35 if row_labels else 0.08), 0.08, 0.4 + gap_h, (0.3 if footer else 0.08)
    width = left + ncols * pw + (ncols - 1) * gap_w + right
    height = top + nrows * ph + (nrows - 1) * gap_h + bottom
    fig, axes = plt.subplots(len(rows), ncols, figsize=(width, height), squeeze=False)
    for r, (row, arrs) in enumerate(zip(rows, arrays)):
        for c in range(ncols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row) or arrs[c] is None:
                ax.axis("off")
                continue
            ax.imshow(arrs[c], interpolation="nearest" if row[c].nearest else "antialiased")
            ax.set_title(row[c].title, fontsize=8.5)
            for s in ax.spines.values():
                s.set_linewidth(0.4)
        if row_labels:
            axes[r][0].set_ylabel(row_labels[r], fontsize=9)
    fig.suptitle(title, fontsize=11, y=1 - 0.12 / height, va="top")
    if footer:
        fig.text(0.5, 0.06 / height, footer, ha="center", va="bottom", fontsize=7, color="0.35")
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height,
                        wspace=gap_w / pw, hspace=gap_h / ph)
    return save_figure(fig, path, tight=True)


def save_figure(fig, path: Path, tight: bool = False) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, **({"bbox_inches": "tight", "pad_inches": 0.12} if tight else {}))
    plt.close(fig)
    return path


def footer_text(ctx: Context, run_dir: Path, extra: str = "") -> str:
    cmd = "python -m experiments.make_figures" + (" --quick" if ctx.quick else "")
    return f"{describe(run_dir)}; {ctx.mode} mode ({cmd}){'; ' + extra if extra else ''}"


# ---------------------------------------------------------------- the ablation figures' shape


def input_panels(cfg: NSTConfig, inputs: tuple[str, ...]) -> list[Panel]:
    """The images a run started from, as the network saw them (content at the output size)."""
    from nst.inputs import load_inputs

    content, styles, _ = load_inputs(cfg)
    panels = {"content": Panel(content, "content"),
              "style": Panel(styles[0][0], "style" if len(styles) == 1 else "style (first of several)")}
    return [panels[name] for name in inputs]


def variants_figure(fig: FigureConfig, ctx: Context, inputs: tuple[str, ...], key: str = "total",
                    note: str = "") -> FigureResult:
    """One row: the input images, then the final image of each variant (one run each), titled by label + loss."""
    start = time.time()
    panels, rows, runs = [], [], []
    cfgs = [ctx.nst_config(fig, v) for v in fig.variants]
    folders = ctx.run_many(cfgs, [f"{fig.name}: {v.label}" for v in fig.variants])
    for v, run in zip(fig.variants, folders):
        row = run_row(v.label, run)
        rows.append(row)
        runs.append(str(run))
        panels.append(Panel(Path(row["image"]), f"{v.label}\n{key} loss {row[key]:.3g}"))
    first = ctx.nst_config(fig, fig.variants[0])
    grid = [[*input_panels(first, inputs), *panels]]
    png = image_grid(grid, ctx.out / f"{fig.name}.png", fig.title,
                     footer=footer_text(ctx, Path(runs[0]), note))
    csv_path = write_csv(rows, ctx.out / f"{fig.name}.csv")
    return FigureResult(fig.name, png, csv_path, runs, time.time() - start)


# ---------------------------------------------------------------- one figure script's command line


@dataclass
class FigureResult:
    name: str
    png: Path
    csv: Path
    runs: list[str]
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)  # numbers a test or the README may want (e.g. the flattening point)


Build = Callable[[FigureConfig, Context], FigureResult]


def common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="small images, few iterations (CI): minutes, not hours")
    p.add_argument("--out", metavar="DIR", help="output folder (default: figures/, or figures/quick with --quick)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of every run, after the figure's settings (e.g. model.network=vgg16)")
    p.add_argument("--force", action="store_true", help="rerun even when an identical finished run exists")
    p.add_argument("--ray", action="store_true", help="run each figure's runs in parallel on a local Ray")
    p.add_argument("--address", metavar="ADDR",
                   help="run on a Ray cluster: HOST:PORT, auto or ray://HOST:PORT (docs/SWEEPS.md)")
    p.add_argument("--max-parallel", type=int, metavar="N", help="at most N runs at once on Ray")


def make_context(args: argparse.Namespace) -> Context:
    from experiments.sweep.runners import Execution

    out = Path(args.out) if args.out else (FIGURES / "quick" if args.quick else FIGURES)
    how = Execution(local=not (args.ray or args.address), address=args.address, max_parallel=args.max_parallel)
    return Context(quick=args.quick, out=out.resolve(), extra_sets=list(args.set), force=args.force, execution=how)


def figure_main(build: Build, default_config: str, doc: str) -> None:
    """``python -m experiments.fig_x [--quick] [--config YAML] [--out DIR]``: one figure."""

    def main(argv: list[str]) -> int:
        p = argparse.ArgumentParser(description=doc)
        p.add_argument("--config", default=str(CONFIGS / default_config), help="figure config")
        common_args(p)
        args = p.parse_args(argv)
        ctx = make_context(args)
        start = time.time()
        res = build(load_figure_config(args.config), ctx)
        say(f"wrote {res.png} and {res.csv} ({time.time() - start:.0f} s)")
        return 0

    raise SystemExit(run_main(main))
