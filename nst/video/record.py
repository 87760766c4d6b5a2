"""A video run's folder, and resuming it.

```
OUT/                      the run folder (``--output OUT.mp4`` -> OUT/; else output_dir)
  frames/frame_00001.png  every stylised frame, written atomically when the frame is finished
  losses.csv              iteration,content,style,tv,total,seconds,temporal,phase,size,frame: every iteration
                          (the nst columns, so nst.plot reads it; iteration and seconds restart each frame)
  run.json                status, frames done / total, per-frame record, config, weights, versions
```

The folder follows :mod:`nst.outputs`' contract: it is locked for the run (``.nst-run.lock``, so a second run
into it is refused), its space is checked before the first frame, every file is written atomically (or, for
``losses.csv``, appended line by line, a torn last line dropped on resume), and a failed write ends the run
as ``failed`` with one error line (the lock's space reserve is given up so that run.json can still say so).

``run.json`` is rewritten after every frame, so an interrupted run (Ctrl-C, kill, crash, cancel) says how far
it got, and the same command later resumes after the last finished frame: that frame's PNG is the previous
result the next frame is warped from (uninterrupted runs warp from the same 8-bit frames, so a resumed run
gives the same frames). Kept frames are checked first: each must be the run's size and carry its marks
(``nst:frame``), so a frame replaced since is refused, never used. A folder holding another config's or
clip's run, or a corrupt run.json, is refused unless ``--restart``, which removes only what a video run
wrote there.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import yaml
from PIL import Image

from nst.errors import UserError
from nst.events import CSV_HEADER, Progress, extra_columns
from nst.images import read_image, save_png
from nst.outputs import (command_line, free_reserve, is_ours, peak_memory_mb, prepare_dir, release_dir, versions,
                         write_atomic)
from nst.video.io import frame_name
from nst.weights import WeightsInfo

KIND = "nst.video"


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def fingerprint(config: dict, clip: Path) -> dict:
    """What must match for a run folder to be resumed: the config (less output and progress) and the clip."""
    cfg = {k: v for k, v in config.items() if k not in ("output_dir", "progress")}
    if clip.is_dir():
        files = sorted(p for p in clip.iterdir() if p.is_file())
        stamp = {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}
    else:
        st = clip.stat()
        stamp = {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    return {"config": cfg, "clip": str(clip), **stamp}


def needed_bytes(hw: tuple[int, int], frames_left: int, frames_total: int, rows: int) -> int:
    """A generous estimate of what is still to be written: raw RGB per frame PNG and for the video, ~100 bytes a
    losses.csv row."""
    raw = hw[0] * hw[1] * 3
    return frames_left * (raw + 4096) + frames_total * raw + rows * 100 + 64 * 1024


class VideoRun:
    """The run folder of one video run: checked and locked at construction, written from :meth:`begin` on."""

    def __init__(self, out_dir: Path, config: dict, clip: Path, frames_total: int, hw: tuple[int, int],
                 restart: bool = False, video: Path | None = None):
        self.out_dir, self.config, self.frames_total, self.hw = Path(out_dir), config, frames_total, tuple(hw)
        self.frames_dir = self.out_dir / "frames"
        self.print = fingerprint(config, clip)
        self.started = time.time()
        self.records: list[dict] = []
        self.frame = 0  # the frame whose iterations are being logged (1-based)
        self.columns: list[str] | None = None
        self.weights: WeightsInfo | None = None
        self.csv = None
        self.restart, self.begun = restart, False
        self.last: dict | None = None  # the record last written
        prepare_dir(self.out_dir)  # checks, creates and locks the folder (refused if another run holds it)
        try:
            self._check(restart, video)
        except BaseException:
            release_dir(self.out_dir)
            raise

    # ------------------------------------------------------------ folder and resume (nothing written yet)

    def _check(self, restart: bool, video: Path | None) -> None:
        old = self._previous(restart)
        made = old.get("video") if old else None  # the video an earlier run of this folder wrote
        self.video_owned = bool(video) and isinstance(made, str) and (
            made == str(video) or Path(made).resolve() == Path(video).resolve())
        foreign = [p.name for p in self._frame_files() if not is_ours(p)]
        if foreign:
            raise UserError(f"{self.frames_dir} holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}, "
                            f"which no video run wrote; move them away or choose another --output")
        if restart:
            old = None
        elif old is None and self._frame_files():
            raise UserError(f"{self.frames_dir} holds frames but no video run.json; pass --restart to replace them "
                            f"or choose another --output")
        elif old is not None and old.get("fingerprint") != self.print:
            raise UserError(f"output dir {self.out_dir} holds a video run of another config or clip; pass --restart "
                            f"to replace it, or choose another --output")
        self.done = self._finished_frames() if old else 0
        self.records = [r for r in (old or {}).get("frames", []) if isinstance(r, dict) and
                        isinstance(r.get("frame"), int) and r["frame"] <= self.done]
        reclaimed = sum(self._size(p.name) for p in self._frame_files()) if restart else 0  # --restart frees it
        need = needed_bytes(self.hw, self.frames_total - self.done, self.frames_total, self._rows_left())
        try:
            free = shutil.disk_usage(self.out_dir).free
        except OSError as exc:
            raise UserError(f"cannot read the free space of output folder {self.out_dir}: {_why(exc)}") from None
        if free + reclaimed < need:
            raise UserError(f"not enough space: output folder {self.out_dir} has {free / 1e6:.1f} MB free; this "
                            f"video needs about {need / 1e6:.1f} MB")

    def _rows_left(self) -> int:
        opt, v = self.config.get("optimizer") or {}, self.config.get("video") or {}
        first, later = opt.get("iterations", 0), v.get("iterations", 0)
        return (first if self.done == 0 else 0) + later * max(0, self.frames_total - max(self.done, 1))

    def _size(self, name: str) -> int:
        try:
            return (self.frames_dir / name).stat().st_size
        except OSError:
            return 0

    def _frame_files(self) -> list[Path]:
        return sorted(self.frames_dir.glob("frame_*.png")) if self.frames_dir.is_dir() else []

    def _previous(self, restart: bool) -> dict | None:
        path = self.out_dir / "run.json"
        if not path.exists():
            return None
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            old = None
        if not isinstance(old, dict):
            if restart:
                return None
            raise UserError(f"{path} is corrupt (cut short by a crash or a full disk?): pass --restart to run the "
                            f"clip again from its first frame, or choose another --output")
        if old.get("kind") != KIND:
            raise UserError(f"output dir {self.out_dir} holds another kind of run (its run.json is not a video "
                            f"run's); choose another --output")
        return old

    def _finished_frames(self) -> int:
        """Frames 1..n that are kept, each checked to be this run's (its size, its ``nst:frame`` mark)."""
        n = 0
        while n < self.frames_total and (self.frames_dir / frame_name(n + 1)).is_file():
            why = self._not_the_runs(n + 1)
            if why:
                raise UserError(f"kept frame {self.frames_dir / frame_name(n + 1)} {why} (replaced since?): pass "
                                f"--restart to run the clip again, or put the run's frame back")
            n += 1
        return n

    def _not_the_runs(self, index: int) -> str:
        h, w = self.hw
        try:
            with Image.open(self.frames_dir / frame_name(index)) as img:
                size, mark = img.size, getattr(img, "text", {}).get("nst:frame")
        except Exception:  # noqa: BLE001 - unreadable in any way: not a frame to warp from
            return "is not a readable PNG"
        if size != (w, h):
            return f"is {size[0]}x{size[1]}, not the run's {w}x{h}"
        if mark != str(index):
            return f"does not carry the run's mark for frame {index}"
        return ""

    # ------------------------------------------------------------ from here on the folder changes

    def begin(self, weights: WeightsInfo) -> None:
        """Every check has passed: clear the replaced run (--restart), make frames/, open the log."""
        self.weights = weights
        try:
            if self.restart:
                self._clear()
            self.frames_dir.mkdir(parents=True, exist_ok=True)
            self._open_csv()
        except OSError as exc:
            raise UserError(f"cannot write in output folder {self.out_dir}: {_why(exc)}") from None
        self.begun = True

    def _clear(self) -> None:
        for p in self._frame_files():
            p.unlink()
        for name in ("losses.csv", "run.json"):
            (self.out_dir / name).unlink(missing_ok=True)

    def previous_result(self):
        """The last finished frame's PNG as float32, or None when no frame is done."""
        return self.frame_image(self.done) if self.done else None

    def frame_image(self, index: int):
        return read_image(self.frames_dir / frame_name(index), "stylised frame").astype("float32")

    def _open_csv(self) -> None:
        """losses.csv: the finished frames' rows kept (a torn or foreign line dropped), then appended to."""
        path = self.out_dir / "losses.csv"
        rows: list[str] = []
        if self.done and path.exists():
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError):
                lines = []
            if lines and lines[0].startswith(",".join(CSV_HEADER)) and lines[0].endswith(",frame"):
                width = len(lines[0].split(","))
                self.columns = lines[0].split(",")[len(CSV_HEADER):-3]
                rows = [lines[0]] + [ln for ln in lines[1:] if _frame_of(ln, width) is not None
                                     and _frame_of(ln, width) <= self.done]
        write_atomic(path, "".join(r + "\n" for r in rows).encode("utf-8"))
        self.csv = open(path, "a", encoding="utf-8")

    # ------------------------------------------------------------ events

    def __call__(self, ev: Progress) -> None:
        try:
            if self.columns is None:  # frame 1 through ``scales`` has no temporal term yet; later frames do
                self.columns = extra_columns([*ev.terms, *(["temporal"] if "temporal" not in ev.terms else [])])
                self.csv.write(",".join([*CSV_HEADER, *self.columns, "phase", "size", "frame"]) + "\n")
            self.csv.write(",".join([*ev.csv_values(self.columns), str(self.frame)]) + "\n")
            self.csv.flush()
        except OSError as exc:
            raise UserError(f"cannot write losses.csv in {self.out_dir}: {_why(exc)}") from None

    def frame_done(self, index: int, image, record: dict) -> None:
        """Frame ``index`` (1-based) is finished: its PNG, then run.json saying so."""
        try:
            save_png(image, self.frames_dir / frame_name(index),
                     {"nst:config": yaml.safe_dump(self.config, sort_keys=False), "nst:frame": str(index)})
        except OSError as exc:
            raise UserError(f"cannot write frames/{frame_name(index)} in {self.out_dir}: {_why(exc)}") from None
        self.records.append({"frame": index, **record})
        self.done = index
        self.write("running")

    def write(self, status: str, **extra) -> dict:
        w = self.weights
        info = {
            "kind": KIND,
            "status": status,
            "frames_done": self.done,
            "frames_total": self.frames_total,
            "command": command_line(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "wall_seconds_this_session": round(time.time() - self.started, 3),
            "peak_memory_mb": round(peak_memory_mb(), 1),
            "network": w.network if w else None,
            "weights": {"source": w.source, "path": w.path, "sha256": w.sha256} if w else None,
            "versions": versions(),
            **extra,
            "frames": self.records,
            "fingerprint": self.print,
            "config": self.config,
        }
        try:
            write_atomic(self.out_dir / "run.json", json.dumps(info, indent=2).encode("utf-8"))
        except OSError as exc:
            raise UserError(f"cannot write run.json in {self.out_dir}: {_why(exc)}") from None
        self.last = info
        return info

    def abort(self, status: str, error: str = "", **extra) -> str:
        """Record an interrupted, cancelled or failed run (once the folder was begun); returns "" or why
        run.json could not be written (a full disk: the lock's reserve is given up, then it is tried again).
        ``extra`` joins the record (a chunked clip's progress over its chunks)."""
        if not self.begun:
            return ""
        self.close_csv()
        for attempt in range(2):
            try:
                self.write(status, **extra, **({"error": error} if error else {}))
                return ""
            except UserError as exc:
                if attempt:
                    return str(exc)
                free_reserve(self.out_dir)
        return ""

    def close_csv(self) -> None:
        if self.csv is not None and not self.csv.closed:
            try:
                self.csv.close()
            except OSError:
                pass

    def close(self) -> None:
        """The run is over: the log closed, the folder's lock given up."""
        self.close_csv()
        release_dir(self.out_dir)


def _frame_of(line: str, width: int) -> int | None:
    """The frame column of a complete losses.csv row, or None for a torn or foreign line."""
    cells = line.split(",")
    if len(cells) != width:
        return None
    try:
        return int(cells[-1])
    except ValueError:
        return None
