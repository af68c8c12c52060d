"""The two plain HTTP routes that set and clear the dashboard's session cookie.

Streamlit runs the app over a WebSocket, and its Python can read cookies (``st.context.cookies``)
but never set one, let alone an HttpOnly one. So a sign-in made in the Streamlit form opens a
server-side session (:mod:`collector.auth.sessions`) with a one-time ticket and sends the browser to
``/auth/session?ticket=...``; that route swaps the ticket for the cookie and redirects home.
Sign-out ends the session in the database first, then sends the browser to ``/auth/sign-out``,
which expires the cookie.

The cookie is ``HttpOnly`` (no script, including an injected one, can read it), ``Secure`` when
the request came over HTTPS (directly or through a TLS proxy that says so in
``X-Forwarded-Proto``), and ``SameSite=Lax``: alert e-mails link into the dashboard, and a click
on such a link is a cross-site top-level GET navigation, which Lax sends the cookie with and
Strict does not. Lax still withholds it from cross-site subrequests and POSTs, and the only
GET routes that act on it need a secret ticket or merely sign out.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from dashboard import actions

#: The cookie holding the session token (the database keeps only its SHA-256).
COOKIE = "llm_usage_session"
SESSION_PATH = "/auth/session"
SIGN_OUT_PATH = "/auth/sign-out"
_MAX_TICKET = 128


def _secure(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def _home() -> RedirectResponse:
    # 303: the browser follows with a GET, and the ticket URL does not stay in its history.
    response = RedirectResponse("/", status_code=303)
    response.headers["Cache-Control"] = "no-store"
    return response


async def redeem_ticket(request: Request) -> Response:
    """``GET /auth/session?ticket=...``: set the session cookie for a fresh sign-in, then go home."""
    ticket = request.query_params.get("ticket", "")
    token = None
    if 0 < len(ticket) <= _MAX_TICKET:
        token = await run_in_threadpool(actions.redeem_ticket, ticket)
    response = _home()
    if token is not None:
        max_age = int(actions.session_lifetimes().absolute.total_seconds())
        response.set_cookie(
            COOKIE, token, max_age=max_age, path="/", httponly=True, samesite="lax", secure=_secure(request)
        )
    return response


async def sign_out(request: Request) -> Response:
    """``GET /auth/sign-out``: expire the cookie (the session itself was ended by the dashboard)."""
    response = _home()
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=_secure(request))
    return response


ROUTES = [
    Route(SESSION_PATH, redeem_ticket, methods=["GET"]),
    Route(SIGN_OUT_PATH, sign_out, methods=["GET"]),
]
