"""Signing in with an API token, signing out, and the root page that MLflow's links land on."""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.response import Redirect, Template

from registry.db import Database
from registry.errors import Forbidden, Unauthenticated
from registry.services import tokens
from registry.ui import sessions
from registry.ui._render import page

WHY = {
    "sign_in": "Sign in to continue.",
    "signed_out": "You signed out.",
    "session_invalid": "Your session is not valid any more. Sign in again.",
    "session_expired": "Your session expired. Sign in again.",
    "token_ended": "Your session ended: its token was revoked or expired.",
}
"""What the sign-in page says for each ``why`` code; the text never comes from the address."""


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a page of this UI, never another site (``//host`` or ``/\\host`` would
    leave it)."""
    if value and value.startswith("/ui/") and not value.startswith(("//", "/\\")) and "\\" not in value:
        return value
    return "/ui/"


class AccountController(Controller):
    path = "/ui"
    include_in_schema = False

    @get("/sign-in")
    async def sign_in_form(self, request: Request[Any, Any, Any], why: str = "", next: str = "") -> Template:
        return self._form(request, why=why, next_url=next)

    @post("/sign-in", status_code=303)
    async def sign_in(self, request: Request[Any, Any, Any], db: Database) -> Response[Any]:
        form = await request.form()
        sent, expected = str(form.get(sessions.CSRF_FIELD) or ""), request.cookies.get(sessions.SIGN_IN_COOKIE, "")
        if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise Forbidden("the sign-in form expired or came from elsewhere; reload the page and sign in")
        raw, next_url = str(form.get("token") or "").strip(), safe_next(str(form.get("next") or ""))
        try:
            async with db.read() as read:
                actor, _expires_in = await tokens.authenticate_with_expiry(read, raw)
                assert actor.token_id is not None
                token, _actor, _expires = await tokens.by_id(read, token_id=actor.token_id)
        except Unauthenticated as exc:
            return self._form(request, next_url=next_url, error=exc.message, status_code=401)
        value = sessions.encode(
            sessions.new_session(token.id), sessions.session_key(token.token_hash, sessions.secret_of(request))
        )
        response: Response[Any] = Redirect(next_url, status_code=303)
        response.set_cookie(sessions.cookie(value, secure=sessions.is_https(request)))
        response.set_cookie(sessions.sign_in_cookie("", secure=sessions.is_https(request), max_age=0))
        return response

    @post("/sign-out", guards=[sessions.signed_in], status_code=303)
    async def sign_out(self, request: Request[Any, Any, Any]) -> Response[Any]:
        await sessions.checked_form(request)
        request.state.refresh_cookie = None
        response: Response[Any] = Redirect("/ui/sign-in?why=signed_out", status_code=303)
        response.set_cookie(sessions.cleared(secure=sessions.is_https(request)))
        return response

    def _form(
        self,
        request: Request[Any, Any, Any],
        *,
        why: str = "",
        next_url: str = "",
        error: str | None = None,
        status_code: int = 200,
    ) -> Template:
        nonce = secrets.token_urlsafe(24)
        template = page(
            request,
            "sign_in.html",
            status_code=status_code,
            notice=WHY.get(why),
            error=error,
            next_url=safe_next(next_url),
            sign_in_csrf=nonce,
        )
        template.set_cookie(sessions.sign_in_cookie(nonce, secure=sessions.is_https(request)))
        return template


@get("/", include_in_schema=False)
async def root(request: Request[Any, Any, Any]) -> Template:
    """``/``: MLflow's links (``/#/experiments/1/runs/abc``, ``/#/models/fraud/versions/3``) carry their target
    in the fragment, which browsers never send; this page reads it and goes to the matching page (or to the
    models list)."""
    return page(request, "root.html")
