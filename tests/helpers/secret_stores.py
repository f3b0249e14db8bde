"""Fakes of GCP Secret Manager (+ the metadata server) and Azure Key Vault (+ IMDS) on loopback.

They speak the REST wire protocol the resolvers use, and refuse what the services refuse:

GCP
- Metadata server token: https://cloud.google.com/compute/docs/metadata/querying-metadata
  (a request without ``Metadata-Flavor: Google``, or with ``X-Forwarded-For``, is refused with 403)
  and https://cloud.google.com/compute/docs/access/authenticate-workloads (the token's JSON:
  access_token, expires_in, token_type).
- ``projects.secrets.versions.access``:
  https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets.versions/access
  (``payload.data`` base64; ``latest`` is the newest enabled version; errors are the Google API
  error shape ``{"error": {"code", "message", "status"}}`` with 401 UNAUTHENTICATED without a
  valid token, 403 PERMISSION_DENIED without secretAccessor, 404 NOT_FOUND for an unknown secret
  or version, 400 FAILED_PRECONDITION for a disabled version).

Azure
- IMDS token: https://learn.microsoft.com/entra/identity/managed-identities-azure-resources/how-to-use-vm-token
  (``Metadata: true`` is required, else 400; ``api-version`` and ``resource`` are required; a VM
  without an identity answers 400 ``Identity not found``).
- Get Secret: https://learn.microsoft.com/rest/api/keyvault/secrets/get-secret/get-secret
  (``api-version`` required; 401 without a bearer token for the vault's audience; 403 Forbidden
  without access; 404 SecretNotFound; the answer's ``value`` is the secret). The fake serves every
  vault under ``/{vault}``: ``MULTISPOT_AZURE_KEYVAULT_URL=http://127.0.0.1:PORT/{vault}``.
"""

from __future__ import annotations

import base64
import json
import secrets as pysecrets
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class _State:
    token: str = field(default_factory=lambda: pysecrets.token_hex(16))
    fail_next: int = 0  # answer this many requests with 503 first (a service hiccup)
    requests: list[str] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    fake: Any

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        state = self.fake.state
        state.requests.append(self.path)
        if state.fail_next:
            state.fail_next -= 1
            self._send(
                503,
                {"error": {"code": 503, "message": "The service is unavailable.", "status": "UNAVAILABLE"}},
            )
            return
        status, body = self.fake.answer(self)
        self._send(status, body)


@contextmanager
def _serve(fake: Any) -> Iterator[str]:
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --------------------------------------------------------------------------- GCP


def _google_error(code: int, status: str, message: str) -> tuple[int, dict[str, Any]]:
    return code, {"error": {"code": code, "message": message, "status": status}}


@dataclass
class FakeSecretManager:
    """Secrets by (project, secret): a list of (value, enabled) versions, numbered from 1."""

    secrets: dict[tuple[str, str], list[tuple[str, bool]]] = field(default_factory=dict)
    denied: set[tuple[str, str]] = field(default_factory=set)
    state: _State = field(default_factory=_State)
    project_number: str = "123456789012"

    def add(self, project: str, secret: str, value: str, enabled: bool = True) -> None:
        self.secrets.setdefault((project, secret), []).append((value, enabled))

    def answer(self, req: BaseHTTPRequestHandler) -> tuple[int, dict[str, Any]]:
        path = urllib.parse.urlsplit(req.path).path
        if path == "/computeMetadata/v1/instance/service-accounts/default/token":
            if req.headers.get("Metadata-Flavor") != "Google" or req.headers.get("X-Forwarded-For"):
                return 403, {}  # the metadata server refuses requests without the header
            return 200, {"access_token": self.state.token, "expires_in": 3599, "token_type": "Bearer"}
        if not path.startswith("/v1/") or not path.endswith(":access"):
            return _google_error(404, "NOT_FOUND", "The requested URL was not found on this server.")
        if req.headers.get("Authorization") != f"Bearer {self.state.token}":
            return _google_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token.",
            )
        parts = urllib.parse.unquote(path[len("/v1/") : -len(":access")]).split("/")
        if len(parts) != 6 or parts[0] != "projects" or parts[2] != "secrets" or parts[4] != "versions":
            return _google_error(400, "INVALID_ARGUMENT", "Invalid resource field value in the request.")
        project, secret, version = parts[1], parts[3], parts[5]
        if (project, secret) in self.denied:
            return _google_error(
                403,
                "PERMISSION_DENIED",
                f"Permission 'secretmanager.versions.access' denied for resource "
                f"'projects/{project}/secrets/{secret}/versions/{version}' (or it may not exist).",
            )
        versions = self.secrets.get((project, secret), [])
        if version == "latest":
            enabled = [i for i, (_, on) in enumerate(versions, 1) if on]
            number = enabled[-1] if enabled else 0
        else:
            number = int(version) if version.isdigit() else 0
        if not 1 <= number <= len(versions):
            return _google_error(
                404,
                "NOT_FOUND",
                f"Secret [projects/{self.project_number}/secrets/{secret}] not found or has no versions.",
            )
        value, on = versions[number - 1]
        name = f"projects/{self.project_number}/secrets/{secret}/versions/{number}"
        if not on:
            return _google_error(400, "FAILED_PRECONDITION", f"{name} is in DISABLED state.")
        return 200, {"name": name, "payload": {"data": base64.b64encode(value.encode()).decode()}}


@contextmanager
def gcp_secret_manager() -> Iterator[tuple[FakeSecretManager, dict[str, str]]]:
    """The fake, and the environment that points the resolver at it."""
    fake = FakeSecretManager()
    with _serve(fake) as host:
        yield (
            fake,
            {"GCE_METADATA_HOST": host, "CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER": f"http://{host}/"},
        )


# --------------------------------------------------------------------------- Azure


VAULT_AUDIENCE = "https://vault.azure.net"


def _kv_error(status: int, code: str, message: str, inner: str | None = None) -> tuple[int, dict[str, Any]]:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner}
    return status, {"error": error}


@dataclass
class FakeKeyVault:
    """Secrets by (vault, name): a list of (version id, value, enabled); the last is current."""

    secrets: dict[tuple[str, str], list[tuple[str, str, bool]]] = field(default_factory=dict)
    denied: set[str] = field(default_factory=set)  # vaults the identity has no access to
    identity: bool = True  # the compute has a managed identity
    client_ids: set[str] | None = None  # user-assigned identities: IMDS needs client_id then
    state: _State = field(default_factory=_State)
    tokens: dict[str, str] = field(default_factory=dict)  # token -> resource it was issued for

    def add(self, vault: str, name: str, value: str, enabled: bool = True) -> str:
        version = pysecrets.token_hex(16)
        self.secrets.setdefault((vault, name.lower()), []).append((version, value, enabled))
        return version

    def answer(self, req: BaseHTTPRequestHandler) -> tuple[int, dict[str, Any]]:
        url = urllib.parse.urlsplit(req.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/metadata/identity/oauth2/token":
            if req.headers.get("Metadata") != "true":
                return 400, {
                    "error": "invalid_request",
                    "error_description": "Required metadata header not specified",
                }
            if "api-version" not in query or "resource" not in query:
                return 400, {
                    "error": "invalid_request",
                    "error_description": "Required query variable missing",
                }
            if not self.identity or (
                self.client_ids is not None and query.get("client_id") not in self.client_ids
            ):
                return 400, {"error": "invalid_request", "error_description": "Identity not found"}
            token = pysecrets.token_hex(16)
            self.tokens[token] = query["resource"]
            return 200, {
                "access_token": token,
                "expires_in": "3599",
                "resource": query["resource"],
                "token_type": "Bearer",
            }
        parts = url.path.strip("/").split("/")
        if len(parts) not in (3, 4) or parts[1] != "secrets":
            return _kv_error(404, "NotFound", "The requested resource was not found.")
        if query.get("api-version") != "7.4":
            return _kv_error(400, "BadParameter", "The request URI contains an invalid API version.")
        auth = req.headers.get("Authorization", "")
        resource = self.tokens.get(auth[len("Bearer ") :]) if auth.startswith("Bearer ") else None
        if resource is None or resource.rstrip("/") != VAULT_AUDIENCE:
            return _kv_error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
        vault, name = parts[0], parts[2]
        if vault in self.denied:
            return _kv_error(
                403,
                "Forbidden",
                f"Caller is not authorized to perform action on resource. Action: "
                f"'Microsoft.KeyVault/vaults/secrets/getSecret/action' Vault: {vault}",
                "ForbiddenByRbac",
            )
        versions = self.secrets.get((vault, name.lower()), [])
        wanted = parts[3] if len(parts) == 4 else None
        found = [v for v in versions if v[0] == wanted] if wanted else versions[-1:]
        if not found:
            return _kv_error(
                404,
                "SecretNotFound",
                f"A secret with (name/id) {name}{'/' + wanted if wanted else ''} was not found in this key vault.",
            )
        version, value, enabled = found[0]
        if not enabled:
            return _kv_error(
                403, "Forbidden", "Operation get is not allowed on a disabled secret.", "SecretDisabled"
            )
        return 200, {
            "value": value,
            "id": f"https://{vault}.vault.azure.net/secrets/{name}/{version}",
            "attributes": {"enabled": True},
        }


@contextmanager
def azure_key_vault() -> Iterator[tuple[FakeKeyVault, dict[str, str]]]:
    """The fake, and the environment that points the resolver at it."""
    fake = FakeKeyVault()
    with _serve(fake) as host:
        yield (
            fake,
            {
                "AZURE_POD_IDENTITY_AUTHORITY_HOST": f"http://{host}",
                "MULTISPOT_AZURE_KEYVAULT_URL": f"http://{host}/{{vault}}",
            },
        )
