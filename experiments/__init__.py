"""Figure scripts: one per paper figure or ablation, each driven by a ``configs/fig_*.yaml``.

``python -m experiments.make_figures [--quick]`` builds them all (see its docstring).
"""
