"""The dashboard: static HTML, CSS and JavaScript served by the multispot server at ``/``.

No build step and nothing fetched from elsewhere: the page reads ``/api/v1`` with the token the
user types into its login form (kept in the tab's sessionStorage). A Content-Security-Policy
that allows only this origin makes "no external resources" a rule the browser enforces.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

STATIC = Path(__file__).parent / "static"
ASSETS_PATH = "/dashboard"

# 'self' only: no CDN, no inline script or style; the API is on the same origin.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # the page is small and changes with each release: always ask, never serve a stale one
    "Cache-Control": "no-cache",
}


def mount_dashboard(app: FastAPI) -> None:
    """Serve the dashboard's page at ``/`` and its assets under ``/dashboard/``."""
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.types import Message, Receive, Scope, Send

    index = STATIC / "index.html"

    @app.get("/", include_in_schema=False)
    def dashboard_page() -> FileResponse:
        return FileResponse(index, media_type="text/html; charset=utf-8", headers=HEADERS)

    assets = StaticFiles(directory=STATIC)

    async def with_headers(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                raw += [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
                message = {**message, "headers": raw}
            await send(message)

        await assets(scope, receive, send_with_headers)

    app.mount(ASSETS_PATH, with_headers, name="dashboard")
