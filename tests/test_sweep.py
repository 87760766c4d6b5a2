"""Sweeps (experiments.sweep): the sweep file and its axes, point folders keyed by config, resume, a failing point,
cancel, sweep.csv and the contact sheet, on a local Ray with 2 CPUs and with ``--local`` (no Ray).

Ray starts once for the module (``ray_local`` fixture) and only for the tests marked ``ray``
(``-m "not ray"`` deselects them); runs are 64 px, a few iterations, float32 without XLA.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nst.errors import UserError
from experiments.sweep.__main__ import main
from experiments.sweep.runners import Execution, run_points
from experiments.sweep.runners import Interrupted
from experiments.sweep.spec import expand, load_sweep, run_key, varying_keys

from conftest import CONTENT, REPO, STYLE

FAST = ["image.size=64", "optimizer.iterations=4", "snapshots=[]", "precision=float32", "optimizer.xla=false",
        "progress.quiet=true"]


def write_sweep(folder: Path, body: str, name: str = "sweep.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "base.yaml").write_text(f"content: {CONTENT}\nstyle: {STYLE}\nmodel: {{network: vgg16}}\n")
    path = folder / name
    path.write_text(f"base: base.yaml\noutput_dir: out\nset: {json.dumps(FAST)}\n{body}", encoding="utf-8")
    return path


GRID = "grid:\n  loss.style_weight: [100, 10000]\n  model.pooling: [avg, max]\n"


def table(path: Path) -> list[dict]:
    return list(csv.DictReader(open(path, encoding="utf-8")))


# ---------------------------------------------------------------- the sweep file (fast)


def test_axes_make_the_product_of_their_blocks(tmp_path):
    path = write_sweep(tmp_path, GRID + "zip: {seed: [0, 1], init.noise_ratio: [0.5, 0.7]}\n"
                       "random: {samples: 3, seed: 4, log_uniform: {loss.tv_weight: [1.0e-6, 1.0e-2]}}\n")
    kind, points = expand(load_sweep(path))
    assert kind.name == "nst" and len(points) == 2 * 2 * 2 * 3
    assert [p.values["loss.style_weight"] for p in points[:12:6]] == [100, 100]
    assert {(p.values["seed"], p.values["init.noise_ratio"]) for p in points} == {(0, 0.5), (1, 0.7)}
    tvs = [p.values["loss.tv_weight"] for p in points[:3]]
    assert len(set(tvs)) == 3 and all(1e-6 <= t <= 1e-2 for t in tvs)
    again = expand(load_sweep(path))[1]
    assert [p.values for p in again] == [p.values for p in points]  # the random samples are seeded
    for p in points:  # each point's config carries its values, and its folder is named by the config
        assert p.cfg.loss.style_weight == p.values["loss.style_weight"] and p.cfg.image.size == 64
        assert p.folder.name == f"base-{run_key(json.loads(json.dumps(__import__('dataclasses').asdict(p.cfg))))}"
    assert len({p.folder for p in points}) == len(points)
    assert varying_keys(points) == ["loss.style_weight", "model.pooling", "seed", "init.noise_ratio",
                                    "loss.tv_weight"]


def test_explicit_points_and_image_folders(tmp_path):
    styles = tmp_path / "styles"
    styles.mkdir()
    for name in ("a.jpg", "b.png", "b_sem.png", "notes.txt"):
        (styles / name).write_bytes((STYLE.read_bytes()))
    path = write_sweep(tmp_path, f"images: {{content: {CONTENT.parent}, style: styles}}\n"
                       "points: [{loss.tv_weight: 0}, {loss.tv_weight: 1.0e-3}]\n")
    points = expand(load_sweep(path))[1]
    photos = sorted(p.name for p in CONTENT.parent.iterdir())
    assert len(points) == len(photos) * 2 * 2  # every photo x every painting (no maps, no text) x points
    assert {Path(p.cfg.style[0].path).name for p in points} == {"a.jpg", "b.png"}
    assert {Path(p.cfg.content).name for p in points} == set(photos)


def test_an_unchanged_point_keeps_its_folder_and_a_changed_one_gets_a_new_one(tmp_path):
    path = write_sweep(tmp_path, GRID)
    before = [p.folder for p in expand(load_sweep(path))[1]]
    after = [p.folder for p in expand(load_sweep(path, ["loss.style_weight=100"]))[1]]
    changed = [p.folder for p in expand(load_sweep(path, ["loss.tv_weight=1"]))[1]]
    assert before == after  # the axis still wins over the extra --set
    assert not set(changed) & set(before)
    progress = [p.folder for p in expand(load_sweep(path, ["progress.every=3"]))[1]]
    assert progress == before  # what cannot change a result is not in the key


@pytest.mark.parametrize("body, needle", [
    ("gird: {seed: [1]}\n", "did you mean 'grid'"),
    ("grid: {loss.style_wieght: [1]}\n", "did you mean 'loss.style_weight'"),
    ("grid: {seed: []}\n", "'grid.seed' must be a non-empty list"),
    ("zip: {seed: [1, 2], init.noise_ratio: [0.5]}\n", "one length"),
    ("random: {samples: 2, log_uniform: {loss.tv_weight: [0, 1]}}\n", "low > 0"),
    ("random: {samples: 2}\n", "no key to draw"),
    ("resources: {cpus: 0}\n", "cpus > 0"),
    ("images: {style: nowhere}\n", "no such folder"),
    ("thumbnail: big\n", "'thumbnail' must be int"),
])
def test_bad_sweep_files_are_one_line_errors(tmp_path, body, needle):
    path = write_sweep(tmp_path, body)
    with pytest.raises(UserError, match=needle) as err:
        expand(load_sweep(path))
    assert "\n" not in str(err.value)


def test_cli_bad_input(tmp_path):
    import subprocess
    import sys

    def sweep_cli(*args):
        return subprocess.run([sys.executable, "-m", "experiments.sweep", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)

    for args, needle in [([str(tmp_path / "missing.yaml"), "--local"], "not found"),
                         ([str(write_sweep(tmp_path, GRID)), "--local", "--max-parallel", "0"], "--max-parallel"),
                         ([str(write_sweep(tmp_path, "grid: {seed: [1]}\nsocre: x\n")), "--local"], "did you mean")]:
        r = sweep_cli(*args)
        assert r.returncode == 2 and r.stderr.strip().startswith("error:") and needle in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_driver_sends_the_token_to_an_explicit_address_only_when_the_user_did_not_choose(tmp_path, monkeypatch):
    """Ray >= 2.59 puts `ray start --head` in token mode when ~/.ray/auth_token exists, but a driver given
    host:port stays 'disabled' (InvalidAuthToken): the sweep turns token mode on then, unless RAY_AUTH_MODE says."""
    import subprocess
    import sys

    pytest.importorskip("ray")
    from experiments.sweep.runners import send_token_if_present

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # the user's choice wins (returns before touching Ray)
    send_token_if_present()
    assert __import__("os").environ["RAY_AUTH_MODE"] == "disabled"
    # a fresh process each (Ray caches its config and token): a HOME with a token, and one without
    probe = ("import os; from experiments.sweep.runners import send_token_if_present; send_token_if_present(); "
             "from ray._raylet import AuthenticationMode, get_authentication_mode; "
             "print(os.environ.get('RAY_AUTH_MODE'), get_authentication_mode() == AuthenticationMode.TOKEN)")
    modes = []
    for has_token in (True, False):
        home = tmp_path / f"home{int(has_token)}"
        (home / ".ray").mkdir(parents=True)
        if has_token:
            (home / ".ray" / "auth_token").write_text("0123456789abcdef" * 4)
        env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("RAY_AUTH")}
        r = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env={**env, "HOME": str(home)},
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        modes.append(r.stdout.split())
    assert modes == [["token", "True"], ["None", "False"]]  # Ray itself is in token mode only with a token


# ---------------------------------------------------------------- runs


def lit(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=float)


def check_sheet(out: Path, n_images: int):
    sheet = out / "contact_sheet.png"
    with Image.open(sheet) as img:
        assert img.width >= 600
    assert (out / "loss_curves.png").stat().st_size > 10_000
    assert float(lit(sheet).std()) > 20  # thumbnails drawn, not an empty canvas


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    # address="local": a new Ray of our own even when a `ray start` cluster runs on this machine (the default
    # would join it, and num_cpus is refused when joining)
    for attempt in range(3):
        try:
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR", runtime_env={"py_modules": [str(REPO / "nst"), str(REPO / "doodle")]})
            break
        except Exception as exc:  # noqa: BLE001 - Ray gives its raylet a fixed 30 s to register: on an overloaded
            if "timed out during startup" not in str(exc) or attempt == 2:  # machine that can pass; try again
                raise
            ray.shutdown()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_sweep(ray_local, tmp_path_factory):
    """A 4-point sweep (2 style weights x 2 poolings) run on local Ray with 2 CPUs."""
    folder = tmp_path_factory.mktemp("ray_sweep")
    path = write_sweep(folder, GRID)
    assert main([str(path), "--max-parallel", "2"]) == 0
    return path, folder / "out"


@pytest.mark.slow
@pytest.mark.ray
def test_ray_runs_every_point_into_its_folder_and_writes_the_table(ray_sweep):
    path, out = ray_sweep
    rows = table(out / "sweep.csv")
    points = expand(load_sweep(path))[1]
    assert [int(r["index"]) for r in rows] == [0, 1, 2, 3]
    assert [(r["loss.style_weight"], r["model.pooling"]) for r in rows] == [
        ("100", "avg"), ("100", "max"), ("10000", "avg"), ("10000", "max")]
    for r, p in zip(rows, points):
        assert r["status"] == "finished" and r["folder"] == str(p.folder) and r["precision"] == "float32"
        info = json.loads((p.folder / "run.json").read_text())
        assert info["status"] == "finished" and (p.folder / "result.png").is_file()
        assert float(r["total"]) == pytest.approx(info["final_losses"]["total"], rel=1e-5)
        assert float(r["style"]) > 0 and r["host"] and r["node"]
    # the style term scales with its weight: 100x the weight, ~100x the loss (same network, same start)
    assert float(rows[2]["style"]) > 20 * float(rows[0]["style"])
    check_sheet(out, 4)


@pytest.mark.slow
@pytest.mark.ray
def test_resume_skips_finished_points(ray_sweep, capsys):
    path, out = ray_sweep
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/result.png")}
    assert main([str(path)]) == 0
    assert "4 point(s) already done" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/result.png")} == stamps
    assert all(r["reused"] == "True" for r in table(out / "sweep.csv"))


@pytest.mark.slow
@pytest.mark.ray
def test_local_without_ray_gives_the_same_table(ray_sweep, tmp_path, monkeypatch):
    import sys

    path, out = ray_sweep
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    local = write_sweep(tmp_path, GRID)
    with pytest.raises(UserError, match="Ray is not installed"):
        main([str(local), "--address", "auto"])
    assert main([str(local), "--local"]) == 0
    ray_rows, local_rows = table(out / "sweep.csv"), table(tmp_path / "out" / "sweep.csv")
    same = ("index", "loss.style_weight", "model.pooling", "status", "content", "style", "tv", "total", "precision")
    assert [{k: r[k] for k in same} for r in local_rows] == [{k: r[k] for k in same} for r in ray_rows]
    assert [Path(r["folder"]).name for r in local_rows] == [Path(r["folder"]).name for r in ray_rows]


@pytest.mark.slow
@pytest.mark.ray
def test_a_bad_point_fails_alone_and_reruns_on_request(ray_local, tmp_path, capsys):
    path = write_sweep(tmp_path, "points: [{loss.style_weight: 100}, {loss.style_weight: -1},"
                       " {layers.style: {conv9_9: 1.0}}]\n")
    assert main([str(path)]) == 1
    rows = table(tmp_path / "out" / "sweep.csv")
    assert [r["status"] for r in rows] == ["finished", "failed", "failed"]
    assert "must not be negative" in rows[1]["error"] and "conv9_9" in rows[2]["error"]
    check_sheet(tmp_path / "out", 1)
    capsys.readouterr()
    assert main([str(path)]) == 1  # resume: the run that failed is not run again, the bad config fails anew
    assert "2 point(s) already done" in capsys.readouterr().err
    assert main([str(path), "--rerun-failed"]) == 1
    assert "1 point(s) already done" in capsys.readouterr().err
    assert [r["status"] for r in table(tmp_path / "out" / "sweep.csv")] == ["finished", "failed", "failed"]


@pytest.mark.slow
@pytest.mark.ray
def test_cancel_leaves_consistent_folders(ray_local, tmp_path, monkeypatch):
    """Ctrl-C in the driver: running points stop through their Control and say 'cancelled'; none looks finished."""

    path = write_sweep(tmp_path, "grid: {loss.style_weight: [100, 1000, 10000]}\n")
    sweep = load_sweep(path, ["optimizer.iterations=400"])
    kind, points = expand(sweep)
    import ray

    original, started, fired = ray.wait, time.time(), []

    def wait_then_interrupt(refs, **kw):  # Ctrl-C once both running points are iterating (at the latest at 600 s:
        logs = [p.folder / "losses.csv" for p in points[:2]]  # on a loaded machine start-up alone took > 150 s)
        iterating = all(f.is_file() and len(f.read_text().splitlines()) > 3 for f in logs)
        if not fired and (iterating or time.time() - started > 600):
            fired.append(iterating)
            raise KeyboardInterrupt
        return original(refs, **kw)

    monkeypatch.setattr(ray, "wait", wait_then_interrupt)
    with pytest.raises(Interrupted) as err:
        run_points(kind.name, points, Execution(local=False, max_parallel=2))
    outcomes = err.value.args[0]
    assert sorted(o["status"] for o in outcomes.values()) == ["cancelled", "cancelled", "not run"]
    for p in points:
        o = outcomes[p.index]
        if o["status"] == "cancelled":
            info = json.loads((p.folder / "run.json").read_text())
            # stopped mid-run (when Ctrl-C came before a point iterated, it stops before its first iteration)
            assert info["status"] == "cancelled" and (3 if fired[0] else 0) <= info["iterations_done"] < 400
            assert not (p.folder / "result.png").exists()
            assert len((p.folder / "losses.csv").read_text().splitlines()) == info["iterations_done"] + 1
        else:
            assert not p.folder.exists()
