"""Settings of the opt-in live tests (tests/live/), from MULTISPOT_LIVE_* variables (docs/live-tests.md)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass(frozen=True)
class Account:
    """One cloud's settings for the live tests, from MULTISPOT_LIVE_<PROVIDER>_* variables."""

    provider: str
    options: dict[str, Any]  # provider_options.<provider>, as docs/providers/<provider>.md describes
    instance_type: str | None
    image: str | None  # the job's container image (Vertex needs one; SageMaker/Azure ML have defaults)
    checkpoint_base: str | None  # a URI under which each test run makes its own folder
    secret: str | None  # a secret reference the job's identity may read
    secret_sha256: str | None  # sha256 of that secret's value, to check what the job saw
    timeout: float

    def var(self, suffix: str) -> str:
        return f"MULTISPOT_LIVE_{self.provider.upper()}_{suffix}"


def account(provider: str) -> Account:
    """The settings, or a skip saying which variable is missing."""
    if os.environ.get("MULTISPOT_LIVE") != "1":
        pytest.skip("live tests run only with MULTISPOT_LIVE=1 (they cost money): see docs/live-tests.md")
    prefix = f"MULTISPOT_LIVE_{provider.upper()}"
    raw = os.environ.get(f"{prefix}_OPTIONS")
    if not raw:
        pytest.skip(
            f"{prefix}_OPTIONS is not set (JSON of provider_options.{provider}): see docs/live-tests.md"
        )
    try:
        options = json.loads(raw)
    except json.JSONDecodeError as exc:
        pytest.fail(f"{prefix}_OPTIONS is not JSON: {exc}")
    if not isinstance(options, dict):
        pytest.fail(f"{prefix}_OPTIONS must be a JSON object")
    from multispot import registry

    try:
        registry.get(provider)
    except Exception as exc:  # the extra is not installed
        pytest.skip(f"the {provider} adapter cannot load here: {exc}")
    return Account(
        provider=provider,
        options=options,
        instance_type=os.environ.get(f"{prefix}_INSTANCE") or None,
        image=os.environ.get(f"{prefix}_IMAGE") or None,
        checkpoint_base=(os.environ.get(f"{prefix}_CHECKPOINT_URI") or "").rstrip("/") or None,
        secret=os.environ.get(f"{prefix}_SECRET") or None,
        secret_sha256=os.environ.get(f"{prefix}_SECRET_SHA256") or None,
        timeout=float(os.environ.get("MULTISPOT_LIVE_TIMEOUT") or 5400),
    )
