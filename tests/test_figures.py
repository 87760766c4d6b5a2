"""The figure scripts: figure configs load and fail clearly, overrides replace mappings, runs are keyed by
config, and ``python -m experiments.make_figures --quick`` builds every figure (PNG + CSV), shares runs
between figures, reuses them on the next invocation, and writes small docs copies.

The quick build is the slow part (a few minutes on 2 CPU cores, every run at 96 px); it runs once per module.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # experiments/ is not an installed package: import it from the checkout
    sys.path.insert(0, str(REPO))

from experiments.common import Context, load_figure_config  # noqa: E402
from experiments.make_figures import figure_configs  # noqa: E402
from nst.errors import UserError  # noqa: E402
from experiments.sweep.spec import resolve_sets, run_key  # noqa: E402
FIGURES = {  # output name -> figure kind
    "fig3_1_loss_curves": "loss_curves",
    "fig3_2_comparison": "comparison",
    "fig3_3_doodle": "doodle",
    "ablation_pooling": "pooling",
    "ablation_weight_ratio": "weight_ratio",
    "ablation_style_layers": "style_layers",
    "ablation_content_layers": "content_layers",
    "fig_style_forms": "style_forms",
}


# ---------------------------------------------------------------- configs (fast)


def test_every_listed_figure_has_a_config():
    configs = figure_configs()
    assert {c.name: c.figure for c in configs} == FIGURES
    for c in configs:
        assert c.quick, f"{c.path} has no quick settings"
        assert Path(c.path).name.startswith("fig_")


def test_figure_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "fig_bad.yaml"
    bad.write_text("figure: pooling\nname: x\nbase: ../oil.yaml\nvariant: []\n")
    with pytest.raises(UserError, match="did you mean 'variants'"):
        load_figure_config(bad)
    bad.write_text("figure: poolng\nname: x\nbase: b.yaml\n")
    with pytest.raises(UserError, match="figure.*must be one of"):
        load_figure_config(bad)
    bad.write_text("figure: pooling\nname: x\nbase: b.yaml\nquick: [image.size]\n")
    with pytest.raises(UserError, match="key.path=value"):
        load_figure_config(bad)


def test_a_mapping_override_replaces_and_paths_resolve_against_the_figure_config(tmp_path):
    folder = REPO / "configs"
    sets = resolve_sets(["layers.content={conv1_2: 1.0}", "style=../../shared/data/style/the_scream.jpg"], folder)
    assert sets[0] == "layers.content=null"
    fig = load_figure_config(REPO / "configs" / "fig_content_layers.yaml")
    ctx = Context(quick=True, out=tmp_path)
    cfg = ctx.nst_config(fig, fig.variants[0])
    assert cfg.layers.content == {"conv1_2": 1.0}  # not merged with the base's conv4_2
    assert cfg.layers.style == {"conv1_1": 1.0}
    assert cfg.loss.style_weight == 0.0 and cfg.init.method == "random" and cfg.image.size == 96
    assert Path(cfg.output_dir).parent == tmp_path / "runs"
    comparison = load_figure_config(REPO / "configs" / "fig_comparison.yaml")
    scream = ctx.nst_config(comparison, comparison.variants[1])
    assert Path(scream.style[0].path) == (REPO.parent / "shared" / "data" / "style" / "the_scream.jpg").resolve()


def test_identical_runs_of_different_figures_share_a_folder(tmp_path):
    ctx = Context(quick=True, out=tmp_path)
    curves = load_figure_config(REPO / "configs" / "fig_loss_curves.yaml")
    pooling = load_figure_config(REPO / "configs" / "fig_pooling.yaml")
    ratio = load_figure_config(REPO / "configs" / "fig_weight_ratio.yaml")
    main = ctx.nst_config(curves).output_dir
    assert ctx.nst_config(pooling, pooling.variants[0]).output_dir == main  # avg pooling = the base
    assert ctx.nst_config(ratio, ratio.variants[2]).output_dir == main  # 1e-3 = the base
    assert ctx.nst_config(pooling, pooling.variants[1]).output_dir != main
    full = Context(quick=False, out=tmp_path)
    assert full.nst_config(curves).image.size == 512 and full.nst_config(curves).optimizer.iterations == 1000


def test_run_key_ignores_what_cannot_change_a_run():
    base = {"content": "a.jpg", "loss": {"style_weight": 1000.0}, "output_dir": "x", "snapshots": [1],
            "progress": {"every": 10}}
    same = {**base, "output_dir": "y", "snapshots": [], "progress": {"every": 1}}
    other = {**base, "loss": {"style_weight": 100.0}}
    assert run_key(base) == run_key(same) != run_key(other)


def test_only_and_list(capsys):
    from experiments.make_figures import main

    assert main(["--list", "--only", "pooling", "fig3_1_loss_curves"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in out] == ["loss_curves", "pooling"]
    with pytest.raises(UserError, match="unknown figure"):
        main(["--list", "--only", "fig9"])


# ---------------------------------------------------------------- the quick build (slow)


def make_figures(args: list[str], timeout: float = 1500) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    return subprocess.run([sys.executable, "-m", "experiments.make_figures", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    done = make_figures(["--quick", "--out", str(out), "--docs", "--docs-dir", str(out / "docs")])
    assert done.returncode == 0, done.stderr[-4000:]
    return out, json.loads((out / "summary.json").read_text())


def not_blank(path: Path, min_std: float = 8.0) -> bool:
    with Image.open(path) as img:
        return float(np.asarray(img.convert("L"), dtype=float).std()) > min_std


@pytest.mark.slow
def test_quick_mode_builds_every_figure_with_its_data(quick):
    out, summary = quick
    assert summary["mode"] == "quick"
    assert set(summary["figures"]) == set(FIGURES)
    for name in FIGURES:
        png, table = out / f"{name}.png", out / f"{name}.csv"
        assert png.stat().st_size > 20_000, name
        assert not_blank(png), name
        with Image.open(png) as img:
            assert img.width >= 800, name
        rows = list(csv.DictReader(open(table, encoding="utf-8")))
        assert rows, f"{table} is empty"
        for row in rows:
            if row.get("image"):
                assert not_blank(Path(row["image"])), f"{name}: blank panel {row['image']}"
                assert float(row["total"]) > 0 or name == "ablation_content_layers"


@pytest.mark.slow
def test_loss_curves_mark_a_flattening_point_inside_the_run(quick):
    out, summary = quick
    fig = summary["figures"]["fig3_1_loss_curves"]
    assert fig["iterations"] == 50
    assert 1 < fig["flattening_iteration"] < fig["iterations"]
    rows = list(csv.DictReader(open(out / "fig3_1_loss_curves.csv", encoding="utf-8")))
    assert len(rows) == 50
    total = np.array([float(r["total"]) for r in rows])
    assert total[-1] < total[0] / 10  # the optimiser did its job
    flat = list(csv.DictReader(open(out / "fig3_1_loss_curves_flattening.csv", encoding="utf-8")))[0]
    assert int(flat["flattening_iteration"]) == fig["flattening_iteration"]


@pytest.mark.slow
def test_comparison_shows_the_scaled_snapshots(quick):
    out, _ = quick
    rows = list(csv.DictReader(open(out / "fig3_2_comparison.csv", encoding="utf-8")))
    assert [int(r["iteration"]) for r in rows] == [5, 15, 50, 5, 15, 50]
    for label in {r["label"] for r in rows}:
        totals = [float(r["total"]) for r in rows if r["label"] == label]
        assert totals == sorted(totals, reverse=True), label


@pytest.mark.slow
def test_runs_are_shared_between_figures_and_reused_later(quick):
    out, summary = quick
    main_run = summary["figures"]["fig3_1_loss_curves"]["runs"][0]
    for name in ("fig3_2_comparison", "ablation_pooling", "ablation_weight_ratio"):
        assert main_run in summary["figures"][name]["runs"], name
    assert main_run in summary["runs_reused"]
    made = len(summary["runs_made"])
    assert made == len(set(summary["runs_made"]))
    again = make_figures(["--quick", "--out", str(out), "--only", "pooling", "loss_curves"], timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["runs_made"] == []


@pytest.mark.slow
def test_docs_copies_are_small(quick):
    out, summary = quick
    docs = [Path(f["docs"]) for f in summary["figures"].values() if "docs" in f]
    assert len(docs) >= 3
    for d in docs:
        assert d.parent == out / "docs"
        assert 5_000 < d.stat().st_size < 150_000, d
        assert not_blank(d)


def test_docs_jpeg_copy_stays_under_the_bound_even_for_noise(tmp_path):
    """write_jpeg lowers quality, then width, until the copy fits (a noisy grid once came out at 200 kB)."""
    from experiments.fig_style_forms import JPEG_MAX_BYTES, JPEG_MAX_WIDTH, write_jpeg

    rng = np.random.default_rng(0)
    src = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 256, (1200, 2400, 3), dtype=np.uint8)).save(src)
    dst = write_jpeg(src, tmp_path / "noise.jpg")
    assert dst.stat().st_size <= JPEG_MAX_BYTES < 150_000
    with Image.open(dst) as img:
        assert img.width <= JPEG_MAX_WIDTH and abs(img.width / img.height - 2.0) < 0.02
