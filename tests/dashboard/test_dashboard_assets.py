"""What the server sends for the dashboard, without a browser: the page and its assets, the
headers that forbid anything from another origin, and no reference to one in the files."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient

from multispot.server.dashboard import STATIC, mount_dashboard


def client() -> TestClient:
    app = FastAPI()

    @app.get("/api/v1/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    mount_dashboard(app)
    return TestClient(app)


def test_the_page_and_its_assets_are_served_with_a_same_origin_policy() -> None:
    with client() as http:
        page = http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        # every asset the page names is served, with the same policy
        for asset in re.findall(r'(?:src|href)="(dashboard/[^"]+)"', page.text):
            response = http.get(f"/{asset}")
            assert response.status_code == 200, asset
            assert response.headers["content-security-policy"] == policy
        assert {"dashboard/app.js", "dashboard/style.css"} <= set(
            re.findall(r'(?:src|href)="(dashboard/[^"]+)"', page.text)
        )
        # the API routes still answer: the dashboard does not shadow them
        assert http.get("/api/v1/health").json() == {"status": "ok"}
        assert http.get("/dashboard/nothing.js").status_code == 404


def test_no_file_names_another_origin() -> None:
    """No CDN, font or analytics: the dashboard works on a network with no way out."""
    for path in STATIC.iterdir():
        text = path.read_text()
        # http://www.w3.org/2000/svg is an XML namespace name, not something fetched
        urls = set(re.findall(r"""(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s"')]*""", text)) - {
            "http://www.w3.org/2000/svg"
        }
        assert not urls, f"{path.name}: {sorted(urls)}"
        assert "@import" not in text and "innerHTML" not in text, path.name
