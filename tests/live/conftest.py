"""Live tests: real cloud accounts, real (small) bills. Opt-in only: ``make live-test``.

Every test under tests/live/ carries the ``live`` marker (added here, so none can forget it); the
default pytest run deselects ``live`` (pyproject's addopts), and each test also skips unless
``MULTISPOT_LIVE=1`` and its cloud's settings are in the environment (docs/live-tests.md;
``helpers.live.account``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.live)
