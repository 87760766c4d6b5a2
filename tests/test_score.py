"""``python -m nst.score``: the grader's loss equals the optimiser's (losses.csv), it ranks a longer run
better than its own early snapshot, it finds (or says it lacks) the reference run, and errors are one line.

One small real run (64 px, 50 L-BFGS iterations, snapshots 5 and 50) is shared by the module.
Tolerance: scoring result.png re-reads an 8-bit PNG of the float image the optimiser last evaluated;
measured differences to the last losses.csv row are about 0.01-0.05 % of the total (64-96 px), so
0.5 % is asserted. In process, scoring the exact float image matches the progress event to 1e-5.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest


pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CONTENT, STYLE = DATA / "content" / "tubingen.jpg", DATA / "style" / "starry_night.jpg"
PNG_TOLERANCE = 5e-3  # relative, total loss: 8-bit rounding of result.png (measured <= 5e-4)


def last_row(run_dir: Path) -> dict[str, float]:
    with open(run_dir / "losses.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {k: float(v) for k, v in rows[-1].items() if k != "size"}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, run_cli):
    """(config path, run dir): a finished 64 px, 50-iteration run whose config's output_dir is the run dir."""
    folder = tmp_path_factory.mktemp("score")
    run_dir = folder / "run"
    cfg = folder / "run.yaml"
    cfg.write_text(f"content: {CONTENT}\nstyle: {STYLE}\noutput_dir: {run_dir}\nmodel:\n  network: vgg16\nimage:\n  size: 64\n"
                               "optimizer:\n  iterations: 50\nsnapshots: [5, 50]\nprogress:\n  quiet: true\n")
    res = run_cli([cfg], timeout=600)
    assert res.rc == 0, res.err
    assert (run_dir / "result.png").is_file() and (run_dir / "iter_0005.png").is_file()
    return cfg, run_dir


@pytest.fixture(scope="module")
def scored(small_run, run_cli):
    """The JSON of one ``nst.score --json`` call on the run's result and its 5-iteration snapshot."""
    cfg, run_dir = small_run
    res = run_cli([run_dir / "result.png", run_dir / "iter_0005.png", "--config", cfg, "--json"],
                  module="nst.score", timeout=300)
    assert res.rc == 0, res.err
    return json.loads(res.out)


def test_score_of_result_png_is_the_last_losses_csv_row(scored, small_run):
    final = last_row(small_run[1])
    got = scored["images"][0]["losses"]
    assert got["total"] == pytest.approx(final["total"], rel=PNG_TOLERANCE)
    for term in ("content", "style"):
        assert got[term] == pytest.approx(final[term], rel=2 * PNG_TOLERANCE), term
    assert got["total"] == pytest.approx(got["content"] + got["style"] + got["tv"], rel=1e-6)
    assert scored["images"][0]["resized_from"] is None
    assert scored["network"] == "vgg16" and scored["size"] == [64, 48]


def test_score_ranks_the_longer_run_better_than_its_early_snapshot(scored, small_run):
    result, early = (s["losses"]["total"] for s in scored["images"])
    assert result < early
    snapshot_row = [r for r in csv.DictReader(open(small_run[1] / "losses.csv")) if r["iteration"] == "5"][0]
    assert early == pytest.approx(float(snapshot_row["total"]), rel=PNG_TOLERANCE)


def test_the_configs_output_dir_is_the_reference(scored, small_run):
    ref = scored["reference"]
    assert ref["run_dir"] == str(small_run[1]) and ref["status"] == "finished" and ref["iteration"] == 50
    assert ref["losses"]["total"] == pytest.approx(last_row(small_run[1])["total"], rel=1e-5)
    assert ref["config_differences"] == []


def test_table_says_when_no_reference_is_found_and_resizes(small_run, run_cli, tmp_path):
    from PIL import Image

    cfg, run_dir = small_run
    big = tmp_path / "student.png"
    Image.open(run_dir / "result.png").resize((128, 96)).save(big)
    res = run_cli([big, "--config", cfg, "--set", f"output_dir={tmp_path / 'no_such_run'}"],
                  module="nst.score", timeout=300)
    assert res.rc == 0, res.err
    assert "reference run: none found" in res.out
    assert "resized from 128x96 to 64x48" in res.out
    lines = {ln.split()[0]: ln.split()[1:] for ln in res.out.splitlines() if ln.split()}
    assert set(lines) >= {"content", "style", "tv", "total"}
    assert float(lines["total"][0]) > 0


def test_explicit_reference_with_other_settings_is_flagged(small_run, capsys):
    from nst.cli import run_main
    from nst.score import main

    cfg, run_dir = small_run
    rc = run_main(main, [str(run_dir / "result.png"), "--config", str(cfg), "--set", "loss.style_weight=100.0",
                         "--reference", str(run_dir)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "warning: the reference ran with other settings (loss.style_weight)" in out


def test_in_process_score_equals_the_optimisers_event(vgg16):
    """The exact float image of an iteration scores what the optimiser logged for it."""
    from nst.config import load_config
    from nst.inputs import load_inputs
    from nst.score import Scorer
    from nst.events import Control
    from nst.recipe import TransferRecipe
    from nst.transfer import make_extractors, stylize

    weights, info = vgg16
    cfg = load_config(None, [f"content={CONTENT}", f"style={STYLE}", "model.network=vgg16", "image.size=48",
                             "optimizer.iterations=4", "loss.tv_weight=0.001"])
    content, styles, _ = load_inputs(cfg)
    extractors = make_extractors(TransferRecipe.of(cfg, info.network), weights)
    events = []
    stylize(content, styles, cfg, extractors=extractors, control=Control([events.append]))
    scorer = Scorer(cfg, content, styles, extractors())
    for ev in (events[0], events[-1]):
        got = scorer(ev.image)
        for term in ("content", "style", "tv", "total"):
            assert got[term] == pytest.approx(getattr(ev, term), rel=1e-5), (ev.iteration, term)
    assert events[-1].total < events[0].total


@pytest.mark.parametrize("case", ["missing image", "image is a folder", "bad config key", "missing reference"])
def test_errors_are_one_line_with_exit_2(case, small_run, run_cli, clean_error, tmp_path):
    cfg, run_dir = small_run
    args = {
        "missing image": ([tmp_path / "nope.png", "--config", cfg], ("not found", "nope.png")),
        "image is a folder": ([tmp_path, "--config", cfg], ("folder",)),
        "bad config key": ([run_dir / "result.png", "--config", cfg, "--set", "loss.style_weigth=1.0"],
                           ("style_weigth", "did you mean")),
        "missing reference": ([run_dir / "result.png", "--config", cfg, "--reference", tmp_path / "gone"],
                              ("reference", "not found")),
    }[case]
    res = run_cli(args[0], module="nst.score", timeout=120)
    clean_error(res, *args[1])
    assert res.out == ""


def test_config_file_errors_too(run_cli, clean_error, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("content: [unclosed\n")
    clean_error(run_cli([tmp_path / "x.png", "--config", bad], module="nst.score", timeout=60), "not valid YAML")
    clean_error(run_cli([tmp_path / "x.png", "--config", tmp_path / "none.yaml"], module="nst.score", timeout=60),
                "config file not found")

