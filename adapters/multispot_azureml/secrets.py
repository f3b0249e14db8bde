"""``azure-keyvault://VAULT/NAME[/VERSION]``: a Key Vault secret, resolved inside the job.

``VERSION`` defaults to the current one. The identity the job runs as (the compute's managed
identity; with a user-assigned one Azure ML sets ``DEFAULT_IDENTITY_CLIENT_ID``) needs the
"Key Vault Secrets User" role on the vault (or a get-secret access policy). Standard library only:

- a token from the Instance Metadata Service (``GET http://169.254.169.254/metadata/identity/
  oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net`` with ``Metadata: true``;
  https://learn.microsoft.com/entra/identity/managed-identities-azure-resources/how-to-use-vm-token);
- ``GET https://VAULT.vault.azure.net/secrets/NAME/VERSION?api-version=7.4`` with that bearer
  token; the answer's ``value`` is the secret
  (https://learn.microsoft.com/rest/api/keyvault/secrets/get-secret/get-secret).

Hosts can be moved for tests: ``AZURE_POD_IDENTITY_AUTHORITY_HOST`` (azure-identity's IMDS
override) and ``MULTISPOT_AZURE_KEYVAULT_URL`` (a URL with ``{vault}`` in it; the tests' fake).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping

from multispot.errors import SecretUnavailable
from multispot.runtime.secrets import api_refusal, bearer_token, http_json

SCHEME = "azure-keyvault"
PREFIX = f"{SCHEME}://"
IMDS = "http://169.254.169.254"
IMDS_OVERRIDE = "AZURE_POD_IDENTITY_AUTHORITY_HOST"
VAULT_URL = "https://{vault}.vault.azure.net"
VAULT_URL_OVERRIDE = "MULTISPOT_AZURE_KEYVAULT_URL"  # a testing hook, like MULTISPOT_FAULT
API_VERSION = "7.4"
RESOURCE = "https://vault.azure.net"
# Vault names: 3-24 letters, digits and '-', starting with a letter, not ending with '-', no '--'.
# Secret names: 1-127 letters, digits and '-'. Versions: 32 hex digits.
_VAULT = re.compile(r"(?!.*--)[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]")
_SECRET = re.compile(r"[A-Za-z0-9-]{1,127}")
_VERSION = re.compile(r"[0-9a-fA-F]{32}")


_HINTS = {
    401: "the token was refused",
    403: "give the job's identity the Key Vault Secrets User role on the vault",
    404: "check the vault, the secret's name and its version",
}


class AzureKeyVault:
    scheme = SCHEME

    def check(self, reference: str) -> str | None:
        parts = reference[len(PREFIX) :].split("/")
        if (
            len(parts) not in (2, 3)
            or not _VAULT.fullmatch(parts[0])
            or not _SECRET.fullmatch(parts[1])
            or (len(parts) == 3 and not _VERSION.fullmatch(parts[2]))
        ):
            return (
                f"{reference!r}: write azure-keyvault://VAULT/NAME[/VERSION] (VAULT: the vault's "
                "name, 3-24 letters, digits, '-'; NAME: letters, digits, '-'; VERSION: 32 hex digits)"
            )
        return None

    def resolve(self, reference: str, environ: Mapping[str, str]) -> str:
        vault, name, *version = reference[len(PREFIX) :].split("/")
        query = {"api-version": "2018-02-01", "resource": RESOURCE}
        if environ.get("DEFAULT_IDENTITY_CLIENT_ID"):
            query["client_id"] = environ["DEFAULT_IDENTITY_CLIENT_ID"]
        imds = (environ.get(IMDS_OVERRIDE) or IMDS).rstrip("/")
        status, body = http_json(
            f"{imds}/metadata/identity/oauth2/token?{urllib.parse.urlencode(query)}",
            {"Metadata": "true"},
            direct=True,
        )
        token = bearer_token(
            status, body, "the Instance Metadata Service (does the compute have an identity?)"
        )
        base = (environ.get(VAULT_URL_OVERRIDE) or VAULT_URL).format(vault=vault).rstrip("/")
        path = "/".join(urllib.parse.quote(p) for p in (name, *version))
        status, body = http_json(
            f"{base}/secrets/{path}?api-version={API_VERSION}", {"Authorization": f"Bearer {token}"}
        )
        if status != 200:
            raise api_refusal(status, body, "code", _HINTS)
        value = body.get("value")
        if not isinstance(value, str):
            raise SecretUnavailable("the answer has no value")
        return value


RESOLVER = AzureKeyVault()
