"""Sweeps (Optuna as the engine) and job arrays: many disposable jobs under one budget.

Each trial of a sweep and each task of an array is an ordinary multispot job with its own
controller, checkpoint prefix and cost; the driver (``multispot.sweep.driver``) starts them under
a parallelism cap, a budget and a deadline, and settles each one's outcome. See docs/sweeps.md.
"""

from multispot.sweep.records import Group, GroupNotFound, Member
from multispot.sweep.spec import ArraySpec, GroupFile, Objective, Parameter, SweepSpec, load, load_text
from multispot.sweep.view import Sweep

__all__ = [
    "ArraySpec",
    "Group",
    "GroupFile",
    "GroupNotFound",
    "Member",
    "Objective",
    "Parameter",
    "Sweep",
    "SweepSpec",
    "load",
    "load_text",
]
