"""A video run's folder, and resuming it.

```
OUT/                      the run folder (``--output OUT.mp4`` -> OUT/; else output_dir)
  frames/frame_00001.png  every stylised frame, written atomically when the frame is finished
  losses.csv              iteration,content,style,tv,total,seconds,temporal,phase,size,frame: every iteration
                          (the nst columns, so nst.plot reads it; iteration and seconds restart each frame)
  run.json                status, frames done / total, per-frame record, config, weights, versions
```

``run.json`` is rewritten after every frame, so an interrupted run (Ctrl-C, kill, crash, cancel) says how far
it got, and the same command later resumes after the last finished frame: that frame's PNG is the previous
result the next frame is warped from (uninterrupted runs warp from the same 8-bit frames, so a resumed run
gives the same frames). A folder holding another config's or clip's run is refused unless ``--restart``,
which removes only what a video run writes there.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from nst.errors import UserError
from nst.events import CSV_HEADER, Progress, extra_columns
from nst.images import read_image, save_png
from nst.outputs import command_line, peak_memory_mb, versions, write_atomic
from nst.video.io import frame_name
from nst.weights import WeightsInfo

KIND = "nst.video"


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


class VideoRun:
    def __init__(self, out_dir: Path, config: dict, clip: Path, frames_total: int, weights: WeightsInfo,
                 restart: bool = False):
        self.out_dir, self.config, self.frames_total, self.weights = out_dir, config, frames_total, weights
        self.frames_dir = out_dir / "frames"
        self.print = fingerprint(config, clip)
        self.started = time.time()
        self.records: list[dict] = []
        self.frame = 0  # the frame whose iterations are being logged (1-based)
        self.columns: list[str] | None = None
        self._open(restart)

    # ------------------------------------------------------------ folder and resume

    def _open(self, restart: bool) -> None:
        try:
            self.frames_dir.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=self.out_dir)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise UserError(f"output dir {self.out_dir} is not writable: {exc.strerror or exc}") from None
        old = self._previous()
        if restart:
            self._clear()
            old = None
        elif old is None and any(self.frames_dir.glob("frame_*.png")):
            raise UserError(f"{self.frames_dir} holds frames but no video run.json; pass --restart to replace them "
                            f"or choose another --output")
        elif old is not None and old.get("fingerprint") != self.print:
            raise UserError(f"output dir {self.out_dir} holds a video run of another config or clip; pass --restart "
                            f"to replace it, or choose another --output")
        self.done = self._finished_frames() if old else 0
        self.records = [r for r in (old or {}).get("frames", []) if r["frame"] <= self.done]
        self._open_csv()

    def _previous(self) -> dict | None:
        path = self.out_dir / "run.json"
        if not path.exists():
            return None
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
        if old.get("kind") != KIND:
            raise UserError(f"output dir {self.out_dir} holds another kind of run (its run.json is not a video "
                            f"run's); choose another --output")
        return old

    def _clear(self) -> None:
        for p in self.frames_dir.glob("frame_*.png"):
            p.unlink()
        for name in ("losses.csv", "run.json"):
            (self.out_dir / name).unlink(missing_ok=True)

    def _finished_frames(self) -> int:
        n = 0
        while n < self.frames_total and (self.frames_dir / frame_name(n + 1)).is_file():
            n += 1
        return n

    def previous_result(self):
        """The last finished frame's PNG as float32, or None when no frame is done."""
        return self.frame_image(self.done) if self.done else None

    def frame_image(self, index: int):
        return read_image(self.frames_dir / frame_name(index), "stylised frame").astype("float32")

    def _open_csv(self) -> None:
        path = self.out_dir / "losses.csv"
        rows: list[str] = []
        if self.done and path.exists():  # keep the finished frames' rows, drop the interrupted frame's
            lines = path.read_text(encoding="utf-8").splitlines()
            if lines:
                self.columns = lines[0].split(",")[len(CSV_HEADER):-3]
                rows = [lines[0]] + [ln for ln in lines[1:] if ln and int(ln.rsplit(",", 1)[1]) <= self.done]
        self.csv = open(path, "w", encoding="utf-8")
        self.csv.write("".join(r + "\n" for r in rows))
        self.csv.flush()

    # ------------------------------------------------------------ events

    def __call__(self, ev: Progress) -> None:
        if self.columns is None:  # frame 1 through ``scales`` has no temporal term yet; later frames do
            self.columns = extra_columns([*ev.terms, *(["temporal"] if "temporal" not in ev.terms else [])])
            self.csv.write(",".join([*CSV_HEADER, *self.columns, "phase", "size", "frame"]) + "\n")
        self.csv.write(",".join([*ev.csv_values(self.columns), str(self.frame)]) + "\n")
        self.csv.flush()

    def frame_done(self, index: int, image, record: dict) -> None:
        """Frame ``index`` (1-based) is finished: its PNG, then run.json saying so."""
        save_png(image, self.frames_dir / frame_name(index), {"nst:config": yaml.safe_dump(self.config, sort_keys=False),
                                                            "nst:frame": str(index)})
        self.records.append({"frame": index, **record})
        self.done = index
        self.write("running")

    def write(self, status: str, **extra) -> dict:
        info = {
            "kind": KIND,
            "status": status,
            "frames_done": self.done,
            "frames_total": self.frames_total,
            "command": command_line(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "wall_seconds_this_session": round(time.time() - self.started, 3),
            "peak_memory_mb": round(peak_memory_mb(), 1),
            "network": self.weights.network,
            "weights": {"source": self.weights.source, "path": self.weights.path, "sha256": self.weights.sha256},
            "versions": versions(),
            **extra,
            "frames": self.records,
            "fingerprint": self.print,
            "config": self.config,
        }
        write_atomic(self.out_dir / "run.json", json.dumps(info, indent=2).encode("utf-8"))
        return info

    def close(self) -> None:
        if not self.csv.closed:
            self.csv.close()
