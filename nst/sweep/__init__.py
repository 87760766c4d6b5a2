"""Parameter sweeps and batch runs: one sweep file, many ordinary runs, on one machine or a Ray cluster.

* :mod:`nst.sweep.spec`    the sweep file (base config, axes) -> points, each a resolved config with its folder key
* :mod:`nst.sweep.point`   one point as an ordinary run (the same function locally and in a Ray worker); resume
* :mod:`nst.sweep.runners` sequential (``--local``) and Ray execution, progress with ETA, Ctrl-C
* :mod:`nst.sweep.report`  ``sweep.csv`` and the contact sheet
* ``python -m nst.sweep SWEEP.yaml``: :mod:`nst.sweep.__main__`
"""
