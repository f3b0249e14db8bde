"""Provider discovery through the ``multispot.providers`` entry-point group, loaded lazily.

First-party adapters register exactly as a third party would; importing one happens only when
that provider is asked for, so nothing here pulls in a cloud SDK.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any

from multispot.errors import ProviderNotFound
from multispot.provider import Provider

GROUP = "multispot.providers"

# Install hints for first-party providers that ship as extras of the one wheel.
INSTALL_HINTS = {
    "sagemaker": "pip install 'multispot[sagemaker]'",
    "vertex": "pip install 'multispot[vertex]'",
    "azureml": "pip install 'multispot[azureml]'",
}


@cache
def available() -> tuple[str, ...]:
    """Names of the registered providers, without importing any of them. Read once per process,
    as ``get`` loads each provider once: listing entry points reads every installed package's
    metadata, and every job spec validated (each controller step) asks for these names."""
    return tuple(sorted({ep.name for ep in entry_points(group=GROUP)}))


@cache
def get(name: str, **options: Any) -> Provider:
    """The provider registered as ``name``; a clear error with the install command if it is absent."""
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        hint = INSTALL_HINTS.get(name)
        known = ", ".join(available()) or "none"
        raise ProviderNotFound(
            f"provider {name!r} is not installed: "
            + (f"run {hint}" if hint else f"registered providers are {known}")
        )
    try:
        factory = found[0].load()
    except ImportError as exc:
        hint = INSTALL_HINTS.get(name, f"reinstall the package that provides {name!r}")
        raise ProviderNotFound(f"provider {name!r} cannot be loaded ({exc}): {hint}") from exc
    provider = factory(**options)
    if not isinstance(provider, Provider):
        raise ProviderNotFound(f"{found[0].value} does not implement the multispot Provider protocol")
    return provider
