"""``python -m experiments.sweep SWEEP.yaml [--set k=v] [--address HOST:PORT|auto|ray://HOST:PORT] [--local]
[--max-parallel N] [--rerun-failed] [--max-points N] [--connect-timeout S]``: run every point of a sweep file, then
write ``sweep.csv`` and the contact sheet.

The sweep folder is locked for the sweep (nst.outputs' folder lock): a second sweep into it is refused, so two
sweeps never redo each other's points. :func:`experiments.sweep.runners.run_points` (resume, then the runner, then
one outcome per point) also serves the figure scripts.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from nst.cli import run_main, say
from nst.errors import UserError
from experiments.sweep.report import contact_sheet, rows, score, write_csv
from experiments.sweep.runners import Execution, Interrupted, run_points
from experiments.sweep.spec import Point, SweepFile, expand, load_sweep, sweep_dir, varying_keys
from nst.outputs import prepare_dir, release_dir


def report(sweep: SweepFile, points: list[Point], outcomes: dict[int, dict]) -> tuple[Path, Path]:
    out = sweep_dir(sweep)
    varying = varying_keys(points)
    scores = score(points, outcomes, sweep.score, sweep.set) if sweep.score else {}
    table = write_csv(rows(points, outcomes, varying, scores), out / "sweep.csv")
    title = f"{Path(sweep.path).name}: {len(points)} points" + (f" over {', '.join(varying)}" if varying else "")
    sheet = contact_sheet(points, outcomes, varying, out / "contact_sheet.png", title, sweep.thumbnail)
    return table, sheet


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.sweep", description="Run a parameter sweep from a sweep file.")
    p.add_argument("sweep", help="sweep file (YAML; see docs/SWEEPS.md)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a run-config key of every point, e.g. --set image.size=64")
    p.add_argument("--output", metavar="DIR", help="sweep folder (overrides the sweep file's output_dir)")
    p.add_argument("--address", metavar="ADDR",
                   help="Ray cluster: HOST:PORT (the head), auto (the one `ray start` made here) or "
                        "ray://HOST:PORT; default: a new local Ray")
    p.add_argument("--local", action="store_true", help="no Ray: run the points one after another in this process")
    p.add_argument("--max-parallel", type=int, metavar="N", help="at most N points at once (Ray)")
    p.add_argument("--rerun-failed", action="store_true", help="run failed points again (finished ones are kept)")
    p.add_argument("--list", action="store_true", help="print the points and their folders, run nothing")
    p.add_argument("--max-points", type=int, metavar="N",
                   help="refuse a sweep of more than N points (default: the file's max_points, else 1000)")
    p.add_argument("--connect-timeout", type=float, default=60.0, metavar="S",
                   help="seconds to wait for the cluster of --address (default 60)")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.max_parallel is not None and args.max_parallel < 1:
        raise UserError(f"--max-parallel must be at least 1, got {args.max_parallel}")
    if args.local and args.address:
        raise UserError("--local and --address exclude each other")
    if args.max_points is not None and args.max_points < 1:
        raise UserError(f"--max-points must be at least 1, got {args.max_points}")
    if not 0 < args.connect_timeout <= 3600:
        raise UserError(f"--connect-timeout must be in (0, 3600] seconds, got {args.connect_timeout:g}")
    if args.address:
        check_address(args.address)
    sweep = load_sweep(args.sweep, args.set)
    if args.output:
        import dataclasses

        sweep = dataclasses.replace(sweep, output_dir=str(Path(args.output).resolve()))
    kind, points = expand(sweep, args.max_points)
    say(f"sweep {Path(sweep.path).name}: {len(points)} {kind.name} points over "
        f"{', '.join(varying_keys(points)) or '(nothing varies)'} -> {sweep_dir(sweep)}")
    if args.list:
        for p in points:
            print(f"{p.index}\t{p.folder or '-'}\t{p.label}\t{p.error}")
        return 0
    prepare_dir(sweep_dir(sweep))  # creates and locks it: a second sweep into this folder is refused
    try:
        return _run(sweep, kind, points, args)
    finally:
        release_dir(sweep_dir(sweep))


def check_address(address: str) -> None:
    """``auto``, ``local``, ``HOST:PORT`` or ``ray://HOST:PORT``, else a one-line refusal."""
    from nst.cluster import host_port

    if address not in ("auto", "local"):
        host_port(address)  # the one-line refusal names HOST:PORT


def _run(sweep: SweepFile, kind, points: list[Point], args) -> int:
    how = Execution(local=args.local, address=args.address, max_parallel=args.max_parallel,
                    resources=sweep.resources, rerun_failed=args.rerun_failed, connect_timeout=args.connect_timeout)
    start = time.time()
    try:
        outcomes = run_points(kind.name, points, how)
    except Interrupted as exc:
        report(sweep, points, exc.args[0])
        say(f"interrupted: running points stopped and recorded; {sweep_dir(sweep) / 'sweep.csv'} written; "
            f"run the sweep again to resume")
        return 130
    table, sheet = report(sweep, points, outcomes)
    failed = sum(o["status"] != "finished" for o in outcomes.values())
    say(f"sweep done in {time.time() - start:.0f} s: {len(points) - failed} finished, {failed} failed -> "
        f"{table}, {sheet}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
