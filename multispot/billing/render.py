"""Text and HTML pieces shared by the cost and savings reports."""

from __future__ import annotations

import html


def usd(value: float | None, suffix: str = "") -> str:
    """A dollar figure for tables (``n/a`` when unknown)."""
    return "n/a" if value is None else f"${value:,.4f}{suffix}"


def html_table(headers: tuple[str, ...], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in items) + "</ul>" if items else ""


def html_report(title: str, headers: tuple[str, ...], rows: list[list[str]], details: list[str]) -> str:
    """A report in Jupyter: the (already escaped) title, the table, then the notes."""
    return title + html_table(headers, rows) + html_list(details)
