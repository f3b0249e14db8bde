"""Helpers the tests import (``from helpers.checkpoints import reference_digest``).

pytest puts ``tests/`` on ``sys.path`` (``pythonpath`` in pyproject's pytest options), so these
modules import the same way from every test folder and under any combination of test paths.
conftest.py files hold fixtures only: pytest loads several of them under the one module name
``conftest``, so importing a helper from "conftest" found whichever folder's file came first.
"""
