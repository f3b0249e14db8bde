"""The project's error tree as HTTP answers: ``{"error": {"type", "message", "field"?, "problems"?}}``.

Every answer the server gives for an error has this shape; a traceback never reaches a client.
The client (``multispot.client``) turns it back into the same exception, so the CLI prints the
same message as it would locally.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from multispot import errors

log = logging.getLogger("multispot.server")

# Most specific first: the first class the error is an instance of gives the status.
_STATUS: tuple[tuple[type[errors.MultispotError], int], ...] = (
    (errors.JobSpecError, 422),
    (errors.ValidationFailed, 422),
    (errors.ProviderNotFound, 422),
    (errors.CatalogError, 422),
    (errors.JobNotFound, 404),
    (errors.NoCheckpoint, 404),
    (errors.StoreError, 503),
    (errors.TransientProviderError, 503),
    (errors.MissingExtra, 501),
    (errors.ProviderError, 502),
)


def status_of(exc: errors.MultispotError) -> int:
    if isinstance(exc, errors.ServerError):
        return exc.status or 400
    if type(exc).__name__ == "GroupNotFound":  # multispot.sweep.records: a sweep by a wrong ref
        return 404
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def error_body(exc: errors.MultispotError) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    problems = getattr(exc, "problems", None)
    if problems:
        body["problems"] = [{"path": p.path, "message": p.message, "line": p.line} for p in problems]
        body["field"] = problems[0].path
    field = getattr(exc, "field", None)
    if field:
        body["field"] = field
    provider = getattr(exc, "provider", None)
    if isinstance(exc, errors.ValidationFailed):
        body["provider"] = provider
    return {"error": body}


def answer(exc: errors.MultispotError) -> JSONResponse:
    return JSONResponse(error_body(exc), status_code=status_of(exc))


def install(app: FastAPI) -> None:
    """Error handlers: the project's errors, request-shape errors (with the field path), HTTP
    errors (404 of an unknown route, 405), and anything else as a bare 500 (logged here)."""

    @app.exception_handler(errors.MultispotError)
    async def _multispot(request: Request, exc: errors.MultispotError) -> JSONResponse:
        return answer(exc)

    @app.exception_handler(RequestValidationError)
    async def _shape(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
        field = ".".join(where) or None
        message = f"{field or 'request'}: {first.get('msg', 'malformed request')}"
        return answer(errors.ServerError(message, 422, field))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return answer(errors.ServerError(str(exc.detail), exc.status_code))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return answer(errors.ServerError("internal error: the server's log has the details", 500))
