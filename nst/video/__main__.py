"""``python -m nst.video``: see :mod:`nst.video.run`."""

from nst.cli import run_main
from nst.video.run import main

raise SystemExit(run_main(main))
