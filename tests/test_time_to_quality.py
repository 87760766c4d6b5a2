"""experiments/time_to_quality.py's bookkeeping: targets read off a reference curve, the first full-size row at a
target, the table's counts, the refusal of methods that touch the objective, and a real (tiny) benchmark run."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

from experiments import time_to_quality as ttq

FIELDS = ["iteration", "evaluations", "full_evals", "seconds", "phase", "size", "full_size", "total"]


def write_method(out: Path, name: str, rows: list[tuple], status: str = "finished") -> None:
    """rows: (iteration, evaluations, full_evals, full_size, total)."""
    folder = out / name
    folder.mkdir(parents=True)
    with open(folder / "curve.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for it, ev, fe, full, total in rows:
            w.writerow({"iteration": it, "evaluations": ev, "full_evals": fe, "seconds": it * 0.5, "phase": 1 - full,
                        "size": "8x8" if full else "4x4", "full_size": full, "total": total})
    last = rows[-1]
    (folder / "summary.json").write_text(json.dumps({
        "sets": [], "cpu": "test CPU", "load_before": "0", "load_after": "0", "evaluations": last[1],
        "full_evals": last[2], "seconds": last[0] * 0.5, "status": status, "scored_total": last[4]}))


def test_targets_are_the_reference_losses_at_the_asked_iterations(tmp_path):
    write_method(tmp_path, "ref", [(1, 2, 2, 1, 100.0), (2, 3, 3, 1, 50.0), (3, 5, 5, 1, 40.0)])
    got = ttq.targets_of(Namespace(target=[ttq.parse_target("prev=45")], target_from="ref", at=[3, 2]), tmp_path)
    assert got == [("ref@2", 50.0), ("prev", 45.0), ("ref@3", 40.0)]  # lowest last
    assert ttq.targets_of(Namespace(target=None, target_from="ref", at=None), tmp_path) == [("ref@3", 40.0)]
    assert ttq.parse_target("1.5e9") == ("target", 1.5e9)
    with pytest.raises(ttq.argparse.ArgumentTypeError):
        ttq.parse_target("a=b")
    with pytest.raises(SystemExit, match="no iteration 7"):
        ttq.targets_of(Namespace(target=None, target_from="ref", at=[7]), tmp_path)


def test_a_coarse_row_never_counts_as_reaching_the_target(tmp_path):
    # the coarse row's loss is lower than the target but is not the full-size objective
    write_method(tmp_path, "c2f", [(1, 4, 1.0, 0, 10.0), (2, 6, 3.0, 1, 60.0), (3, 8, 5.0, 1, 45.0)])
    curve = ttq.read_curve(tmp_path / "c2f")
    assert ttq.to_target(curve, 50.0)["iteration"] == 3
    assert ttq.to_target(curve, 30.0) is None


def test_table_counts_full_size_evaluations_to_each_target(tmp_path):
    write_method(tmp_path, "ref", [(1, 2, 2, 1, 100.0), (2, 3, 3, 1, 50.0), (3, 5, 5, 1, 40.0)])
    write_method(tmp_path, "fast", [(1, 4, 1.0, 0, 10.0), (2, 6, 3.0, 1, 45.0), (3, 8, 5.0, 1, 39.0)], "cancelled")
    rows = ttq.table(tmp_path, ["ref", "fast"], [("ref@2", 50.0), ("ref@3", 40.0)])
    assert rows[0]["full_evals_to_ref@2"] == 3 and rows[0]["full_evals_to_ref@3"] == 5
    assert rows[1]["full_evals_to_ref@2"] == 3 and rows[1]["evals_to_ref@2"] == 6
    assert rows[1]["full_evals_to_ref@3"] == 5 and rows[1]["vs_last_target"] == pytest.approx(39 / 40)
    md = (tmp_path / "ttq.md").read_text()
    assert "| fast | 3 (6) / 1 | 5 (8) / 2 | 5 / 2 (stopped at target) |" in md
    assert ttq.plot(tmp_path, ["ref", "fast"], [("ref@3", 40.0)], 8).stat().st_size > 1000


def test_a_method_may_not_touch_the_objective():
    ttq.check_method("ok", ["optimizer.history=100", "init.method=content"])
    for bad in (["loss.style_weight=1"], ["image.size=512"], ["precision=bfloat16"], ["history100"]):
        with pytest.raises(SystemExit, match="error: method m"):
            ttq.check_method("m", bad)


@pytest.mark.slow
def test_a_tiny_benchmark_runs_stops_at_its_target_and_plots(tmp_path):
    """Two methods at 64 px: the reference's loss at iteration 8 is the target; history 50 from the content
    photo must reach it, be stopped there, and score its last image."""
    root = Path(__file__).resolve().parents[1]
    base = [sys.executable, "-m", "experiments.time_to_quality", "--config", "configs/oil_landscape.yaml",
            "--size", "64", "--out", str(tmp_path)]
    ref = subprocess.run([*base, "--target-from", "ref", "--at", "8", "--method", "ref", "optimizer.iterations=8"],
                         cwd=root, capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]
    target = ttq.read_curve(tmp_path / "ref")[-1]["total"]
    fast = subprocess.run([*base, "--target-from", "ref", "--at", "8", "--stop-at", str(target), "--method", "ref",
                           "optimizer.iterations=8", "--method", "content", "init.method=content",
                           "optimizer.history=50", "optimizer.iterations=30"],
                          cwd=root, capture_output=True, text=True, timeout=600)
    assert fast.returncode == 0, fast.stderr[-2000:]
    assert "ref: done before, kept" in fast.stdout
    s = json.loads((tmp_path / "content" / "summary.json").read_text())
    assert s["status"] == "cancelled" and s["final_curve_total"] <= target and s["iterations"] < 30
    assert (tmp_path / "content" / "stopped.png").is_file()
    assert s["scored_total"] == pytest.approx(s["final_curve_total"], rel=0.05)  # 8-bit rounding only
    assert (tmp_path / "ttq.png").stat().st_size > 1000 and "| content |" in (tmp_path / "ttq.md").read_text()
