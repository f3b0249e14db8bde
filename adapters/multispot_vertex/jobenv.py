"""Vertex AI seen from inside a custom job, without the Google SDK.

Registered under ``multispot.job_environments`` (name ``vertex``). Vertex sets CLOUD_ML_JOB_ID,
the AIP_* directories (AIP_MODEL_DIR, AIP_CHECKPOINT_DIR under baseOutputDirectory) and, for
distributed jobs, CLUSTER_SPEC (the worker pools' replicas and this replica's pool and index).
Buckets are mounted with Cloud Storage FUSE under /gcs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from multispot.jobenv import ServiceEnv, file_uri

NAME = "vertex"
NOTICE_SECONDS = 30.0  # Spot VMs: 30 s between the soft and the hard off (GCE preemption)
FUSE_ROOT = "/gcs"  # Cloud Storage FUSE mount inside Vertex custom-job containers
FUSE_ROOT_ENV = "MULTISPOT_GCS_FUSE_ROOT"  # tests point it at a temporary folder
TRAINING_POOLS = ("workerpool0", "workerpool1")  # pool 2 is the reduction server, 3 the evaluator


def fuse_local(uri: str, environ: Mapping[str, str]) -> str:
    """gs://b/p as the file:// URI of /gcs/b/p when the FUSE mount is there, else unchanged."""
    root = Path(environ.get(FUSE_ROOT_ENV, FUSE_ROOT))
    if uri.startswith("gs://") and root.is_dir():
        return file_uri(str(root / uri[len("gs://") :]))
    return uri


def _rank(spec_text: str | None) -> tuple[int | None, int | None]:
    try:
        spec = json.loads(spec_text) if spec_text else None
    except json.JSONDecodeError:
        return None, None
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster"), dict):
        return None, None
    cluster, task = spec["cluster"], spec.get("task") or {}
    sizes = [len(cluster.get(pool) or []) for pool in TRAINING_POOLS]
    world = sum(sizes) or None
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in TRAINING_POOLS or not isinstance(index, int):
        return None, world
    return sum(sizes[: TRAINING_POOLS.index(kind)]) + index, world


class VertexJobEnvironment:
    name = NAME
    notice_seconds = NOTICE_SECONDS

    def recognises(self, environ: Mapping[str, str]) -> bool:
        return (
            "CLOUD_ML_JOB_ID" in environ
            or "CLUSTER_SPEC" in environ
            or any(k.startswith("AIP_") for k in environ)
        )

    def describe(self, environ: Mapping[str, str]) -> ServiceEnv:
        rank, world = _rank(environ.get("CLUSTER_SPEC"))
        checkpoint = environ.get("AIP_CHECKPOINT_DIR")
        return ServiceEnv(
            provider=NAME,
            notice_seconds=NOTICE_SECONDS,
            job_id=environ.get("CLOUD_ML_JOB_ID"),
            checkpoint_uri=fuse_local(checkpoint, environ) if checkpoint else None,
            output_uri=environ.get("AIP_MODEL_DIR"),
            rank=rank,
            world_size=world,
        )


ENVIRONMENT = VertexJobEnvironment()
