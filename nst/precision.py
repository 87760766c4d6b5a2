"""Which numeric path runs: float32, bfloat16 or float16 (Keras mixed precision), each with or without XLA.

Machines differ: on an Intel Xeon with AMX-BF16, bfloat16 through TF's ordinary oneDNN kernels ran ~2.5x
faster than float32 and XLA was slower than both; on an AMD EPYC without AVX-512 the order was reversed.
So nothing is hard-wired: with ``precision: auto`` and/or ``optimizer.xla: auto`` a short timed probe
at the run's size evaluates the objective on each candidate path, drops paths whose loss strays from
float32's, and picks the fastest (a faster path must win by ``MARGIN`` to displace plain float32). The
timings are cached per machine (CPU model and flags, GPU names) and image size in the nst cache, so a
machine probes each size once. Runs too small to repay a probe take float32. What ran and why is printed
and recorded in run.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

MARGIN = 0.10  # a path must be this much faster than plain float32 to be chosen
PROBE_MIN_WORK = 128 * 128 * 200  # pixels x iterations below which a probe costs more than it can save
MAX_REL_ERROR = 0.05  # reduced-precision loss must stay this close to float32's at the probe image
CACHE_FILE = "precision_probe.json"


@dataclass(frozen=True)
class Path_:
    precision: str  # float32 | bfloat16 | float16
    xla: bool

    @property
    def name(self) -> str:
        return self.precision + ("+xla" if self.xla else "")


@dataclass(frozen=True)
class Choice:
    precision: str
    xla: bool
    why: str
    timings: dict[str, float] = field(default_factory=dict)  # path name -> seconds per evaluation

    @property
    def name(self) -> str:
        return Path_(self.precision, self.xla).name

    def record(self) -> dict:
        return {"path": self.name, **asdict(self)}


def has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def machine_key() -> str:
    """CPU model + flags (and GPU names): the things that decide which kernels are fast."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            k, _, v = line.partition(":")
            info.setdefault(k.strip(), v.strip())  # the first processor's entry is enough
    except OSError:
        pass
    model, flags = info.get("model name", platform.processor()), info.get("flags", "")
    gpus = ""
    if has_gpu():
        import tensorflow as tf

        gpus = ",".join(tf.config.experimental.get_device_details(g).get("device_name", "gpu")
                        for g in tf.config.list_physical_devices("GPU"))
    digest = hashlib.sha256(flags.encode()).hexdigest()[:8]
    return f"{model} flags:{digest} cores:{os.cpu_count()}" + (f" gpu:{gpus}" if gpus else "")


def candidates(precision: str, xla) -> list[Path_]:
    """The paths a config allows: explicit values pin, ``auto`` opens."""
    precisions = [precision] if precision != "auto" else (["float32", "bfloat16", "float16"] if has_gpu()
                                                          else ["float32", "bfloat16"])
    xlas = [bool(xla)] if xla != "auto" else [False, True]
    return [Path_(p, x) for p in precisions for x in xlas]


def _load_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_cache(path: Path, data: dict) -> None:
    try:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs a probe next time


Probe = Callable[[Path_], tuple[float, float]]  # path -> (seconds per evaluation, loss at the probe image)


def choose(precision: str, xla, probe: Probe, size_key: str, work: int, cache_dir: Path | None,
           log: Callable[[str], None] = lambda _s: None) -> Choice:
    """Pick the path for a run. ``probe(path)`` times one path; ``work`` = pixels x iterations."""
    paths = candidates(precision, xla)
    if len(paths) == 1:
        return Choice(paths[0].precision, paths[0].xla, "set in the config")
    base = Path_("float32", False) if Path_("float32", False) in paths else paths[0]
    if work < PROBE_MIN_WORK:
        return Choice(base.precision, base.xla, f"run too small to repay a probe ({work:,} px x iterations)")
    key = machine_key()
    cache_path = cache_dir / CACHE_FILE if cache_dir else None
    cache = _load_cache(cache_path) if cache_path else {}
    known: dict = cache.get(key, {}).get(size_key, {})
    timings, losses = {}, {}
    cached = all(p.name in known for p in paths)
    for p in paths:
        if p.name in known:
            timings[p.name] = known[p.name]
            continue
        try:
            seconds, loss = probe(p)
        except Exception as exc:  # a path this machine cannot run (no kernel, out of memory) is left out
            log(f"precision probe: {p.name} failed ({type(exc).__name__}); left out")
            timings[p.name] = None
            continue
        timings[p.name], losses[p.name] = seconds, loss
    ref = losses.get(base.name)
    for name, loss in losses.items():  # a path whose loss strays from float32's is not "correct"
        if ref and (loss != loss or abs(loss - ref) > MAX_REL_ERROR * abs(ref)):
            log(f"precision probe: {name} loss {loss:.4g} vs float32 {ref:.4g}; left out")
            timings[name] = None
    if cache_path is not None and not cached:
        cache.setdefault(key, {})[size_key] = {**known, **timings}
        _save_cache(cache_path, cache)
    usable = {n: t for n, t in timings.items() if t is not None}
    if not usable:
        return Choice(base.precision, base.xla, "every probed path failed; float32", timings)
    best = min(usable, key=usable.get)
    base_t = usable.get(base.name)
    if base_t is not None and best != base.name and usable[best] > (1 - MARGIN) * base_t:
        best = base.name  # not faster by the margin: keep the reference path
    chosen = next(p for p in paths if p.name == best)
    how = "cached probe" if cached else "probe"
    table = ", ".join(f"{n} {t:.3f}s" if t is not None else f"{n} -" for n, t in timings.items())
    return Choice(chosen.precision, chosen.xla, f"fastest by {how} at {size_key} on {key}: {table}", timings)


def time_step(step, image, repeats: int = 2, give_up_after: float | None = None) -> tuple[float, float]:
    """One warm-up call (tracing, compiling), then the best of ``repeats`` timed calls: (seconds, loss).

    A warm-up slower than ``give_up_after`` seconds is its own answer: a path that slow loses anyway (bf16
    without AVX-512 ran ~60 s per evaluation at 512 px), and timing it again would only cost minutes.
    """
    start = time.perf_counter()
    terms, grad = step(image)
    grad.numpy()
    warm = time.perf_counter() - start
    if give_up_after is not None and warm > give_up_after:
        return warm, float(terms["total"])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        terms, grad = step(image)
        grad.numpy()
        best = min(best, time.perf_counter() - start)
    return best, float(terms["total"])
