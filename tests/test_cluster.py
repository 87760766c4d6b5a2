"""Where a run runs (nst.cluster): the --ray / --address / --local / --max-parallel / --cpus-per-worker flags
of nst.run and doodle.run, their contradictions and impossible values as one-line errors (exit 2, nothing
written), an unreachable address refused within the connect timeout instead of Ray's minutes of retries,
``auto`` without a cluster, and a run with nothing tiled staying serial without touching Ray."""

from __future__ import annotations

import socket

import pytest

from nst.cluster import Where, auto_address, host_port, reachable, where_from_args
from nst.errors import UserError
from nst.run import parse_args

FAST = ["precision=float32", "optimizer.xla=false", "model.network=vgg16", "model.download=false"]
TILED = ["image.size=128", "tiles.size=64", "tiles.overlap=16", "tiles.max_pixels=4096", "optimizer.iterations=2"]


def _sets(values):
    return [a for s in values for a in ("--set", s)]


def _closed_port() -> int:
    with socket.socket() as s:  # a port nobody listens on (bound, then let go)
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_flags_read_into_where():
    assert where_from_args(parse_args(["c.yaml"])) == Where()
    w = where_from_args(parse_args(["c.yaml", "--address", "127.0.0.1:6390", "--max-parallel", "3",
                                    "--cpus-per-worker", "2", "--connect-timeout", "4"]))
    assert w == Where(False, "127.0.0.1:6390", 3, 2.0, 4.0) and w.parallel
    assert where_from_args(parse_args(["c.yaml", "--ray"])).parallel
    assert not where_from_args(parse_args(["c.yaml", "--local"])).parallel


def test_addresses_parse_or_say_what_is_wrong():
    assert host_port("127.0.0.1:6390") == ("127.0.0.1", 6390)
    assert host_port("ray://head.example:10001") == ("head.example", 10001)
    assert host_port("[::1]:6379") == ("::1", 6379)
    for bad in ("127.0.0.1", "127.0.0.1:", ":6379", "host:port", "host:70000"):
        with pytest.raises(UserError, match="HOST:PORT"):
            host_port(bad)


def test_reachable_sees_a_listener_and_refuses_a_closed_port():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        reachable(f"127.0.0.1:{server.getsockname()[1]}", 2.0)  # no error
    port = _closed_port()
    with pytest.raises(UserError, match=f"cannot reach a Ray cluster at 127.0.0.1:{port}"):
        reachable(f"127.0.0.1:{port}", 2.0)


def test_auto_without_a_cluster_is_a_user_error(monkeypatch):
    ray_utils = pytest.importorskip("ray._private.utils")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray_utils, "read_ray_address", lambda temp_dir=None: None)
    with pytest.raises(UserError, match="no Ray cluster was started on this machine"):
        auto_address()
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6390")
    assert auto_address() == "127.0.0.1:6390"


@pytest.mark.parametrize("flags,needle", [
    (["--ray", "--max-parallel", "0"], "--max-parallel must be at least 1, got 0"),
    (["--address", "127.0.0.1:6390", "--local"], "contradicts --address"),
    (["--ray", "--local"], "contradicts --ray"),
    (["--ray", "--address", "auto"], "give one of them"),
    (["--max-parallel", "2"], "add --ray or --address"),
    (["--ray", "--cpus-per-worker", "0"], "--cpus-per-worker must be more than 0"),
    (["--address", "127.0.0.1:6390", "--connect-timeout", "0"], "--connect-timeout"),
    (["--address", " "], "--address is empty"),
])
def test_bad_where_flags_are_one_line_errors(run_inprocess, make_config, tmp_path, clean_error, flags, needle):
    out = tmp_path / "out"
    res = run_inprocess([make_config(), "--output", out, *flags])
    clean_error(res, needle)
    assert not out.exists()


@pytest.mark.parametrize("address", ["CLOSED", "nohost-no-port"])
def test_an_unreachable_address_is_one_line_before_the_folder(run_inprocess, make_config, tmp_path, clean_error,
                                                             address):
    out = tmp_path / "out"
    address = f"127.0.0.1:{_closed_port()}" if address == "CLOSED" else address
    res = run_inprocess([make_config(), "--output", out, "--address", address, "--connect-timeout", "3",
                         *_sets(TILED + FAST)])
    line = clean_error(res, address)
    assert "cannot reach" in line or "HOST:PORT" in line
    assert not out.exists()  # refused before the run folder was made


def test_nothing_tiled_runs_here_without_ray(run_inprocess, make_config, tmp_path, monkeypatch):
    import nst.cluster

    monkeypatch.setattr(nst.cluster, "connect", lambda *a, **k: pytest.fail("Ray was reached for a run without tiles"))
    out = tmp_path / "out"
    res = run_inprocess([make_config(), "--output", out, "--ray", "--max-parallel", "2",
                         *_sets(["image.size=48", "optimizer.iterations=2", "progress.quiet=true", *FAST])])
    assert res.rc == 0, res.err
    assert "notice: no scale of this run is over tiles.max_pixels" in res.err
    assert (out / "result.png").is_file()


def test_ray_that_fails_to_start_is_one_line(monkeypatch):
    """Ray raises a bare Exception when its node times out starting (seen under load): one UserError line."""
    ray = pytest.importorskip("ray")
    from nst.cluster import connect

    def boom(**_kw):
        raise Exception("The current node timed out during startup. This could happen because ...\nmore")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", boom)
    with pytest.raises(UserError, match=r"^cannot start or join Ray at this machine: The current node timed out"):
        connect(None)


def test_worker_slots_fit_the_cluster_cap_and_refuse_a_cluster_too_small(monkeypatch):
    ray = pytest.importorskip("ray")
    from nst.cluster import worker_slots

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 5.0})
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}, {"Alive": False}, {"Alive": True}])
    assert worker_slots(1.0, None, "tile") == (5, 2)
    assert worker_slots(2.0, None, "tile") == (2, 2)
    assert worker_slots(1.0, 3, "chunk") == (3, 2)
    with pytest.raises(UserError, match=r"^the Ray cluster has 5 CPUs; a chunk worker asks for 8 \(--cpus-per-worker\)$"):
        worker_slots(8.0, None, "chunk")
