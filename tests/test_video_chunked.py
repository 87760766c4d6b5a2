"""``python -m nst.video`` in chunks (nst.video.chunked, nst.video.chunk_pool): the schedule (later chunks wait only
for the key frame), the chunk keys' bad input as one error line, a cancelled run that keeps its frames and never
writes a joined clip or a video, its resume redoing nothing, and the chunks on a local Ray with a worker killed
mid-frame (the frame redone, the clip the one a run here makes). The network is a stub (a fixed 1x1 conv,
tests/test_video_chunks.py) on 32x24 frames; no VGG runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cv2", reason="the video extra (pip install -e '.[video]') is not installed")
pytest.importorskip("av", reason="the video extra (pip install -e '.[video]') is not installed")

from nst.cli import run_main  # noqa: E402
from nst.events import Control  # noqa: E402
from nst.video.chunks import Schedule, Step, chunk_ranges, plan  # noqa: E402
from nst.video.io import frame_name, write_frames_folder  # noqa: E402

from conftest import CliResult  # noqa: E402
from test_video_chunks import StubSource  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "video_starry.yaml"
SETS = ["image.size=32", "precision=float32", "optimizer.xla=false", "optimizer.iterations=3", "video.iterations=2",
        "layers.content={conv1_1: 1.0}", "layers.style={conv1_1: 1.0}", "model.network=vgg16",
        "progress.quiet=true", "video.chunk_length=4", "video.chunk_overlap=1"]


def test_later_chunks_wait_only_for_the_key_frame():
    ranges = chunk_ranges(10, 4, 1)  # [(0, 4), (3, 7), (6, 10)]
    s = Schedule(plan(ranges, "key"))
    assert s.total == 12 and s.ready() == [Step(0, 0, None, 0)]
    s.finish(s.ready()[0], np.zeros(1))
    assert s.ready() == [Step(0, 1, 0, 0), Step(1, 3, 0, 0), Step(2, 6, 0, 0)]  # all warped from the key frame
    s.running.add(Step(1, 3, 0, 0))
    assert Step(1, 3, 0, 0) not in s.ready()
    s.finish(Step(1, 3, 0, 0), np.zeros(1))
    assert Step(1, 4, 3, 1) in s.ready()
    init = Schedule(plan(ranges, "init"))
    assert init.ready() == [Step(0, 0, None, 0), Step(1, 3, None, 1), Step(2, 6, None, 2)]


def _video(argv, capsys) -> CliResult:
    from nst.video.run import main

    capsys.readouterr()
    rc = run_main(main, [str(a) for a in argv])
    out = capsys.readouterr()
    return CliResult(rc, out.out, out.err)


@pytest.mark.parametrize("bad,needle", [
    ("video.chunk_length=1", "video.chunk_length' must be 0 (no chunks) or at least 2"),
    ("video.chunk_length=-3", "video.chunk_length' must be 0"),
    ("video.chunk_overlap=-1", "video.chunk_overlap' must not be negative"),
    ("video.chunk_overlap=2", "video.chunk_overlap' (2) must be at most 1 for video.chunk_length 4"),
])
def test_bad_chunk_keys_are_one_error_line(tmp_path, capsys, clean_error, bad, needle):
    out = tmp_path / "out"
    argv = [CONFIG, "--input", tmp_path / "clip", "--output", tmp_path / "out.mp4"]
    clean_error(_video([*argv, *[a for s in (*SETS, bad) for a in ("--set", s)]], capsys), needle)
    assert not out.exists()


def test_contradicting_where_flags_are_refused_first(tmp_path, capsys, clean_error):
    r = _video([CONFIG, "--input", tmp_path / "nope", "--ray", "--local"], capsys)
    clean_error(r, "contradicts --ray")


@pytest.fixture
def clip(tmp_path, data_dir):
    from nst.video.synthetic import sample_clip

    folder = tmp_path / "clip"
    write_frames_folder(sample_clip(data_dir, (32, 24), 6).frames, folder)
    return folder


def _cfg(clip, out, *extra):
    """The defaults (their layers merge with --set, the shipped config's would keep conv4_2) on the stub's layer."""
    from nst.video.config import load_video_config

    style = REPO.parent / "shared" / "data" / "style" / "starry_night.jpg"
    return load_video_config(None, [f"content={clip}", f"style={style}", f"output_dir={out}", *SETS, *extra])


def _frames(folder: Path) -> list[np.ndarray]:
    from nst.images import read_image

    return [read_image(p, "frame") for p in sorted(folder.glob("frame_*.png"))]


def test_a_cancelled_chunked_run_keeps_its_frames_writes_no_clip_and_resumes(tmp_path, clip):
    from nst.video.run import execute

    whole = execute(_cfg(clip, tmp_path / "whole"), tmp_path / "whole.mp4", source=StubSource())
    assert whole["status"] == "finished" and whole["frames_chunked"] == 7  # chunks 1..4 and 4..6
    out, control, seen = tmp_path / "cut", Control(), []

    def stop_at_fourth_frame(ev):
        if ev.iteration == 1:
            seen.append(ev)
            if len(seen) == 4:
                control.cancel()

    control.subscribers.append(stop_at_fourth_frame)
    cut = execute(_cfg(clip, out), tmp_path / "cut.mp4", control=control, source=StubSource())
    # the run.json of a cancelled clip counts what its chunk folders hold (the cancel lands at the 4th frame's
    # first event; the frames before it are kept)
    kept = {p: p.stat().st_mtime_ns for p in out.glob("chunks/*/frames/*.png")}
    assert cut["status"] == "cancelled" and 1 <= cut["frames_chunked"] == len(kept) < whole["frames_chunked"]
    assert sum(c["done"] for c in cut["chunks"]) == len(kept)
    assert not (tmp_path / "cut.mp4").exists() and not list((out / "frames").glob("*.png"))  # nothing joined
    again = execute(_cfg(clip, out), tmp_path / "cut.mp4", source=StubSource())
    assert again["status"] == "finished" and (tmp_path / "cut.mp4").is_file()
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # finished frames were not redone
    for a, b in zip(_frames(out / "frames"), _frames(tmp_path / "whole" / "frames"), strict=True):
        np.testing.assert_array_equal(a, b)  # resumed = uninterrupted
    record = json.loads((out / "run.json").read_text())
    assert record["chunks"] == [{"frames": [1, 4], "done": 4}, {"frames": [4, 6], "done": 3}]


def test_each_frame_reports_its_iterations_once_into_its_own_chunk(tmp_path, clip):
    """Run here, a frame's events once went out live *and* again when it finished (the live copy into the
    chunk of the frame before): every event now goes out once, into the losses.csv of its frame's chunk."""
    import csv

    from nst.video.run import execute

    out, control, seen = tmp_path / "once", Control(), []
    control.subscribers.append(seen.append)
    record = execute(_cfg(clip, out), tmp_path / "once.mp4", control=control, source=StubSource())
    assert record["status"] == "finished"
    rows = {c.name: list(csv.DictReader((c / "losses.csv").open())) for c in sorted((out / "chunks").iterdir())}
    assert sorted(rows) == ["01", "02"]
    for name, chunk_rows in rows.items():
        frames = [int(r["frame"]) for r in chunk_rows]
        assert frames == sorted(frames), name  # in frame order: no row of another chunk's frame in between
        done = {f["frame"]: f["iterations"] for f in json.loads((out / "chunks" / name / "run.json").read_text())["frames"]}
        assert set(frames) == set(done), name
        for f, n in done.items():  # one row per iteration the frame's record says it ran (the stub stops early)
            its = [int(r["iteration"]) for r in chunk_rows if int(r["frame"]) == f]
            assert its == list(range(1, n + 1)), (name, f, its)
    assert len(seen) == sum(len(r) for r in rows.values())  # the caller saw each row once
    assert sum(ev.iteration == 1 for ev in seen) == record["frames_chunked"] == 7


@pytest.mark.ray
def test_chunked_cli_on_ray_redoes_the_frame_of_a_killed_worker(tmp_path, clip, capsys):
    ray = pytest.importorskip("ray")
    import test_video_chunks

    from nst.cluster import Where
    from nst.video.run import execute

    here = execute(_cfg(clip, tmp_path / "here"), tmp_path / "here.mp4", source=StubSource())
    ray.cloudpickle.register_pickle_by_value(test_video_chunks)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        capsys.readouterr()
        marker = tmp_path / "died"
        done = execute(_cfg(clip, tmp_path / "ray"), tmp_path / "ray.mp4", where=Where(ray=True, max_parallel=2),
                       source=StubSource(die=str(marker)))
    finally:
        if started_here:
            ray.shutdown()
    err = capsys.readouterr().err
    assert marker.exists() and "a worker died during frame" in err, err
    assert done["status"] == "finished" and done["retried_frames"] == 1
    assert len(_frames(tmp_path / "ray" / "frames")) == here["frames_total"] == 6
    for a, b in zip(_frames(tmp_path / "ray" / "frames"), _frames(tmp_path / "here" / "frames"), strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 2  # 1 thread there, more here: float rounding
    assert frame_name(1) in {p.name for p in (tmp_path / "ray" / "chunks" / "02" / "frames").iterdir()}
