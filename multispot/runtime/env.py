"""What the running job knows about itself: the runtime's face of ``multispot.jobenv``.

A job launched by multispot gets the MULTISPOT_* contract; a script started by hand on a
service (or on a laptop) still works: the service's own variables are recognised by the job
environments adapters register, and with none at all checkpoints go to ``./checkpoints``.
"""

from __future__ import annotations

from collections.abc import Mapping

from multispot.jobenv import DEFAULT_INTERVAL, DEFAULT_KEEP, JobEnv, read

__all__ = ["DEFAULT_INTERVAL", "DEFAULT_KEEP", "JobEnv", "detect"]


def detect(environ: Mapping[str, str] | None = None) -> JobEnv:
    """Read the environment of the running job (``os.environ`` by default).

    Reading the process's own environment first resolves the job's secrets into it
    (``multispot.runtime.secrets.load``); a secret that cannot be resolved raises
    ``SecretUnavailable`` here, at the job's start."""
    if environ is None:
        from multispot.runtime import secrets  # not at import: ``python -m`` runs that module

        secrets.load()
    return read(environ)
