"""``gcp-secretmanager://projects/P/secrets/S[/versions/V]``: a Secret Manager secret, resolved in the job.

``V`` defaults to ``latest``. The job's service account needs ``roles/secretmanager.secretAccessor``
on the secret. Standard library only, so it works in any image:

- a token from the metadata server (``GET http://metadata.google.internal/computeMetadata/v1/
  instance/service-accounts/default/token`` with ``Metadata-Flavor: Google``;
  https://cloud.google.com/compute/docs/access/authenticate-workloads#applications);
- ``GET https://secretmanager.googleapis.com/v1/{name}:access`` with that bearer token, whose
  answer carries the value base64-encoded in ``payload.data``
  (https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets.versions/access).

Hosts can be moved the way Google's own tools allow: ``GCE_METADATA_HOST`` (google-auth's) and
``CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER`` (gcloud's); the tests point them at a fake.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

from multispot.errors import SecretUnavailable
from multispot.runtime.secrets import api_refusal, bearer_token, http_json

SCHEME = "gcp-secretmanager"
PREFIX = f"{SCHEME}://"
METADATA_HOST = "metadata.google.internal"
API = "https://secretmanager.googleapis.com/"
TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
# Project ids: 6-30 lowercase letters, digits, '-'; or the project number. Secret ids: 1-255 of
# letters, digits, '_' and '-'. Versions: a number, "latest", or an alias.
_NAME = re.compile(
    r"projects/([a-z][a-z0-9-]{4,28}[a-z0-9]|\d{1,20})/secrets/([A-Za-z0-9_-]{1,255})"
    r"(?:/versions/(latest|[1-9]\d{0,18}|[A-Za-z][A-Za-z0-9_-]{0,62}))?"
)


_HINTS = {
    403: "grant the job's service account roles/secretmanager.secretAccessor on it",
    404: "check the project, the secret's name and that the version is enabled",
}


class GcpSecretManager:
    scheme = SCHEME

    def check(self, reference: str) -> str | None:
        if not _NAME.fullmatch(reference[len(PREFIX) :]):
            return (
                f"{reference!r}: write gcp-secretmanager://projects/PROJECT/secrets/SECRET"
                "[/versions/VERSION] (VERSION: a number or latest, the default)"
            )
        return None

    def resolve(self, reference: str, environ: Mapping[str, str]) -> str:
        name = reference[len(PREFIX) :]
        if "/versions/" not in name:
            name += "/versions/latest"
        metadata = environ.get("GCE_METADATA_HOST") or METADATA_HOST
        status, body = http_json(f"http://{metadata}{TOKEN_PATH}", {"Metadata-Flavor": "Google"}, direct=True)
        token = bearer_token(status, body, "the metadata server (is this running on Google Cloud?)")
        api = (environ.get("CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER") or API).rstrip("/")
        status, body = http_json(f"{api}/v1/{name}:access", {"Authorization": f"Bearer {token}"})
        if status != 200:
            raise api_refusal(status, body, "status", _HINTS)
        payload = body.get("payload")
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, str):
            raise SecretUnavailable("the answer has no payload.data")
        try:
            return base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise SecretUnavailable("the secret's payload is not UTF-8 text") from None


RESOLVER = GcpSecretManager()
