"""experiments/fig_style_forms.py at a tiny size with two forms: the grid, its JPEG, the per-run CSV and the
cross-scoring table are written, every score is finite and positive, scoring a result under its own form gives
its run's own last style loss (up to 8-bit rounding), and a figure config without forms is one clear error."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
FORMS = ("gram", "sliced_wasserstein")


def _figure_config(tmp_path: Path, columns: str) -> Path:
    cfg = tmp_path / "fig_style_forms.yaml"
    cfg.write_text(f"""figure: style_forms
name: forms_tiny
title: tiny
base: {REPO / 'configs' / 'oil_landscape.yaml'}
quick: [image.size=48, optimizer.iterations=4, "snapshots=[]", model.network=vgg16, precision=float32,
        optimizer.xla=false]
variants:
  - label: landscape
    set: []
  - label: portrait
    set: [content={SHARED / 'content' / 'brad_pitt.jpg'}, style={SHARED / 'style' / 'woman-with-hat-matisse.jpg'}]
{columns}""", encoding="utf-8")
    return cfg


def _run(cfg: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.fig_style_forms", "--quick", "--config", str(cfg),
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_two_forms_make_a_grid_and_a_cross_scoring_table(tmp_path):
    columns = "columns:\n" + "".join(f"  - label: {f}\n    set: [loss.style_form={f}]\n" for f in FORMS)
    done = _run(_figure_config(tmp_path, columns), tmp_path / "out")
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "out"
    with Image.open(out / "forms_tiny.png") as png:
        assert png.width > 600 and png.height > 300
    assert 0 < (out / "forms_tiny.jpg").stat().st_size < 400_000
    runs = list(csv.DictReader(open(out / "forms_tiny.csv", encoding="utf-8")))
    assert [(r["pair"], r["label"]) for r in runs] == [(p, f) for p in ("landscape", "portrait") for f in FORMS]
    for r in runs:
        assert int(r["evaluations"]) >= 4 and float(r["s_per_eval"]) > 0
    scores = list(csv.DictReader(open(out / "forms_tiny_scores.csv", encoding="utf-8")))
    assert sorted((s["pair"], s["result"], s["scored_under"]) for s in scores) == sorted(
        (p, a, b) for p in ("landscape", "portrait") for a in FORMS for b in FORMS)
    for s in scores:
        assert math.isfinite(float(s["style"])) and float(s["style"]) > 0
        assert math.isfinite(float(s["style_over_own"]))
        if s["result"] == s["scored_under"]:
            assert float(s["style_over_own"]) == 1.0
            run = next(r for r in runs if r["pair"] == s["pair"] and r["label"] == s["result"])
            # the objective's own value at the run's 8-bit result vs the run's last row (at its float image)
            assert float(s["style"]) == pytest.approx(float(run["style"]), rel=0.05)
    table = (out / "forms_tiny_scores.md").read_text(encoding="utf-8")
    assert table.count("| result \\ scored under | gram | sliced_wasserstein |") == 2
    assert "| gram | 1 |" in table and "| sliced_wasserstein |" in table


def test_a_style_forms_figure_without_columns_is_one_error_line(tmp_path):
    done = _run(_figure_config(tmp_path, ""), tmp_path / "out")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error:") and "'columns'" in done.stderr
    assert not (tmp_path / "out" / "forms_tiny.png").exists()
