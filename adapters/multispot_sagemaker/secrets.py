"""``aws-secretsmanager://SECRET[#KEY]``: a secret in AWS Secrets Manager, resolved inside the job.

``SECRET`` is the secret's name or its full ARN (``arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME``;
the ARN also fixes the region, so prefer it). ``#KEY`` takes one key of a secret stored as a JSON
object (how the console stores key/value secrets). The job's execution role needs
``secretsmanager:GetSecretValue`` on it (and ``kms:Decrypt`` with a customer-managed key).

Resolved with boto3 (SageMaker's framework images carry it) and the job's own credentials; the
region is the ARN's, else ``AWS_REGION``/``AWS_DEFAULT_REGION``, else boto3's default. boto3 also
honours ``AWS_ENDPOINT_URL_SECRETS_MANAGER`` (the tests point it at moto's server). Registered
under the entry-point group ``multispot.secret_resolvers``; imports nothing at module import.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from multispot.errors import SecretUnavailable

SCHEME = "aws-secretsmanager"
PREFIX = f"{SCHEME}://"
# https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html
# SecretId: the name or ARN, 1-2048 characters; names use letters, digits and /_+=.@-
_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):\d{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}")
_KEY = re.compile(r"[^\s#]{1,256}")


def _split(reference: str) -> tuple[str, str | None]:
    body = reference[len(PREFIX) :]
    secret, hash_, key = body.partition("#")
    return secret, (key if hash_ else None)


class AwsSecretsManager:
    scheme = SCHEME

    def check(self, reference: str) -> str | None:
        secret, key = _split(reference)
        if not (_ARN.fullmatch(secret) or (_NAME.fullmatch(secret) and not secret.startswith("arn:"))):
            return (
                f"{reference!r}: write aws-secretsmanager://NAME or aws-secretsmanager://ARN "
                "(letters, digits and /_+=.@-), optionally #KEY for one key of a JSON secret"
            )
        if key is not None and not _KEY.fullmatch(key):
            return (
                f"{reference!r}: the part after '#' is the key of a JSON secret: 1-256 characters, no spaces"
            )
        return None

    def resolve(self, reference: str, environ: Mapping[str, str]) -> str:
        secret, key = _split(reference)
        try:
            import boto3
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError:
            raise SecretUnavailable(
                "boto3 is not installed in the job's image: use an image with boto3 (SageMaker's "
                "framework images have it) or pip install boto3"
            ) from None
        arn = _ARN.fullmatch(secret)
        region = arn.group(1) if arn else environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
        try:
            client: Any = boto3.session.Session().client("secretsmanager", region_name=region or None)
            answer = client.get_secret_value(SecretId=secret)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "error"))
            hint = _HINTS.get(code, "")
            raise SecretUnavailable(f"{code}: {error.get('Message', '')}{hint}".rstrip()) from None
        except BotoCoreError as exc:  # no credentials, no region, endpoint unreachable
            raise SecretUnavailable(f"{type(exc).__name__}: {exc}") from None
        text = answer.get("SecretString")
        if text is None:
            try:
                text = bytes(answer.get("SecretBinary") or b"").decode("utf-8")
            except UnicodeDecodeError:
                raise SecretUnavailable("the secret is binary, not text: store it as a string") from None
        if key is None:
            return str(text)
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise SecretUnavailable(f"#{key} asks for a key, but the secret is not a JSON object")
        if key not in data:
            raise SecretUnavailable(f"the secret's JSON object has no key {key!r}")
        value = data[key]
        return value if isinstance(value, str) else json.dumps(value)


_HINTS = {
    "ResourceNotFoundException": " (check the name, and the region: an ARN names its own)",
    "AccessDeniedException": " (give the job's execution role secretsmanager:GetSecretValue on it)",
    "DecryptionFailure": " (give the job's execution role kms:Decrypt on the secret's key)",
}

RESOLVER = AwsSecretsManager()
