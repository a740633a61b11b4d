"""Hyperparameter sweeps: a validated spec (``spec``) searched by Optuna (``search``).

``from striate.sweep.spec import load_spec`` needs nothing beyond striate itself; ``striate.sweep.search``
needs Optuna (``pip install 'striate[sweep]'``). Running trials in parallel (on Ray) comes later.
"""
