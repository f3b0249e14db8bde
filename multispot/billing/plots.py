"""Plots of the reports: cumulative actual cost against the on-demand counterfactual (matplotlib)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from multispot.errors import MissingExtra

if TYPE_CHECKING:
    from multispot.billing.model import CostLine, MeasuredCost

PLOT_HINT = "pip install 'multispot[plot]'"


class MissingPlotExtra(MissingExtra):
    """``plot()`` needs matplotlib, which is the optional ``plot`` extra."""


def cumulative(
    lines: Sequence[CostLine],
    title: str,
    ax: Any = None,
    *,
    timed: bool,
    from_zero: bool,
    measured: Iterable[MeasuredCost] = (),
) -> Any:
    """Step lines of the running actual cost and counterfactual over ``lines``, in their order.

    ``timed``: x is each attempt's end (else start) time where known, else its position;
    ``from_zero``: the curves start at 0 at the first attempt's start; ``measured``: a dashed
    line at each billed figure. Returns the matplotlib Axes.
    """
    plt = pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    xs: list[Any] = []
    actual: list[float] = []
    counter: list[float] = []
    if from_zero and lines:
        xs.append(_x(lines[0].started or lines[0].ended, 0, timed))
        actual.append(0.0)
        counter.append(0.0)
    a = c = 0.0
    for i, line in enumerate(lines, start=1):
        a += line.cost or 0.0
        c += line.counterfactual or 0.0
        xs.append(_x(line.ended or line.started, i, timed))
        actual.append(a)
        counter.append(c)
    ax.step(xs, counter, where="post", label="on-demand counterfactual", color="tab:gray")
    ax.step(xs, actual, where="post", label="actual (estimated)", color="tab:green")
    for m in measured:
        ax.axhline(m.amount, linestyle="--", color="tab:blue", label=f"measured ({m.start}..{m.end})")
    ax.set_ylabel("USD, cumulative")
    ax.set_xlabel("time" if timed else "attempt")
    ax.set_title(title)
    ax.legend(loc="upper left")
    return ax


def _x(stamp: float | None, index: int, timed: bool) -> Any:
    if timed and stamp is not None:
        return datetime.fromtimestamp(stamp, tz=timezone.utc)
    return index


def pyplot() -> Any:
    """``matplotlib.pyplot``, on the Agg backend unless there is somewhere to draw."""
    try:
        import matplotlib

        if not _interactive():
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingPlotExtra(f"plotting needs matplotlib: {PLOT_HINT}") from exc
    return plt


def _interactive() -> bool:
    """Inside IPython/Jupyter (keep its inline backend) or with a display to draw on."""
    import os
    import sys

    return "IPython" in sys.modules or bool(os.environ.get("DISPLAY") or os.environ.get("MPLBACKEND"))
