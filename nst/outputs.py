"""A run's output folder: ``result.png``, ``iter_XXXX.png``, ``losses.csv``, ``run.json``.

The contract other tools rely on. ``result.png`` is written last and atomically, with the resolved
config embedded as PNG text, so its presence means the run finished. ``run.json`` records what ran
(config, network, weights and their SHA-256, versions, seed, wall time, peak memory) and how it ended.

A folder is owned by its run:
- :func:`prepare_dir` checks the folder and takes its lock (``.nst-run.lock``, an ``flock``, so a second
  run into a busy folder is refused and a killed run's lock is free again); it deletes nothing.
- :class:`RunRecorder`, created once every other check has passed, clears the previous run's outputs —
  only the files that run listed in its ``run.json`` (``files``), or PNG/CSV/JSON files that carry this
  tool's marks — after moving aside any of them this run reads as input, and refuses files of the names it
  will write that no earlier run wrote.
- Every file is written to a temporary name and renamed. A failed write ends the run as ``failed`` with
  one error line; the lock file holds a small space reserve that is given up so that run.json can still
  say so on a full disk.
- A loss that is not finite, or an optimiser that stops before its first iteration, is a failed run.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import math
import os
import platform
import re
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from nst.cli import say
from nst.typed_yaml import to_dict
from nst.errors import UserError
from nst.events import CSV_HEADER, TILE_COLUMNS, Cancelled, Progress, extra_columns
from nst.images import save_png, save_tiff
from nst.weights import WeightsInfo

LOCK_NAME = ".nst-run.lock"
RESERVE_BYTES = 256 * 1024  # kept in the lock file during a run; freed to record a failure on a full disk
OUTPUT_NAMES = ("result.png", "result.tif", "run.json", "losses.csv", "labels.png")
PLOT_NAME = "loss_curves.png"  # nst.plot's default output in a run folder (marked as ours, see is_ours)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or kill, or a closed terminal) during a recorded run; the message says what was kept."""


def versions() -> dict[str, str]:
    import keras
    import numpy
    import PIL
    import scipy
    import tensorflow

    return {"python": platform.python_version(), "tensorflow": tensorflow.__version__, "keras": keras.__version__,
            "numpy": numpy.__version__, "scipy": scipy.__version__, "pillow": PIL.__version__,
            "platform": platform.platform()}


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


_SECRET_FLAG = re.compile(r"--?[\w-]*(token|secret|passw(or)?d|api[-_]?key|auth|credential)[\w-]*", re.I)
_SECRET_QUERY = re.compile(r"([?&](?:[\w-]*(?:token|secret|passw(?:or)?d|api[-_]?key|auth)[\w-]*)=)[^&#\s]*", re.I)


def command_line(argv: list[str] | None = None) -> str:
    """The command that ran, as run.json records it, less its secrets: the value of ``--token`` (the
    studio's) or of any token-, secret-, password- or key-like flag, and such parameters of a URL."""
    argv = list(sys.argv if argv is None else argv)
    out, hide_next = [], False
    for arg in argv:
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        flag, eq, _ = arg.partition("=")
        if _SECRET_FLAG.fullmatch(flag):
            if eq:
                out.append(f"{flag}=***")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(_SECRET_QUERY.sub(r"\1***", arg))
    return " ".join([Path(sys.executable).name, *out])


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path`` (no partial files)."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are for sharing
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ---------------------------------------------------------------- the folder lock


class _FolderLock:
    """An ``flock`` on ``folder/.nst-run.lock``, plus the space reserve written into that file."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK_NAME
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).split(b"\n", 1)[0].decode("utf-8", "replace")
                os.close(fd)
                raise UserError(f"output folder {folder} is in use by another run ({holder or 'unknown'}); wait "
                                f"for it to end or choose another --output") from None
            try:  # the previous holder may have unlinked the file between our open and flock: lock the new one
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd = fd
        try:
            os.ftruncate(fd, 0)
            head = f"pid {os.getpid()} on {platform.node()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode()
            os.pwrite(fd, head + b"\0" * RESERVE_BYTES, 0)  # real blocks, not a sparse hole
            self.head = len(head)
        except OSError as exc:
            self.release()
            raise UserError(f"cannot write in output folder {folder}: {_why(exc)}") from None

    def free_reserve(self) -> None:
        try:
            os.ftruncate(self.fd, self.head)
        except OSError:
            pass

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)  # while still locked: a waiting run re-checks the inode (see above)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


_HELD: dict[Path, _FolderLock] = {}  # folders this process owns (a folder may be claimed again in-process)


def _release(folder: Path) -> None:
    lock = _HELD.pop(folder.resolve(), None)
    if lock:
        lock.release()


def release_dir(path: Path) -> None:
    """Give up the lock :func:`prepare_dir` took (the folder's run is over); a no-op if none is held."""
    _release(Path(path))


def free_reserve(path: Path) -> None:
    """On a full disk: give up the held folder lock's space reserve, so that run.json can still say so."""
    lock = _HELD.get(Path(path).resolve())
    if lock:
        lock.free_reserve()


@atexit.register
def _release_all() -> None:
    for folder in list(_HELD):
        _release(folder)


def _check_path(path: Path) -> None:
    if not str(path).strip():
        raise UserError("output folder is empty: name the folder the run writes to (output_dir or --output)")
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                what = "it is a file" if parent == path else f"it lies under {parent}, which is a file"
                raise UserError(f"output dir {path} is not writable: {what}, not a folder")
            break


def prepare_dir(path: Path) -> Path:
    """Check the output folder, create it, and lock it for this run. Deletes nothing (see RunRecorder)."""
    path = Path(path)
    _check_path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"output dir {path} is not writable: {_why(exc)}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"output dir {path} is not writable: permission denied")
    key = path.resolve()
    if key not in _HELD:
        try:
            _HELD[key] = _FolderLock(path)
        except PermissionError as exc:
            raise UserError(f"output dir {path} is not writable: {_why(exc)}") from None
        except OSError as exc:
            raise UserError(f"cannot write in output folder {path}: {_why(exc)}") from None
    return path


# ---------------------------------------------------------------- what an earlier run wrote


def _run_record(folder: Path) -> dict | None:
    try:
        info = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and "status" in info and "config" in info else None


def is_ours(path: Path) -> bool | None:
    """Whether a file carries this tool's marks: PNG text ``nst:*``, our CSV header, a run.json record.

    None for other kinds of file, whose only evidence is an earlier run's manifest.
    """
    try:
        if path.suffix == ".png":
            with Image.open(path) as img:
                return any(k.startswith("nst:") for k in getattr(img, "text", {}))
        if path.name == "losses.csv":
            with open(path, "rb") as f:
                return f.readline().decode("utf-8", "replace").startswith(",".join(CSV_HEADER))
        if path.name == "run.json":
            return _run_record(path.parent) is not None
    except Exception:  # unreadable: not provably ours
        return False
    return None


def owned_files(folder: Path) -> set[str]:
    """Names of files in ``folder`` an earlier run of this tool wrote: listed in its run.json or found under
    an output's name, and in both cases still carrying our marks (a file the user put in its place is not ours)."""
    info = _run_record(folder)
    listed = info.get("files") if info else None
    manifest = {n for n in listed if isinstance(n, str) and "/" not in n} if isinstance(listed, list) else set()
    candidates = manifest | {*OUTPUT_NAMES, PLOT_NAME, *(p.name for p in folder.glob("iter_*.png"))}
    owned = set()
    for name in candidates - {LOCK_NAME}:
        path = folder / name
        if path.is_file():
            mark = is_ours(path)
            if mark or (mark is None and name in manifest):
                owned.add(name)
    return owned


def _input_files(config: dict, folder: Path) -> list[Path]:
    """Files the config names (content, style, init.path, maps, weights) that lie directly in ``folder``."""
    found, stack, home = [], [config], folder.resolve()
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and node and ("/" in node or "." in node):
            p = Path(node)
            if p.is_absolute() and p.parent.resolve() == home and p.is_file():
                found.append(p)
    return found


def _aside_name(folder: Path, name: str) -> Path:
    target, n = folder / f"previous_{name}", 2
    while target.exists():
        target, n = folder / f"previous{n}_{name}", n + 1
    return target


def _needed_bytes(cfg, snapshots: set[int]) -> int:
    """A generous estimate of what a run writes: raw RGB per PNG, ~80 bytes per losses.csv row."""
    size = cfg.image.size
    pixels = size[0] * size[1] if isinstance(size, list) else size * size
    iterations = cfg.optimizer.iterations
    pngs = 2 + len([s for s in snapshots if s <= iterations])
    return pngs * (pixels * 3 + 4096) + iterations * 80 + 64 * 1024


# ---------------------------------------------------------------- the recorder


def _number(value: float) -> float | str:
    """JSON has no inf/nan: a failed run's non-finite loss is recorded as the string "inf" / "nan"."""
    return value if math.isfinite(value) else str(value)



class RunRecorder:
    """Receives progress events; writes the log, the snapshots, and at the end the result and run.json.

    Construct it when every check has passed: it is the first thing that changes the folder.
    """

    def __init__(self, out_dir: Path, cfg, weights: WeightsInfo, on_event=None):
        """``cfg``: the run's validated config (its snapshots, seed, sizes and result options are read typed)."""
        self.out_dir, self.cfg, self.config = Path(out_dir), cfg, to_dict(cfg)
        self.snapshots, self.seed = set(cfg.snapshots), cfg.seed
        self.weights, self.on_event = weights, on_event
        self.started = time.time()
        self.last: Progress | None = None
        self.extra: dict = {}
        self.files: list[str] = []  # the manifest: what this run wrote here (run.json "files")
        self.columns: list[str] | None = None  # the objective's own terms after the fixed columns, from event 1
        self.rows: list[str] = []
        self.tiled = False  # a tiled run (nst.tiles) adds tile,pass columns, known from event 1
        prepare_dir(self.out_dir)  # a no-op when the CLI already holds the folder
        self.lock = _HELD[self.out_dir.resolve()]
        try:
            self._take_over()
            self._save_csv()
            self.record("running")
        except BaseException:
            self.close()
            raise

    # -- the folder

    def _take_over(self) -> None:
        """Refuse foreign files in the way, move inputs aside, delete the previous run's outputs."""
        out = self.out_dir
        self.prev = prev = owned_files(out)
        last = self.cfg.optimizer.iterations
        planned = {"result.png", "run.json", "losses.csv", *(f"iter_{s:04d}.png" for s in self.snapshots if s <= last)}
        foreign = sorted(n for n in planned if (out / n).exists() and n not in prev)
        if foreign:
            raise UserError(f"output folder {out} holds {', '.join(foreign)}, which no earlier run of this tool "
                            f"wrote; move them away or choose another --output")
        need = _needed_bytes(self.cfg, self.snapshots) - sum((out / n).stat().st_size for n in prev)
        free = shutil.disk_usage(out).free
        if free < need:
            raise UserError(f"output folder {out} has {free / 1e6:.1f} MB free; this run needs about "
                            f"{need / 1e6:.1f} MB")
        moved = {}
        try:
            for p in _input_files(self.config, out):
                if p.name in prev:
                    target = _aside_name(out, p.name)
                    os.replace(p, target)
                    moved[str(p)] = str(target)
                    say(f"note: input {p.name} lies in the output folder; kept as {target.name}")
            for name in prev:
                (out / name).unlink(missing_ok=True)
        except OSError as exc:
            raise UserError(f"cannot clear the previous run in {out}: {_why(exc)}") from None
        if moved:
            self.extra["inputs_moved_aside"] = moved

    def _write(self, name: str, writer) -> None:
        """Write one output through ``writer(path)`` (atomic), add it to the manifest, or fail the run."""
        try:
            writer(self.out_dir / name)
        except OSError as exc:
            raise UserError(f"cannot write {name} in {self.out_dir}: {_why(exc)}") from None
        if name not in self.files:
            self.files.append(name)

    def write_png(self, name: str, image) -> None:
        """An extra picture in the run folder (doodle's labels.png): atomic, in the manifest."""
        if (self.out_dir / name).exists() and name not in self.prev and name not in self.files:
            raise UserError(f"output folder {self.out_dir} holds {name}, which no earlier run of this tool wrote; "
                            f"move it away or choose another --output")
        self._write(name, lambda path: save_png(np.asarray(image, np.float32), path, self._png_text()))

    def _save_csv(self) -> None:
        header = ",".join([*CSV_HEADER, *(self.columns or []), "phase", "size", *(TILE_COLUMNS if self.tiled else ())])
        data = ("\n".join([header, *self.rows]) + "\n").encode("utf-8")
        self._write("losses.csv", lambda path: write_atomic(path, data))

    # -- events

    def __call__(self, ev: Progress) -> None:
        if self.columns is None:
            self.columns = extra_columns(ev.terms)
            self.tiled = ev.tile_passes > 0
        self.rows.append(",".join(ev.csv_values(self.columns, self.tiled)))
        self._save_csv()
        self.last = ev
        if not math.isfinite(ev.total):
            raise UserError(f"the loss is not finite ({ev.total}) at iteration {ev.iteration}: the weighted loss "
                            f"overflows float32; lower the loss weights (loss.*_weight)")
        if ev.iteration in self.snapshots:
            self._write(f"iter_{ev.iteration:04d}.png",
                        lambda path: save_png(ev.image, path, self._png_text(ev)))
        if self.on_event:
            self.on_event(ev)

    def _png_text(self, ev: Progress | None = None) -> dict[str, str]:
        text = {"nst:config": yaml.safe_dump(self.config, sort_keys=False),
                "nst:network": self.weights.network, "nst:weights_sha256": self.weights.sha256}
        if ev is not None:
            text["nst:iteration"] = str(ev.iteration)
            text["nst:scale"] = f"{ev.phase + 1}/{ev.phases} {ev.size[1]}x{ev.size[0]}"
        return text

    # -- the end

    def record(self, status: str, stop: str = "", error: str = "") -> dict:
        last = self.last
        info = {
            "status": status,
            "stop_reason": stop,
            **({"error": error} if error else {}),
            "command": command_line(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "wall_seconds": round(time.time() - self.started, 3),
            "peak_memory_mb": round(peak_memory_mb(), 1),
            "iterations_done": last.iteration if last else 0,
            "final_losses": ({k: _number(v) for k, v in {"content": last.content, "style": last.style,
                                                         "tv": last.tv, "total": last.total, **last.terms}.items()}
                             if last else None),
            "seed": self.seed,
            "network": self.weights.network,
            "weights": {"source": self.weights.source, "path": self.weights.path, "sha256": self.weights.sha256,
                        "notice": self.weights.notice},
            "versions": versions(),
            "files": sorted({*self.files, "run.json", *(["result.png"] if status == "finished" else [])}),
            **self.extra,
            "config": self.config,
        }
        data = json.dumps(info, indent=2).encode("utf-8")
        self._write("run.json", lambda path: write_atomic(path, data))
        return info

    def finish(self, image, stop: str) -> dict:
        """Check the result, then: result.png to a temporary name, run.json "finished", rename (the marker)."""
        last = self.last
        if last is None:
            raise UserError(f"the optimiser stopped before its first iteration ({stop}): the loss or its gradient "
                            f"is not usable (an overflow? lower the loss weights)")
        if not math.isfinite(last.total) or not np.isfinite(image).all():
            raise UserError(f"the run ended with a loss of {last.total} or a non-finite image: not a result")
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=self.out_dir)
        os.close(fd)
        opts = self.cfg.result  # prints: bit depth, sRGB profile, DPI (nst.config.ResultConfig)
        depth, icc, dpi = opts.bit_depth, opts.icc, opts.dpi
        try:
            if opts.tiff:
                self._write("result.tif", lambda path: save_tiff(image, path, depth, icc, dpi,
                                                                 self._png_text()["nst:config"]))
            self._write(Path(tmp).name, lambda path: save_png(image, path, self._png_text(), depth, icc, dpi))
            self.files.remove(Path(tmp).name)
            info = self.record("finished", stop)
            os.replace(tmp, self.out_dir / "result.png")  # a rename needs no space: the last step
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return info

    def abort(self, status: str, error: str = "", stop: str = "") -> str:
        """Record an interrupted, cancelled or failed run; returns "" or why run.json could not be written."""
        for attempt in range(2):
            try:
                self.record(status, stop, error=error)
                return ""
            except UserError as exc:
                if attempt:
                    return str(exc)
                self.lock.free_reserve()  # a full disk: give up the reserve, then try once more
        return ""

    def kept(self) -> str:
        snaps = [n for n in self.files if n.startswith("iter_")]
        rows = len(self.rows)
        return (f"run.json (status interrupted), losses.csv ({rows} iteration{'s' * (rows != 1)})"
                + (f" and {len(snaps)} snapshot{'s' * (len(snaps) != 1)}" if snaps else "")
                + f" kept in {self.out_dir}; no result.png written")

    def close(self) -> None:
        _release(self.out_dir)


def record_run(recorder: RunRecorder, printer, work) -> dict:
    """Run ``work() -> (image, stop reason)`` under ``recorder``; returns run.json's record.

    An interrupted or failed run keeps its snapshots and log and says so in run.json; only a finished
    one gets result.png. A UserError inside the run (a non-finite loss, a failed write) ends it as failed.
    """
    try:
        try:
            image, stop = work()
            printer.close()
            done = recorder.finish(image, stop)
        except Cancelled as exc:  # stopped by its caller (studio, sweep): recorded, not an error
            printer.close()
            trouble = recorder.abort("cancelled", stop=str(exc))
            if trouble:
                raise UserError(f"run cancelled, but run.json could not be updated ({trouble})") from None
            say(f"cancelled: {exc}; snapshots, losses.csv and run.json kept")
            return _run_record(recorder.out_dir) or {}
        except KeyboardInterrupt:
            recorder.abort("interrupted")
            raise Interrupted(recorder.kept()) from None
        except UserError as exc:
            trouble = recorder.abort("failed", error=str(exc))
            if trouble:
                raise UserError(f"{exc}; run.json could not be updated either ({trouble})") from None
            raise
        except BaseException as exc:
            recorder.abort("failed", error=f"{type(exc).__name__}: {exc}")
            raise
    finally:
        recorder.close()
    out = recorder.out_dir
    say(f"done: {out / 'result.png'} ({done['iterations_done']} iterations, {done['wall_seconds']:.1f} s, "
        f"peak {done['peak_memory_mb']:.0f} MB; {stop})")
    return done
