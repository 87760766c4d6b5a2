"""Parameter sweeps and batch runs: one sweep file, many ordinary runs, on one machine or a Ray cluster.

* :mod:`experiments.sweep.spec`    the sweep file (base config, axes) -> points, each a resolved config with its folder key
* :mod:`experiments.sweep.point`   one point as an ordinary run (the same function locally and in a Ray worker); resume
* :mod:`experiments.sweep.runners` sequential (``--local``) and Ray execution, progress with ETA, Ctrl-C
* :mod:`experiments.sweep.report`  ``sweep.csv`` and the contact sheet
* ``python -m experiments.sweep SWEEP.yaml``: :mod:`experiments.sweep.__main__`
"""
