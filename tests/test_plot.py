"""``python -m nst.plot``: loss curves of synthetic run folders, labels from config differences, the
flattening rule against hand-worked curves, and the one-line errors. No network, no TensorFlow."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from nst.errors import UserError
from nst.plot import config_differences, flattening_point, main, read_losses, run_labels


def write_run(folder, total, style_weight=1000.0, tv=0.0):
    """A run folder as nst.run leaves it: losses.csv (+ run.json with a config)."""
    folder.mkdir(parents=True)
    lines = ["iteration,content,style,tv,total,seconds"]
    for i, t in enumerate(total, 1):
        lines.append(f"{i},{0.3 * t:.6g},{0.7 * t - tv:.6g},{tv:.6g},{t:.6g},{0.1 * i:.3f}")
    (folder / "losses.csv").write_text("\n".join(lines) + "\n")
    config = {"content": "/x/tubingen.jpg", "output_dir": str(folder), "loss": {"style_weight": style_weight},
              "layers": {"content": {"conv4_2": 1.0}}, "progress": {"every": 10}}
    (folder / "run.json").write_text(json.dumps({"status": "finished", "config": config}))
    return folder


@pytest.fixture
def two_runs(tmp_path):
    it = np.arange(1, 101)
    a = write_run(tmp_path / "ratio_1e-3", 1e9 * it ** -1.0 + 1e6)
    b = write_run(tmp_path / "ratio_1e-4", 1e10 * it ** -0.8 + 1e7, style_weight=10000.0, tv=5.0)
    return a, b


def test_two_runs_make_one_png_with_shared_axes(two_runs, tmp_path, capsys):
    out = tmp_path / "plots" / "curves.png"
    assert main([str(two_runs[0]), str(two_runs[1]), "--output", str(out), "--log"]) == 0
    with Image.open(out) as img:
        assert img.width > 800 and img.height > 300
        arr = np.asarray(img.convert("L"), dtype=float)
    assert arr.std() > 10, "the plot is blank"
    assert "wrote" in capsys.readouterr().err


def test_default_output_for_one_run_is_inside_it(two_runs):
    assert main([str(two_runs[0])]) == 0
    assert (two_runs[0] / "loss_curves.png").stat().st_size > 10_000


def test_labels_name_the_folder_and_the_setting_that_differs(two_runs):
    labels = run_labels(list(two_runs))
    assert labels == ["ratio_1e-3 (style_weight=1000)", "ratio_1e-4 (style_weight=10000)"]
    # output_dir and progress differ too, but never change the losses: not labels
    cfgs = [json.loads((d / "run.json").read_text())["config"] for d in two_runs]
    assert config_differences(cfgs) == ["loss.style_weight"]


def test_folder_without_losses_csv_is_a_clean_error(tmp_path, run_cli, clean_error):
    (tmp_path / "empty_run").mkdir()
    res = run_cli([tmp_path / "empty_run", "--output", tmp_path / "x.png"], module="nst.plot", timeout=60)
    clean_error(res, "no losses.csv", "empty_run")
    assert not (tmp_path / "x.png").exists()
    res = run_cli([tmp_path / "nowhere"], module="nst.plot", timeout=60)
    clean_error(res, "not found", "nowhere")


@pytest.mark.parametrize("text, needle", [
    ("", "header"),
    ("iteration,content,style,tv,total,seconds\n", "no iterations"),
    ("iteration,content,style,tv,total,seconds\n1,2,x,0,4,0.1\n", "not a number"),
])
def test_malformed_losses_csv_is_refused(tmp_path, text, needle):
    run = tmp_path / "run"
    run.mkdir()
    (run / "losses.csv").write_text(text)
    with pytest.raises(UserError, match=needle):
        read_losses(run)


def test_flattening_point_by_hand():
    it = np.arange(1, 11)
    # improvements over 1 step: 50%, 50%, 50%, then 1% steps: flat from iteration 4 on (threshold 5%)
    loss = np.array([800, 400, 200, 100, 99, 98, 97, 96, 95, 94], dtype=float)
    assert flattening_point(it, loss, window=1, threshold=0.05) == 4
    # a late burst of progress moves the point past the burst
    late = loss.copy()
    late[7:] = [60, 59, 58]
    assert flattening_point(it, late, window=1, threshold=0.05) == 8
    # window 2 looks two iterations ahead: r(3) = (200 - 99) / 200 is still steep
    assert flattening_point(it, loss, window=2, threshold=0.05) == 4
    # never flat within the run, and runs shorter than the window
    assert flattening_point(it, 0.5 ** it, window=1, threshold=0.05) is None
    assert flattening_point(it[:2], loss[:2], window=5, threshold=0.05) is None


def test_flattening_point_of_a_power_law_scales_with_window_over_threshold():
    # L = i^-p: r(i) ~ p * window / i, so the curve flattens near p * window / threshold
    it = np.arange(1, 1001)
    flat = flattening_point(it, it ** -1.0, window=50, threshold=0.05)
    assert 900 <= flat <= 1000 * 0.96
    flat = flattening_point(it, it ** -0.2, window=50, threshold=0.05)
    assert 150 <= flat <= 210


def test_plot_runs_with_different_term_sets(tmp_path):
    """An nst run (content/style/tv) and a doodle run (style.mrf, style.gram) on shared axes: each where it has data."""
    from nst.plot import plot_runs

    a, b = tmp_path / "nst", tmp_path / "doodle"
    a.mkdir(), b.mkdir()
    (a / "losses.csv").write_text("iteration,content,style,tv,total,seconds,phase,size\n"
                                  "1,2,3,0,5,0.1,0,64x48\n2,1,2,0,3,0.2,0,64x48\n")
    (b / "losses.csv").write_text("iteration,content,style,tv,total,seconds,style.mrf,style.gram,phase,size\n"
                                  "1,0,3,1,4,0.1,2,1,0,64x48\n2,0,2,1,3,0.2,1.5,0.5,0,64x48\n")
    out = plot_runs([a, b], tmp_path / "cmp.png")
    assert out.stat().st_size > 1000
