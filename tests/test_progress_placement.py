"""The whole job's progress (time left from the plan, tile and pass) as the terminal and the studio see it, and
the studio's placement flags (where a print's tiles run): issue 21's "one way to say where it runs"."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from nst.events import Control, Progress
from nst.plan import seconds_left


def test_time_left_counts_pixel_iterations_still_to_do():
    work = [(100, 10), (400, 10)]  # a coarse scale 4x cheaper an iteration than the fine one
    # 5 coarse iterations in 5 s: 500 of 5000 pixel-iterations done -> 4500 left at 0.01 s each
    assert seconds_left(work, 0, 5, 5.0) == pytest.approx(45.0)
    # 5 fine iterations more (25 s in all): 1000 + 2000 done, 2000 left
    assert seconds_left(work, 1, 15, 25.0) == pytest.approx(25.0 / 3000 * 2000)
    assert seconds_left(work, 1, 20, 40.0) == 0.0
    assert seconds_left([], 0, 4, 8.0) == 0.0 and seconds_left(work, 5, 10, 10.0) == pytest.approx(10.0)


@pytest.mark.slow
def test_engine_events_carry_the_time_left_and_it_ends_at_zero(make_config, tmp_path, vgg16):
    from nst.config import load_config
    from nst.run import execute

    cfg = load_config(make_config("scales:\n  - {size: 0.5, iterations: 3}\n  - {size: 1.0, iterations: 3}\n"
                                  "image: {size: 64}\nprecision: float32\noptimizer: {xla: false, iterations: 6}\n"
                                  "progress: {quiet: true}\n"), [f"output_dir={tmp_path / 'out'}"])
    seen: list[Progress] = []
    record = execute(cfg, loaded_weights=vgg16, control=Control().subscribe(seen.append))
    assert record["status"] == "finished" and len(seen) == 6
    left = [ev.seconds_left for ev in seen]
    assert all(x >= 0 for x in left) and left[-1] == 0.0
    assert left[2] > 0  # after the coarse scale the fine one is still to do
    # the estimate is the plan's: the fine scale's 3 iterations cost 4x the coarse scale's a step
    ev = seen[2]
    assert left[2] == pytest.approx(ev.seconds / (3 * 32 * 24) * (3 * 64 * 48), rel=1e-6)


class _Kind:
    """A kind whose execute emits one tiled iteration and records how it was called (no network)."""

    def __init__(self):
        self.kwargs = None

    def execute(self, cfg, **kwargs):
        self.kwargs = kwargs
        img = np.zeros((8, 8, 3), np.float32)
        kwargs["control"].emit(Progress(7, {"content": 1.0}, 1.0, 3.0, img, 20, 1, 2, tile=3, tiles=12,
                                        tile_pass=2, tile_passes=2, seconds_left=42.0))
        return {"status": "finished", "stop_reason": "done"}


@pytest.mark.parametrize("parallel", [False, True])
def test_studio_jobs_show_tile_pass_and_time_left_and_go_where_the_studio_was_told(tmp_path, monkeypatch,
                                                                                   parallel):
    pytest.importorskip("starlette")
    from nst import kinds
    from nst.cluster import Where
    from nst.config import NSTConfig
    from studio.jobs import Job, Manager

    fake = _Kind()
    monkeypatch.setattr(kinds, "kind", lambda name: fake)
    where = Where(address="127.0.0.1:6390", max_parallel=2) if parallel else None
    manager = Manager(tmp_path / "runs", where)
    monkeypatch.setattr(manager, "_loaded_weights", lambda cfg: None)
    seen = []
    job = Job("r1", "nst", NSTConfig(output_dir=str(tmp_path / "runs" / "r1")), "label")
    job.control.subscribe(lambda ev: seen.append(manager.state()))
    manager.submit(job, "x: 1\n")
    end = time.time() + 10
    while job.status in ("queued", "running") and time.time() < end:
        time.sleep(0.02)
    assert job.status == "finished"
    cur = job.summary()
    assert (cur["tile"], cur["tiles"], cur["tile_pass"], cur["tile_passes"], cur["seconds_left"]) == (3, 12, 2, 2, 42)
    assert ("where" in fake.kwargs) is parallel and (fake.kwargs.get("where") is where)
    assert manager.state()["where"] == ("ray at 127.0.0.1:6390" if parallel else "here, serially")
    manager.shutdown(5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("argv, needle", [
    (["--local", "--ray"], "contradicts --ray"),
    (["--max-parallel", "2"], "add --ray or --address"),
    (["--ray", "--max-parallel", "0"], "at least 1"),
    (["--address", "nowhere"], "give HOST:PORT"),
    (["--address", "127.0.0.1:{free}", "--connect-timeout", "2"], "cannot reach a Ray cluster"),
])
def test_studio_placement_flags_are_checked_before_it_listens(argv, needle, capsys):
    pytest.importorskip("uvicorn")
    pytest.importorskip("ray")
    from nst.cli import run_main
    from studio.__main__ import main

    port = _free_port()
    argv = [a.replace("{free}", str(_free_port())) for a in argv]
    assert run_main(main, ["--port", str(port), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    with socket.socket() as s:  # nothing was left listening on the studio's port
        assert s.connect_ex(("127.0.0.1", port)) != 0
