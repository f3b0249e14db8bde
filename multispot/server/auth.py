"""Tokens: made once, shown once, stored only as their SHA-256 (a leaked store leaks no token)."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_BYTES = 32


def new_token() -> str:
    """A random bearer token (``secrets.token_urlsafe``): printed once to its owner, never stored."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """What the store keeps and looks tokens up by: the hex SHA-256 of the token.

    A plain hash (no salt, no slow KDF) is enough here: the token is 256 random bits, so there is
    nothing to guess, and a lookup by hash needs the same hash every time."""
    return hashlib.sha256(token.encode()).hexdigest()
