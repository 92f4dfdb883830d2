"""The small HTML pages of the public links (double opt-in confirmation, unsubscribe)."""

from __future__ import annotations

import html
from typing import Any

from aws_lambda_powertools.event_handler import Response

HTML_CONTENT: dict[str, Any] = {"text/html": {"schema": {"type": "string"}}}  # for a route's `responses`
_CSP = "default-src 'none'; style-src 'unsafe-inline'"
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;
padding:0 1rem}}{style}</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""


def html_page(
    title: str, body_html: str, status: int = 200, *, style: str = "", csp: str = ""
) -> Response[str]:
    """A page titled `title` (escaped here) around `body_html` (markup: the caller escapes what it puts
    in); `style` adds CSS rules, `csp` Content-Security-Policy directives (each starting with "; ")."""
    text = _PAGE.format(title=html.escape(title), body=body_html, style=style)
    headers = {
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Robots-Tag": "noindex",
        "Content-Security-Policy": _CSP + csp,
    }
    return Response(status, "text/html; charset=utf-8", text, headers)
