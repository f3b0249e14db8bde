"""Each adapter maps its SDK's exceptions onto the error tree at its seam: throttling and 5xx are
transient (the controller retries), quota/capacity refusals are lost capacity, the rest a refusal.
The exceptions are the SDKs' own classes, built as the SDKs build them from a response."""

from __future__ import annotations

from typing import Any

import pytest

from multispot.errors import CapacityError, ProviderError, TransientProviderError


def boto_error(code: str, status: int) -> Any:
    from botocore.exceptions import ClientError

    body = {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(body, "CreateTrainingJob")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("ThrottlingException", 400, TransientProviderError),  # was once taken as lost capacity
        ("InternalFailure", 500, TransientProviderError),
        ("SomethingNew", 503, TransientProviderError),
        ("ResourceLimitExceeded", 400, CapacityError),
        ("ValidationException", 400, ProviderError),
    ],
)
def test_sagemaker(code: str, status: int, kind: type[Exception]) -> None:
    from multispot_sagemaker.provider import _mapped

    mapped = _mapped(boto_error(code, status), "CreateTrainingJob")
    assert type(mapped) is kind, mapped


@pytest.mark.parametrize(
    ("name", "message", "kind"),
    [
        ("ResourceExhausted", "Quota exceeded for custom_model_training_nvidia_t4_gpus", CapacityError),
        ("ResourceExhausted", "Quota exceeded: requests per minute per region", TransientProviderError),
        ("ServiceUnavailable", "unavailable", TransientProviderError),
        ("InternalServerError", "boom", TransientProviderError),
        ("PermissionDenied", "no", ProviderError),
    ],
)
def test_vertex(name: str, message: str, kind: type[Exception]) -> None:
    from google.api_core import exceptions
    from multispot_vertex.provider import _mapped

    mapped = _mapped(getattr(exceptions, name)(message), "CreateCustomJob")
    assert type(mapped) is kind, mapped


@pytest.mark.parametrize(
    ("status", "transient"), [(429, True), (500, True), (503, True), (400, False), (403, False)]
)
def test_azureml(status: int, transient: bool) -> None:
    from azure.core.exceptions import HttpResponseError
    from multispot_azureml.provider import _transient

    error = HttpResponseError(message="m")
    error.status_code = status
    assert _transient(error) is transient
