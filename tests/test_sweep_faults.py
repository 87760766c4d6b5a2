"""``python -m experiments.sweep`` under bad input (issue 18): a sweep's size is counted before anything is built
(grids of 10^6 and 10^10 points, 10^9 random samples, YAML alias bombs: one line, at once), the cap is
stated and overridable; a wrong ``--address`` is a clear error within a timeout (a closed port, a port that
answers but is no Ray); two sweeps into one folder: the second is refused; a point whose run.json was cut
short is failed, and ``--rerun-failed`` recovers it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from nst.cli import run_main
from experiments.sweep.__main__ import main

from conftest import CONTENT, REPO, STYLE

FAST = ["image.size=32", "optimizer.iterations=2", "snapshots=[]", "precision=float32", "optimizer.xla=false",
        "progress.quiet=true"]


def write_sweep(folder: Path, body: str, name: str = "sweep.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "base.yaml").write_text(f"content: {CONTENT}\nstyle: {STYLE}\nmodel: {{network: vgg16}}\n")
    path = folder / name
    path.write_text(f"base: base.yaml\noutput_dir: out\nset: {json.dumps(FAST)}\n{body}", encoding="utf-8")
    return path


def sweep_cli(*args, timeout: float = 120) -> tuple[int, list[str]]:
    done = subprocess.run([sys.executable, "-m", "experiments.sweep", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return done.returncode, [ln for ln in done.stderr.splitlines() if ln.strip()]


def one_error(rc: int, lines: list[str], *needles: str) -> str:
    assert rc == 2, lines
    assert not any("Traceback" in ln for ln in lines), lines
    assert lines and lines[-1].startswith("error: ") and sum(ln.startswith("error:") for ln in lines) == 1, lines
    for n in needles:
        assert n.lower() in lines[-1].lower(), lines[-1]
    return lines[-1]


def grid(keys: int, values: int) -> str:
    names = ["seed", "loss.style_weight", "loss.content_weight", "loss.tv_weight", "init.noise_ratio",
             "image.style_scale", "optimizer.learning_rate", "layers.content.conv4_2", "layers.style.conv1_1",
             "layers.style.conv2_1"]
    return "grid:\n" + "".join(f"  {k}: [{', '.join(str(i + 1) for i in range(values))}]\n" for k in names[:keys])


# ---------------------------------------------------------------- sizes, counted before expanding


def laughs(levels: int = 9) -> str:
    """A zip block whose values are YAML aliases of aliases: a few hundred bytes, 10^levels values."""
    keys = ["seed", "loss.style_weight", "loss.content_weight", "loss.tv_weight", "init.noise_ratio",
            "image.style_scale", "optimizer.learning_rate", "layers.content.conv4_2", "layers.style.conv1_1"]
    lines = [f"  {keys[0]}: &l0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"]
    for k in range(1, levels):
        lines.append(f"  {keys[k]}: &l{k} [{', '.join([f'*l{k - 1}'] * 10)}]")
    return "zip:\n" + "\n".join(lines) + "\n"


@pytest.mark.parametrize("body, needles", [
    (grid(6, 10), ("1,000,000 points", "over the limit of 1,000", "--max-points")),
    (grid(10, 10), ("10,000,000,000 points",)),
    ("random: {samples: 1000000000, seed: 0, uniform: {loss.tv_weight: [0, 1]}}\n", ("1,000,000,000 points",)),
    # a 440-byte file of aliases: 10 keys of one 10-value list (an alias each), 10^10 points
    ("grid: {seed: &v [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], loss.style_weight: *v, loss.content_weight: *v, "
     "loss.tv_weight: *v, init.noise_ratio: *v, image.style_scale: *v, optimizer.learning_rate: *v, "
     "layers.content.conv4_2: *v, layers.style.conv1_1: *v, layers.style.conv2_1: *v}\n",
     ("10,000,000,000 points",)),
    # a billion values in a 670-byte file (the YAML "billion laughs")
    (laughs(9), ("aliases",)),
    ("points: [{seed: &l [1, *l]}]\n", ("aliases",)),  # an alias of itself: no end
], ids=["grid of 10^6", "grid of 10^10", "10^9 samples", "alias grid of 10^10", "billion laughs", "self alias"])
def test_oversized_sweeps_are_refused_at_once(tmp_path, body, needles):
    path = write_sweep(tmp_path, body)
    rc, lines = sweep_cli(path, "--list", timeout=120)
    one_error(rc, lines, *needles)
    assert not (tmp_path / "out").exists()


def test_the_cap_is_stated_and_overridable(tmp_path, capsys):
    path = write_sweep(tmp_path, "max_points: 3\ngrid: {seed: [1, 2], loss.tv_weight: [0, 1]}\n")
    assert run_main(main, [str(path), "--list"]) == 2
    err = capsys.readouterr().err
    assert "has 4 points, over the limit of 3" in err and "max_points" in err
    assert run_main(main, [str(path), "--list", "--max-points", "4"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    assert run_main(main, [str(write_sweep(tmp_path, grid(4, 6), "big.yaml")), "--list"]) == 2  # 1296 > 1000
    assert "1,296 points" in capsys.readouterr().err
    assert run_main(main, [str(path), "--list", "--max-points", "0"]) == 2
    assert "--max-points" in capsys.readouterr().err


# ---------------------------------------------------------------- a wrong --address


def test_a_wrong_address_is_a_clear_error_within_the_timeout(tmp_path):
    pytest.importorskip("ray", reason="the cluster extra is not installed")
    path = write_sweep(tmp_path, "points: [{seed: 1}]\n")
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    one_error(*sweep_cli(path, "--address", f"127.0.0.1:{port}", timeout=120), "cannot reach", f"127.0.0.1:{port}")
    one_error(*sweep_cli(path, "--address", "nonsense"), "HOST:PORT")
    one_error(*sweep_cli(path, "--address", "no-such-host.invalid:6379", timeout=120), "unknown host")
    # a port that takes the connection and never speaks Ray (an HTTP server, a wrong service)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    held = []
    stop = threading.Event()

    def accept():
        silent.settimeout(0.5)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        line = one_error(*sweep_cli(path, "--address", f"127.0.0.1:{silent.getsockname()[1]}", "--connect-timeout",
                                    "8", timeout=120), "did not answer within 8 s")
        assert "--connect-timeout" in line
    finally:
        stop.set()
        thread.join(5)
        for c in held:
            c.close()
        silent.close()


# ---------------------------------------------------------------- one sweep per folder; recovering a point


def test_a_second_sweep_into_a_busy_folder_is_refused(tmp_path, capsys):
    path = write_sweep(tmp_path, "points: [{seed: 1}]\n")
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from nst.outputs import prepare_dir; "
                               f"prepare_dir({str(out)!r}); print('held', flush=True); sys.stdin.read()"],
                              cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert run_main(main, [str(path), "--local"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and "in use" in err[-1], err
        assert not (out / "runs").exists() and not (out / "sweep.csv").exists()
    finally:
        holder.stdin.close()
        holder.wait(30)


@pytest.mark.slow
def test_a_point_with_a_truncated_run_json_recovers_under_rerun_failed(tmp_path, capsys):
    path = write_sweep(tmp_path, "points: [{seed: 1}, {seed: 2}]\n")
    assert run_main(main, [str(path), "--local"]) == 0
    folders = sorted((tmp_path / "out" / "runs").iterdir())
    damaged = folders[0] / "run.json"
    text = damaged.read_text()
    damaged.write_text(text[: len(text) // 3])
    capsys.readouterr()
    assert run_main(main, [str(path), "--local"]) == 1  # not rerun without the flag: failed, saying why
    rows = (tmp_path / "out" / "sweep.csv").read_text()
    assert "damaged" in rows and "--rerun-failed" in rows
    assert damaged.read_text() == text[: len(text) // 3]
    assert run_main(main, [str(path), "--local", "--rerun-failed"]) == 0
    err = capsys.readouterr().err
    assert "damaged run.json kept as damaged_" in err and "1 point(s) already done" in err
    assert json.loads(damaged.read_text())["status"] == "finished"
    assert (folders[0] / "damaged_run.json").read_text() == text[: len(text) // 3]
    assert (folders[0] / "result.png").is_file()


# ---------------------------------------------------------------- hostile cases found while fixing the above


def test_a_point_folder_blocked_by_a_file_fails_alone_and_an_unwritable_table_is_one_line(tmp_path, capsys):
    from experiments.sweep.spec import expand, load_sweep

    path = write_sweep(tmp_path, "points: [{seed: 1}, {seed: 2}]\n")
    points = expand(load_sweep(path))[1]
    points[0].folder.parent.mkdir(parents=True)
    points[0].folder.write_text("a file where the point's folder goes")
    (tmp_path / "out" / "sweep.csv").mkdir()  # the table's name taken by a folder
    rc = run_main(main, [str(path), "--local"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: cannot write") and "sweep.csv" in lines[-1], lines
    assert "#0 seed=1: failed (cannot use the point's folder" in err
    assert (points[1].folder / "result.png").is_file()  # the other point ran
    assert points[0].folder.read_text() == "a file where the point's folder goes"
