"""The dashboard as served: Streamlit's ``st.App`` around ``streamlit_app.py``, with security headers.

Streamlit has no option for response headers, but ``st.App`` (its documented ASGI entry point)
takes Starlette middleware. :class:`SecurityHeaders` adds to every HTTP response:

* ``X-Frame-Options: DENY`` and ``Content-Security-Policy: frame-ancestors 'none'``: no other
  site can frame the dashboard (clickjacking a signed-in admin into "Remove" or "Sync now");
* ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: same-origin``.

It also serves the two routes of :mod:`dashboard.cookies` that set and clear the HttpOnly
session cookie (Streamlit's Python cannot set cookies).

``llm-usage run`` starts ``streamlit run dashboard/server.py`` (the CLI serves ``st.App`` scripts)
with the dashboard's settings as command-line flags (:func:`collector.app._start_dashboard`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware

from dashboard import cookies, queries

#: Headers every dashboard response carries.
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class SecurityHeaders:
    """Pure ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)


queries.WARM_WHEN_SERVED["on"] = True  # the Budgets figures are recomputed after each data change
app = st.App(
    Path(__file__).with_name("streamlit_app.py"),
    routes=cookies.ROUTES,
    middleware=[Middleware(SecurityHeaders)],
)
