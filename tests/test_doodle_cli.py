"""``python -m doodle.run``: bad inputs give one ``error:`` line and exit 2 before the output folder is
touched; a scale-only map mismatch is resized with a note; no maps means texture synthesis; a finished run
leaves nst's output contract plus labels.png (Champandard 2016 neural doodles)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nst.images import png_text

DOODLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "doodle"
STARRY = DOODLE.parent / "style" / "starry_night.jpg"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = ["image.size=64", "optimizer.iterations=3", "doodle.phases=1", "progress.quiet=true", "model.download=false"]


@pytest.fixture
def doodle_cli(capsys):
    """doodle_cli(argv) -> CliResult of nst.cli.run_main(doodle.run.main, argv) in this process."""
    from conftest import CliResult
    from doodle.run import main
    from nst.cli import run_main

    def run(argv: list):
        capsys.readouterr()
        rc = run_main(main, [str(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(rc, captured.out, captured.err)

    return run


def coastline_args(out: Path, *sets: str) -> list[str]:
    args = [CONFIGS / "doodle_coastline.yaml", "--output", out]
    for s in (*TINY, *sets):
        args += ["--set", s]
    return args


def save(rgb: np.ndarray, path: Path) -> Path:
    Image.fromarray(rgb.astype(np.uint8)).save(path)
    return path


def monet_map() -> np.ndarray:
    return np.asarray(Image.open(DOODLE / "Monet_sem.png").convert("RGB"))


# ---------------------------------------------------------------- bad inputs


def _bad_maps(tmp: Path) -> dict[str, tuple[list[str], tuple[str, ...]]]:
    """case -> (--set overrides, words the error line must hold)."""
    cropped = save(monet_map()[:, :400], tmp / "cropped_sem.png")  # 400x384 vs Monet's 512x384
    doodle = np.asarray(Image.open(DOODLE / "Coastline_sem.png").convert("RGB")).copy()
    doodle[20:140, 150:330] = (128, 0, 128)  # purple: no such region in Monet's map
    purple = save(doodle, tmp / "purple_sem.png")
    flat = save(np.full((384, 512, 3), 255), tmp / "white_sem.png")
    broken = tmp / "broken_sem.png"
    broken.write_text("not a png", encoding="utf-8")
    return {
        "aspect ratio": ([f"doodle.style_map={cropped}"], ("style_map (cropped_sem.png)", "400x384", "aspect")),
        "empty label": ([f"doodle.target_map={purple}"], ("#800080", "no counterpart")),
        "photo as map": ([f"doodle.target_map={DOODLE / 'Monet.jpg'}"], ("does not look like a semantic map",)),
        "one colour": ([f"doodle.style_map={flat}"], ("one colour", "#ffffff")),
        "unreadable": ([f"doodle.target_map={broken}"], ("doodle.target_map", "broken_sem.png", "not an image")),
        "missing": ([f"doodle.style_map={tmp / 'nope_sem.png'}"], ("doodle.style_map", "not found", "nope_sem.png")),
    }


@pytest.mark.parametrize("case", ["aspect ratio", "empty label", "photo as map", "one colour", "unreadable",
                                  "missing"])
def test_bad_map_is_one_error_line_and_exit_2(case, tmp_path, doodle_cli, clean_error):
    sets, needles = _bad_maps(tmp_path)[case]
    out = tmp_path / "out"
    res = doodle_cli(coastline_args(out, *sets))
    clean_error(res, *needles, out_dir=out)
    assert not out.exists(), "the output folder was touched before the inputs were checked"


def test_bad_config_value_is_one_error_line(tmp_path, doodle_cli, clean_error):
    out = tmp_path / "out"
    res = doodle_cli(coastline_args(out, "doodle.phases=5"))  # 64 px in 5 phases: 4 px first
    clean_error(res, "doodle.phases", out_dir=out)
    assert not out.exists()


# ---------------------------------------------------------------- runs that go through


def test_no_maps_at_all_runs_texture_synthesis(tmp_path, doodle_cli):
    out = tmp_path / "out"
    res = doodle_cli([CONFIGS / "doodle_coastline.yaml", "--output", out, "--set", f"style={STARRY}",
                      "--set", "doodle.target_map=null", *sum((["--set", s] for s in TINY), [])])
    assert res.rc == 0, res.err
    assert "texture synthesis" in res.err
    assert (out / "result.png").is_file() and not (out / "labels.png").exists()
    assert json.loads((out / "run.json").read_text())["labels"] is None


def test_run_writes_the_output_contract_and_resizes_a_scaled_map(tmp_path, run_cli):
    """Subprocess: the real entry point. Monet's map at half size is resized with a note."""
    half = save(np.asarray(Image.fromarray(monet_map()).resize((256, 192), Image.NEAREST)), tmp_path / "half_sem.png")
    out = tmp_path / "out"
    res = run_cli(coastline_args(out, f"doodle.style_map={half}", "snapshots=[2]", "optimizer.iterations=3"),
                  module="doodle.run")
    assert res.rc == 0, res.err
    assert "Traceback" not in res.err
    assert "resized from 256x192 to 512x384" in res.err
    assert "5 labels over style_map, target_map" in res.err and "#ff331f" in res.err  # palette and shares
    assert "network: vgg" in res.err
    for name in ("result.png", "iter_0002.png", "losses.csv", "run.json", "labels.png"):
        assert (out / name).is_file(), name
    with open(out / "losses.csv", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    # the fixed columns, then the patch method's own terms (open term set), then the scale of each row
    assert rows[0] == ["iteration", "content", "style", "tv", "total", "seconds", "style.mrf", "style.gram", "phase",
                       "size"] and len(rows) >= 2
    for r in rows[1:]:
        assert float(r[2]) == pytest.approx(float(r[6]) + float(r[7]), rel=1e-4)  # style = mrf + gram
        assert float(r[6]) > 0 and float(r[7]) > 0
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "finished" and info["method"] == "patch"
    assert info["labels"]["palette"][:2] == ["#ffffff", "#ff331f"]
    assert info["config"]["doodle"]["style_map"] == str(half)
    assert Image.open(out / "result.png").size == (64, 48)
    assert "doodle:" in png_text(out / "result.png")["nst:config"]


def test_defaults_and_print_config(tmp_path, doodle_cli):
    res = doodle_cli(["--defaults"])
    assert res.rc == 0 and "semantic_weight:" in res.out and "patch_layers:" in res.out
    res = doodle_cli([CONFIGS / "doodle_portrait.yaml", "--print-config"])
    assert res.rc == 0 and "Freddie.jpg" in res.out
