"""Bad input through the CLI: exit code 2, exactly one ``error:`` line naming the problem, no traceback,
no result.png — and, for everything refused before the run starts, the output folder left untouched.

Config errors are refused before TensorFlow is imported (about half a second each), so they run as real
subprocesses. Image, weights, layer and output-folder errors come after the TF import; most of those run
in-process through nst.cli.run_main (the same code the CLI's ``__main__`` calls), and a few of them again as
real subprocesses, which also proves that no warning or TF chatter adds lines to stderr.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CONTENT = DATA / "content" / "tubingen.jpg"
STYLE = DATA / "style" / "starry_night.jpg"

# A complete, small run; vgg16 (the weights every machine can get, see ../shared/WEIGHTS.md) so that no
# VGG19 download is attempted.
FAST_SETTINGS = ["model.network=vgg16", "image.size=64", "optimizer.iterations=3", "snapshots=[]",
                 "progress.quiet=true"]


def sets(*settings: str) -> list[str]:
    args = []
    for s in [*FAST_SETTINGS, *settings]:
        args += ["--set", s]
    return args


def huge_png(path: Path, side: int = 12000) -> Path:
    """A 1-bit side x side PNG: ~20 KB on disk, side^2 pixels decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = (b"\x00" + b"\x00" * ((side + 7) // 8)) * side
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))
    return path


def half_of(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


# ---------------------------------------------------------------- config errors: real subprocesses

CONFIG_CASES = {
    # name: (extra YAML, --set settings, words the error must contain)
    "bad_yaml": ("optimizer: {iterations: 5\n", [], ["run.yaml", "not valid YAML", "line"]),
    "unknown_key": ("optimizer:\n  iteratons: 5\n", [], ["optimizer.iteratons", "did you mean 'optimizer.iterations'"]),
    "unknown_key_set": ("", ["loss.style_weigth=3"], ["loss.style_weigth", "did you mean 'loss.style_weight'"]),
    "wrong_type": ("", ["optimizer.iterations=many"], ["'optimizer.iterations'", "int"]),
    "negative_weight": ("", ["loss.style_weight=-5"], ["'loss.style_weight'", "negative"]),
    "negative_layer_weight": ("", ["layers.style={conv1_1: -1}"], ["'layers.style.conv1_1'", "negative"]),
    "zero_iterations": ("", ["optimizer.iterations=0"], ["'optimizer.iterations'", "at least 1"]),
    "bad_choice": ("", ["model.pooling=mean"], ["'model.pooling'", "avg, max"]),
    "snapshot_zero": ("", ["snapshots=[0, 5]"], ["'snapshots'", "[0]"]),
    "size_too_small": ("", ["image.size=8"], ["'image.size'"]),
    "no_style": ("", ["style=[]"], ["'style'"]),
    "history_zero": ("", ["optimizer.history=0"], ["'optimizer.history'", "at least 1"]),
    "history_negative": ("optimizer:\n  history: -3\n", [], ["'optimizer.history'", "-3"]),
    "unknown_parameterization": ("", ["optimizer.parameterization=wavelet"], ["'optimizer.parameterization'",
                                                                            "pixels, laplacian", "wavelet"]),
    "pyramid_levels_zero": ("", ["optimizer.pyramid_levels=0"], ["'optimizer.pyramid_levels'", "1..8"]),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_config_errors_subprocess(case, tmp_path, make_config, run_cli, clean_error):
    text, settings, needles = CONFIG_CASES[case]
    cfg = make_config(text)
    out = tmp_path / "out"
    res = run_cli([cfg, "--output", out, *sets(*settings)], timeout=120)
    line = clean_error(res, *needles, out_dir=out)
    assert res.err.strip() == line, "nothing but the error line"
    assert not out.exists(), "a refused config must not touch the output folder"


def test_missing_config_file_subprocess(tmp_path, run_cli, clean_error):
    res = run_cli([tmp_path / "nope.yaml", "--output", tmp_path / "out"], timeout=120)
    clean_error(res, "config file not found", "nope.yaml", out_dir=tmp_path / "out")


# ---------------------------------------------------------------- input errors: in-process


def bad_inputs(tmp: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (--set settings, words the error must contain); files are made here."""
    (tmp / "notes.jpg").write_text("these are my holiday notes, not a photo\n")
    (tmp / "empty.png").write_bytes(b"")
    half_of(CONTENT, tmp / "half.jpg")
    with Image.open(CONTENT) as img:
        img.save(tmp / "full.png")
    half_of(tmp / "full.png", tmp / "half.png")
    Image.new("RGB", (2000, 20), "navy").save(tmp / "strip.png")
    (tmp / "folder.jpg").mkdir()
    (tmp / "junk.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"junk" * 1000)
    (tmp / "junk.onnx").write_bytes(b"\x08\x07" + b"junk" * 1000)
    (tmp / "weights.txt").write_text("no")
    (tmp / "afile").write_text("a regular file, not a folder")
    return {
        "missing_content": ([f"content={tmp / 'gone.jpg'}"], ["content image not found", "gone.jpg"]),
        "missing_style": ([f"style={tmp / 'gone_style.jpg'}"], ["style image not found", "gone_style.jpg"]),
        "not_an_image": ([f"content={tmp / 'notes.jpg'}"], ["notes.jpg", "not an image"]),
        "truncated_jpeg": ([f"content={tmp / 'half.jpg'}"], ["half.jpg", "truncated"]),
        "truncated_png": ([f"style={tmp / 'half.png'}"], ["style image", "half.png", "truncated"]),
        "empty_file": ([f"content={tmp / 'empty.png'}"], ["empty.png", "empty file"]),
        "folder": ([f"content={tmp / 'folder.jpg'}"], ["folder.jpg", "folder"]),
        "pixel_limit": (["image.max_input_pixels=10000"], ["tubingen.jpg", "max_input_pixels", "10,000"]),
        "extreme_aspect": ([f"content={tmp / 'strip.png'}"], ["strip.png", "64x1", "16 px"]),
        "extreme_aspect_style": ([f"style={tmp / 'strip.png'}"], ["style image strip.png", "16 px"]),
        "missing_init": (["init.method=file", f"init.path={tmp / 'no_init.png'}"], ["init image", "no_init.png"]),
        "unknown_layer": (["layers.style={conv1_1: 1, conv5_4: 1}"], ["conv5_4", "vgg16", "did you mean"]),
        "junk_h5": ([f"model.weights={tmp / 'junk.h5'}"], ["junk.h5", "MD5", "wrong or corrupt"]),
        "junk_onnx": ([f"model.weights={tmp / 'junk.onnx'}"], ["junk.onnx", "SHA-256", "wrong or corrupt"]),
        "onnx_for_vgg19": (["model.network=vgg19", f"model.weights={tmp / 'junk.onnx'}"], ["junk.onnx", "vgg19"]),
        "missing_weights": ([f"model.weights={tmp / 'none.h5'}"], ["weights file not found", "none.h5"]),
        "weights_suffix": ([f"model.weights={tmp / 'weights.txt'}"], ["weights.txt", ".h5"]),
        "output_under_file": ([f"output_dir={tmp / 'afile' / 'run'}"], ["output dir", "afile", "not writable"]),
    }


BAD_INPUT_NAMES = [
    "missing_content", "missing_style", "not_an_image", "truncated_jpeg", "truncated_png", "empty_file", "folder",
    "pixel_limit", "extreme_aspect", "extreme_aspect_style", "missing_init", "unknown_layer", "junk_h5",
    "junk_onnx", "onnx_for_vgg19", "missing_weights", "weights_suffix", "output_under_file"]


def test_case_list_is_complete(tmp_path):
    assert sorted(bad_inputs(tmp_path)) == sorted(BAD_INPUT_NAMES)


@pytest.mark.parametrize("case", BAD_INPUT_NAMES)
def test_input_errors_inprocess(case, tmp_path, make_config, run_inprocess, clean_error):
    settings, needles = bad_inputs(tmp_path)[case]
    cfg = make_config(name="cfg.yaml")
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.png").write_bytes(b"an earlier run's result")  # must survive a refused run
    if case == "output_under_file":
        out = Path(settings[0].split("=", 1)[1])
    res = run_inprocess([cfg, *sets(f"output_dir={out}", *settings)])
    clean_error(res, *needles)
    if case != "output_under_file":
        assert (out / "result.png").read_bytes() == b"an earlier run's result", "refused before touching output"
        assert sorted(p.name for p in out.iterdir()) == ["result.png"]
    assert res.out == ""


# ---------------------------------------------------------------- input errors: real subprocesses


def test_huge_image_subprocess(tmp_path, make_config, run_cli, clean_error):
    """12000 x 12000 px in a 20 KB PNG: refused from its header; PIL's own bomb warning is not printed."""
    big = huge_png(tmp_path / "huge.png")
    cfg = make_config(f"content: {big}\n")
    out = tmp_path / "out"
    res = run_cli([cfg, "--output", out, *sets()], timeout=300)
    line = clean_error(res, "huge.png", "12000x12000", "max_input_pixels", out_dir=out)
    assert res.err.strip() == line, "nothing but the error line (no DecompressionBombWarning, no TF log)"
    assert not out.exists()


def test_truncated_image_subprocess(tmp_path, make_config, run_cli, clean_error):
    cut = half_of(STYLE, tmp_path / "cut_style.jpg")
    cfg = make_config(f"style: {cut}\n")
    out = tmp_path / "out"
    res = run_cli([cfg, "--output", out, *sets()], timeout=300)
    line = clean_error(res, "cut_style.jpg", "truncated", out_dir=out)
    assert res.err.strip() == line
    assert not out.exists()


def test_unwritable_output_subprocess(tmp_path, make_config, run_cli, clean_error):
    """Found last, after the images and the weights have loaded: an output folder under a regular file
    (chmod would not stop root)."""
    (tmp_path / "afile").write_text("a file")
    cfg = make_config()
    res = run_cli([cfg, "--output", tmp_path / "afile" / "run", *sets()], timeout=300)
    clean_error(res, "output dir", "afile", "not writable")
    assert (tmp_path / "afile").read_text() == "a file"
