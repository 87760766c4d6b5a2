"""``python -m nst.video`` under bad input (issue 18): the run-folder contract of ``nst.run``.

Never overwrite an input (``--output`` = the clip, a style image, the clip's own folder of frames, a video
no run wrote); a folder lock (a second run into a busy folder is refused); the space checked first and a
full disk mid-run recorded as ``failed`` with one error line; an interrupt that says what it kept; a
truncated run.json called corrupt; kept frames checked (size, marks) before a resume trusts them; corrupt
clips called corrupt, damaged metadata tolerated. Clips are 3-4 frames of 64x40 px, runs 1-2 iterations.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

av = pytest.importorskip("av", reason="the video extra (pip install -e '.[video]') is not installed")
pytest.importorskip("cv2", reason="the video extra (pip install -e '.[video]') is not installed")

from nst.cli import run_main  # noqa: E402
from nst.video.io import frame_name, write_frames_folder, write_video  # noqa: E402
from nst.video.synthetic import sample_clip  # noqa: E402

from conftest import CliResult  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "video_starry.yaml"
FAST = ["precision=float32", "optimizer.xla=false", "model.network=vgg16", "progress.quiet=true",
        "image.size=64", "optimizer.iterations=1", "video.iterations=1"]


def sets(*extra: str) -> list[str]:
    return [a for s in (*FAST, *extra) for a in ("--set", s)]


@pytest.fixture(scope="module")
def clip(data_dir):
    return sample_clip(data_dir, (64, 40), 4)


@pytest.fixture
def clip_dir(tmp_path, clip) -> Path:
    folder = tmp_path / "clip"
    write_frames_folder(clip.frames[:3], folder)
    return folder


def video(argv, capsys) -> CliResult:
    from nst.video.run import main

    capsys.readouterr()
    rc = run_main(main, [str(a) for a in argv])
    out = capsys.readouterr()
    return CliResult(rc, out.out, out.err)


def popen(args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nst.video", *map(str, args)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def wait_for(proc: subprocess.Popen, path: Path, timeout: float = 600) -> None:
    end = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < end, f"{path} never appeared"
        time.sleep(0.05)


# ---------------------------------------------------------------- never overwrite an input


def test_an_output_that_is_an_input_is_refused(tmp_path, clip, clip_dir, capsys, clean_error):
    src = tmp_path / "in.mp4"
    write_video(clip.frames[:3], src, 12)
    before = src.read_bytes()
    clean_error(video([CONFIG, "--input", src, "--output", src, *sets()], capsys), "input clip", "replace")
    # the default output, output_dir/video.mp4, is the input
    inside = tmp_path / "run"
    inside.mkdir()
    shutil.copy(src, inside / "video.mp4")
    clean_error(video([CONFIG, "--input", inside / "video.mp4", *sets(f"output_dir={inside}")], capsys),
                "input clip")
    # a style image named as the output
    style = tmp_path / "style.gif"
    Image.fromarray(clip.frames[0]).save(style)
    clean_error(video([CONFIG, "--input", src, "--output", style, *sets(f"style={style}")], capsys), "style image")
    # the run folder (OUT without its suffix) would be the clip's own folder of frames, or its frames/ inside it
    clean_error(video([CONFIG, "--input", clip_dir, "--output", tmp_path / "clip.mp4", *sets()], capsys),
                "input clip's folder")
    clean_error(video([CONFIG, "--input", clip_dir, *sets(f"output_dir={clip_dir}")], capsys), "input clip's folder")
    assert src.read_bytes() == before and sorted(p.name for p in clip_dir.iterdir()) == [
        frame_name(i) for i in (1, 2, 3)]
    # a video of that name that no run of the folder wrote
    (tmp_path / "mine.mp4").write_bytes(b"my own film")
    clean_error(video([CONFIG, "--input", clip_dir, "--output", tmp_path / "mine.mp4", *sets()], capsys),
                "no earlier run")
    assert (tmp_path / "mine.mp4").read_bytes() == b"my own film"


def test_frames_folder_of_the_run_as_input_is_refused(tmp_path, clip, capsys, clean_error):
    frames = tmp_path / "out" / "frames"
    write_frames_folder(clip.frames[:2], frames)
    clean_error(video([CONFIG, "--input", frames, "--output", tmp_path / "out.mp4", *sets()], capsys),
                "input clip's folder")
    assert len(list(frames.iterdir())) == 2


# ---------------------------------------------------------------- lock, space, write errors, interrupts


def test_a_second_run_into_a_busy_folder_is_refused(tmp_path, clip_dir, capsys, clean_error):
    out = tmp_path / "busy"
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from nst.outputs import prepare_dir; "
                               f"prepare_dir({str(out)!r}); print('held', flush=True); sys.stdin.read()"],
                              cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        clean_error(video([CONFIG, "--input", clip_dir, "--output", tmp_path / "busy.mp4", *sets()], capsys),
                    "in use by another run")
        assert not (out / "frames").exists() and not (out / "run.json").exists()
    finally:
        holder.stdin.close()
        holder.wait(30)


@pytest.fixture
def tmpfs(tmp_path):
    mounted = []

    def mount(size: int) -> Path:
        point = tmp_path / f"tmpfs{len(mounted)}"
        point.mkdir()
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


def test_no_space_from_the_start_is_refused_before_any_frame(tmpfs, clip_dir, capsys, clean_error):
    disk = tmpfs(1 << 20)
    fill(disk)
    clean_error(video([CONFIG, "--input", clip_dir, "--output", disk / "v.mp4", *sets()], capsys), "space")
    assert not (disk / "v" / "frames").exists() and not (disk / "v" / "run.json").exists()
    # room for the lock's reserve, not for the frames of a long clip at a large size
    roomy = tmpfs(2 << 20)
    res = video([CONFIG, "--input", clip_dir, "--output", roomy / "v.mp4", *sets("image.size=1024")], capsys)
    clean_error(res, "not enough space", "MB free")
    assert not (roomy / "v" / "frames").exists() and not (roomy / "v" / "run.json").exists()


@pytest.mark.slow
def test_a_full_disk_mid_run_is_recorded_as_failed(tmpfs, clip, tmp_path):
    clip_dir = tmp_path / "long"
    write_frames_folder([clip.frames[i % 4] for i in range(12)], clip_dir)
    disk = tmpfs(8 << 20)
    out = disk / "v"
    proc = popen([CONFIG, "--input", clip_dir, "--output", disk / "v.mp4", *sets("video.iterations=20")])
    try:
        wait_for(proc, out / "frames" / frame_name(1))
        fill(disk)
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: cannot write") and "No space left" in last, err
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "failed" and "No space left" in record["error"]
    assert not (disk / "v.mp4").exists() and not (out / ".nst-run.lock").exists()
    assert not list(disk.glob(".*.tmp*")) and not list(out.glob(".tmp-*")) and not list((out / "frames").glob(".tmp-*"))


@pytest.mark.slow
def test_an_interrupt_says_which_frames_were_kept(tmp_path, clip):
    clip_dir = tmp_path / "long"
    write_frames_folder([clip.frames[i % 4] for i in range(12)], clip_dir)
    out = tmp_path / "v"
    proc = popen([CONFIG, "--input", clip_dir, "--output", tmp_path / "v.mp4", *sets("video.iterations=20")])
    try:
        wait_for(proc, out / "frames" / frame_name(1))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    record = json.loads((out / "run.json").read_text())
    last = err.strip().splitlines()[-1]
    assert record["status"] == "interrupted" and record["frames_done"] >= 1
    assert "nothing was written" not in err and f"{record['frames_done']} of 12 frames kept" in last, err
    assert not (out / ".nst-run.lock").exists()


# ---------------------------------------------------------------- resuming from what is kept


def _kept_run(tmp_path, clip, clip_dir, vgg16) -> Path:
    """A run folder holding frame 1 of 3 of clip_dir's run (as an interrupted run leaves it)."""
    from nst.config import to_dict
    from nst.video.config import load_video_config
    from nst.video.record import VideoRun

    out = tmp_path / "kept"
    cfg = load_video_config(CONFIG, [f"content={clip_dir}", f"output_dir={out}", *FAST])
    run = VideoRun(out, to_dict(cfg), clip_dir, 3, clip.frames[0].shape[:2])
    run.begin(vgg16[1])
    run.frame_done(1, clip.frames[0], {"iterations": 1})
    run.frame_done(2, clip.frames[1], {"iterations": 1})
    run.write("interrupted")
    run.close()
    return out


def test_a_truncated_run_json_is_called_corrupt(tmp_path, clip, clip_dir, vgg16, capsys, clean_error):
    out = _kept_run(tmp_path, clip, clip_dir, vgg16)
    text = (out / "run.json").read_text()
    (out / "run.json").write_text(text[: len(text) // 2])
    clean_error(video([CONFIG, "--input", clip_dir, "--output", tmp_path / "kept.mp4", *sets()], capsys),
                "corrupt", "--restart")
    assert (out / "frames" / frame_name(1)).exists()
    (out / "run.json").write_text("[1, 2]")
    clean_error(video([CONFIG, "--input", clip_dir, "--output", tmp_path / "kept.mp4", *sets()], capsys), "corrupt")


def test_replaced_kept_frames_are_refused_never_used(tmp_path, clip, clip_dir, vgg16, capsys, clean_error):
    out = _kept_run(tmp_path, clip, clip_dir, vgg16)
    args = [CONFIG, "--input", clip_dir, "--output", tmp_path / "kept.mp4", *sets()]
    second = out / "frames" / frame_name(2)
    original = second.read_bytes()
    # the right marks, the wrong size (a 10x10 picture saved by this tool's own writer)
    from nst.images import save_png

    save_png(np.zeros((10, 10, 3), np.float32), second, {"nst:frame": "2"})
    clean_error(video(args, capsys), frame_name(2), "10x10")
    # the right size, no marks: a picture the user put there
    Image.fromarray(clip.frames[1]).save(second)
    clean_error(video(args, capsys), frame_name(2), "no video run wrote")
    # ... which --restart does not delete either
    clean_error(video([*args, "--restart"], capsys), "no video run wrote")
    assert second.exists() and (out / "frames" / frame_name(1)).exists()
    second.write_bytes(original)  # put back: the run resumes after frame 2
    res = video(args, capsys)
    assert res.rc == 0, res.err
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "finished" and [f["frame"] for f in record["frames"]] == [1, 2, 3]
    assert "resuming after frame 2/3" in res.err


def test_a_torn_losses_csv_line_is_dropped_on_resume(tmp_path, clip, clip_dir, vgg16, capsys):
    out = _kept_run(tmp_path, clip, clip_dir, vgg16)
    from nst.events import CSV_HEADER

    header = ",".join([*CSV_HEADER, "temporal", "phase", "size", "frame"])
    width = len(header.split(","))
    good = ",".join(["1"] * (width - 1) + ["1"])
    (out / "losses.csv").write_text(f"{header}\n{good}\n1,2,3\n{good[:-1]}x\n")
    res = video([CONFIG, "--input", clip_dir, "--output", tmp_path / "kept.mp4", *sets()], capsys)
    assert res.rc == 0, res.err
    rows = (out / "losses.csv").read_text().splitlines()
    assert rows[0] == header and rows[1] == good and all(len(r.split(",")) == width for r in rows)


# ---------------------------------------------------------------- clips that are damaged


def test_corrupt_clips_are_called_corrupt(tmp_path, clip, capsys, clean_error):
    src = tmp_path / "ok.mp4"
    write_video(clip.frames[:4], src, 12)
    data = src.read_bytes()
    at = data.find(b"avcC")
    broken = bytearray(data)
    broken[at + 8:at + 10] = b"\xff\xff"  # the decoder's parameters: FFmpeg says "avcodec_send_packet()"
    cases = {"params.mp4": bytes(broken), "cut.webm": None, "noise.mp4": data[:48] + bytes(range(256)) * 20}
    webm = tmp_path / "full.webm"
    write_video(clip.frames[:4], webm, 12)
    cases["cut.webm"] = webm.read_bytes()[:100]
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        line = clean_error(video([CONFIG, "--input", tmp_path / name, *sets()], capsys), "corrupt", name)
        assert "[Errno" not in line and "avcodec" not in line and "allocate" not in line, line


def test_a_damaged_text_tag_does_not_stop_a_clip(tmp_path, clip, capsys, clean_error):
    """A metadata tag that is no longer UTF-8 (one flipped byte in the encoder's name): the frames decode."""
    src = tmp_path / "tag.mp4"
    write_video(clip.frames[:3], src, 12)
    data = src.read_bytes()
    assert b"Lavf" in data
    src.write_bytes(data.replace(b"Lavf", b"\xffavf", 1))
    res = video([CONFIG, "--input", src, *sets("style=/no/such/style.jpg")], capsys)
    clean_error(res, "style")  # got past the clip: the next check speaks
    assert "clip tag.mp4: 3 frames" in res.err


# ---------------------------------------------------------------- hostile cases found while fixing the above


def _ts(path: Path, w: int, h: int, n: int) -> bytes:
    with av.open(str(path), "w", format="mpegts") as out:
        s = out.add_stream("mpeg2video", rate=12)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            frame = np.random.default_rng(i).integers(0, 255, (h, w, 3)).astype(np.uint8)
            out.mux(s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(s.encode(None))
    return path.read_bytes()


def test_a_clip_that_changes_size_midway_is_refused(tmp_path, capsys, clean_error):
    clip = tmp_path / "joined.ts"  # two recordings back to back: 64x48, then 96x64
    clip.write_bytes(_ts(tmp_path / "a.ts", 64, 48, 3) + _ts(tmp_path / "b.ts", 96, 64, 3))
    clean_error(video([CONFIG, "--input", clip, "--output", tmp_path / "o.mp4", *sets()], capsys), "changes size",
                "96x64")
    assert not (tmp_path / "o").exists()


def test_a_clip_too_long_to_hold_is_refused_while_it_is_read(tmp_path, clip, capsys, clean_error, monkeypatch):
    from nst.video import io

    monkeypatch.setattr(io, "MAX_CLIP_BYTES", 100 * 64 * 40 * 3)  # 100 frames at 64x40, scaled down
    long = tmp_path / "long"
    write_frames_folder([clip.frames[i % 4] for i in range(130)], long)
    clean_error(video([CONFIG, "--input", long, *sets(f"output_dir={tmp_path / 'o'}")], capsys), "video.end_frame",
                "in memory")
    res = video([CONFIG, "--input", long, *sets(f"output_dir={tmp_path / 'o'}", "video.end_frame=90",
                                                 "style=/no/such.jpg")], capsys)
    clean_error(res, "style")  # a part of the clip is fine: the next check speaks
