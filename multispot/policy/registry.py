"""The one registry of recovery policies: each name is one object.

The job spec's allowed ``spot.policy`` names, the controller, the simulator, the dry-run plan,
``multispot simulate --policy`` and the docs all read this table, so a name means the same code
everywhere. Policies read their settings from the job at each decision, so one object serves
every job. This module imports no policy code until one is asked for (``names()`` is what the
job spec validator calls).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from multispot.errors import JobSpecError, Problem

if TYPE_CHECKING:
    from multispot.policy import Policy


def _market(name: str) -> Callable[[], Policy]:
    def make() -> Policy:
        from multispot.policy.market import MarketPolicy

        return MarketPolicy(name)

    return make


def _deadline(cls: str) -> Callable[[], Policy]:
    def make() -> Policy:
        from multispot.policy import deadline

        policy: Policy = getattr(deadline, cls)()
        return policy

    return make


# In the order the docs and ``simulate --policy all`` list them.
_FACTORIES: dict[str, Callable[[], Policy]] = {
    "spot": _market("spot"),
    "on-demand": _market("on-demand"),
    "fallback": _market("fallback"),
    "greedy": _deadline("GreedySpot"),
    "diversified": _deadline("Diversified"),
    "uniform-progress": _deadline("UniformProgress"),
    "deadline-aware": _deadline("DeadlineAware"),
}
_made: dict[str, Policy] = {}


def names() -> tuple[str, ...]:
    return tuple(_FACTORIES)


def get(name: str) -> Policy:
    """The policy registered as ``name``; a JobSpecError listing the names when there is none."""
    if name not in _FACTORIES:
        raise JobSpecError(
            [Problem("spot.policy", f"unknown policy {name!r}: use one of {', '.join(names())}")]
        )
    if name not in _made:
        _made[name] = _FACTORIES[name]()
    return _made[name]


def register(name: str, factory: Callable[[], Policy]) -> None:
    """Add a policy (a plugin's, or a test's); its object is made on first use."""
    _FACTORIES[name] = factory
    _made.pop(name, None)
