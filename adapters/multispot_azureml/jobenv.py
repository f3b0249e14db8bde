"""Azure ML seen from inside a command job, without the Azure SDK.

Registered under ``multispot.job_environments`` (name ``azureml``). Azure ML sets AZUREML_RUN_ID
(and other AZUREML_* variables) in every job, and AZURE_ML_OUTPUT_<name> to the mount path of
each output. Its PyTorch distribution sets RANK/WORLD_SIZE itself; MPI jobs have Open MPI's
OMPI_COMM_WORLD_RANK/SIZE.
"""

from __future__ import annotations

from collections.abc import Mapping

from multispot.jobenv import ServiceEnv, file_uri

NAME = "azureml"
NOTICE_SECONDS = 30.0  # Azure evicts a low-priority/spot VM about 30 s after the Scheduled Event
CHECKPOINT_OUTPUT = "multispot_checkpoints"  # the read-write mounted output holding the contract
OUTPUT_OUTPUT = "multispot_outputs"


def mounted_output(environ: Mapping[str, str], name: str) -> str | None:
    """The mount path Azure ML gives output ``name`` (multispot's, else a plain one), or None."""
    return environ.get(f"AZURE_ML_OUTPUT_multispot_{name}") or environ.get(f"AZURE_ML_OUTPUT_{name}") or None


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


class AzureMLJobEnvironment:
    name = NAME
    notice_seconds = NOTICE_SECONDS
    # A preempted low-priority/spot job is re-queued by the service with its outputs kept; the
    # runtime saves on the notice and waits to be stopped instead of exiting (docs/decisions.md).
    requeues_on_preemption = True

    def recognises(self, environ: Mapping[str, str]) -> bool:
        return any(key.startswith(("AZUREML_", "AZURE_ML_OUTPUT_")) for key in environ)

    def describe(self, environ: Mapping[str, str]) -> ServiceEnv:
        checkpoints, outputs = mounted_output(environ, "checkpoints"), mounted_output(environ, "outputs")
        return ServiceEnv(
            provider=NAME,
            notice_seconds=NOTICE_SECONDS,
            job_id=environ.get("AZUREML_RUN_ID"),
            checkpoint_uri=file_uri(checkpoints) if checkpoints else None,
            output_uri=file_uri(outputs) if outputs else None,
            rank=_int(environ.get("OMPI_COMM_WORLD_RANK")),
            world_size=_int(environ.get("OMPI_COMM_WORLD_SIZE")),
        )


ENVIRONMENT = AzureMLJobEnvironment()
