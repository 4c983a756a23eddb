"""Web sessions: a signed cookie naming the API token that signed in, checked against the database on every
request, and CSRF tokens bound to the session.

The cookie holds ``token id . session nonce . issued . last seen`` and an HMAC-SHA256 over them. The HMAC key
is derived from the token's stored digest, so

* every replica can verify a cookie with what it already shares, the database: no key to configure, none to
  generate and store, nothing that differs between replicas or is lost on restart;
* a cookie cannot be re-pointed at another token: each token's sessions have their own key;
* revoking (or expiring) the token ends its sessions on their next request, because the token row is read on
  every request (one primary-key lookup; a person clicking is far from a busy API client, so the API's
  ``TokenCache`` and the seconds of grace it gives a revocation are not used here).

The digest never leaves the database (no API returns it), so only someone who can read the database could forge
a cookie, and they could read every other secret there as well. Where a database copy (a backup, a read
replica) is less guarded than the servers, ``MODELKEEP_SESSION_SECRET`` mixes a secret the database does not
hold into every key. Sessions end after ``IDLE`` without a request
(the cookie is re-signed at most every ``REFRESH_AFTER`` while in use) and ``LIFETIME`` after signing in
whatever happens. Signing out deletes the cookie in the browser; a copy taken earlier stays valid until one of
those limits or the token's revocation, the price of keeping no session rows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.handlers.base import BaseRouteHandler

from registry.db import Database
from registry.errors import Forbidden, InvalidInput, RegistryError, Unauthenticated
from registry.services import tokens
from registry.services.auth import Actor

COOKIE = "mk_session"
SIGN_IN_COOKIE = "mk_sign_in"
"""Holds the random value the sign-in form must echo (double submit): a page elsewhere cannot sign a browser
in to an account of its choosing."""
COOKIE_PATH = "/ui"
IDLE = 12 * 3600
LIFETIME = 7 * 24 * 3600
REFRESH_AFTER = 300
CSRF_FIELD = "csrf"
_KEY_LABEL = b"modelkeep web session v1"


class NotSignedIn(RegistryError):
    """No session, or one that is malformed, forged, idle too long or whose token is no longer valid: the
    browser goes to the sign-in page, which says why from ``code`` (never from text in the address, which a
    link elsewhere could choose)."""

    status = 401
    kind = "unauthenticated"
    code = "not_signed_in"


@dataclass(frozen=True, slots=True)
class Session:
    token_id: int
    nonce: str
    issued: int
    seen: int


@dataclass(frozen=True, slots=True)
class SignedIn:
    """What a page knows of its viewer: who, the session, its key (for the CSRF token)."""

    actor: Actor
    session: Session
    key: bytes

    @property
    def csrf(self) -> str:
        return csrf_token(self.key, self.session.nonce)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def session_key(token_hash: str, secret: str = "") -> bytes:
    """The HMAC key of one token's sessions, derived from its stored digest and, when set, the deployment's
    ``MODELKEEP_SESSION_SECRET`` (see the module docstring)."""
    material = token_hash.encode() if not secret else secret.encode() + b"\x00" + token_hash.encode()
    return hmac.new(material, _KEY_LABEL, hashlib.sha256).digest()


def secret_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    configured = connection.app.state.settings.session_secret
    return configured.get_secret_value() if configured is not None else ""


def encode(session: Session, key: bytes) -> str:
    payload = f"{session.token_id}.{session.nonce}.{session.issued}.{session.seen}"
    return f"{payload}.{_b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())}"


def decode(value: str) -> tuple[Session, str, str] | None:
    """The session a cookie names, its signed payload and signature; None when it is malformed."""
    parts = value.split(".")
    if len(parts) != 5 or not all(parts):
        return None
    token_id, nonce, issued, seen, signature = parts
    if not all(f.isascii() and f.isdecimal() and len(f) <= 18 for f in (token_id, issued, seen)):
        return None
    session = Session(token_id=int(token_id), nonce=nonce, issued=int(issued), seen=int(seen))
    return session, ".".join(parts[:4]), signature


def csrf_token(key: bytes, nonce: str) -> str:
    """The form token of one session: bound to it, so a page elsewhere can neither read nor forge it."""
    return _b64(hmac.new(key, f"csrf.{nonce}".encode(), hashlib.sha256).digest())


def new_session(token_id: int, now: int | None = None) -> Session:
    at = int(time.time()) if now is None else now
    return Session(token_id=token_id, nonce=secrets.token_urlsafe(18), issued=at, seen=at)


def cookie(value: str, *, secure: bool, max_age: int = IDLE) -> Cookie:
    """The session cookie: HttpOnly, SameSite=Strict, Secure when the request came over https."""
    return Cookie(
        key=COOKIE,
        value=value,
        path=COOKIE_PATH,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=secure,
    )


def sign_in_cookie(value: str, *, secure: bool, max_age: int = 3600) -> Cookie:
    return Cookie(
        key=SIGN_IN_COOKIE,
        value=value,
        path=COOKIE_PATH,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=secure,
    )


def cleared(*, secure: bool) -> Cookie:
    return cookie("", secure=secure, max_age=0)


def is_https(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    return connection.url.scheme == "https"


async def verify(db: Database, value: str, *, now: int | None = None, secret: str = "") -> tuple[SignedIn, str | None]:
    """The viewer of a session cookie, and the cookie to send back when it should slide forward (else None).

    Raises NotSignedIn when the cookie is malformed or forged, the session idled past ``IDLE`` or is older
    than ``LIFETIME``, or its token is unknown, revoked or expired.
    """
    at = int(time.time()) if now is None else now
    decoded = decode(value)
    if decoded is None:
        raise NotSignedIn("your session is not valid; sign in again", code="session_invalid")
    session, payload, signature = decoded
    try:
        async with db.read() as read:
            token, actor, _expires_in = await tokens.by_id(read, token_id=session.token_id)
    except Unauthenticated as exc:
        raise NotSignedIn(f"your session ended: {exc.message}", code="token_ended") from None
    key = session_key(token.token_hash, secret)
    expected = _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, signature):
        raise NotSignedIn("your session is not valid; sign in again", code="session_invalid")
    if at - session.seen > IDLE or at - session.issued > LIFETIME or session.seen > at + 60:
        raise NotSignedIn("your session expired; sign in again", code="session_expired")
    refreshed = None
    if at - session.seen >= REFRESH_AFTER:
        session = replace(session, seen=at)
        refreshed = encode(session, key)
    return SignedIn(actor=actor, session=session, key=key), refreshed


async def signed_in(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Guard of every page but sign-in: the viewer goes on ``connection.state`` (``actor`` as the API's
    handlers have it, ``viewer`` with the session); a session due to slide gets its new cookie sent back
    (``refresh_cookie``)."""
    value = connection.cookies.get(COOKIE)
    if not value:
        raise NotSignedIn("sign in to continue", code="sign_in")
    viewer, refreshed = await verify(connection.app.state.db, value, secret=secret_of(connection))
    connection.state.viewer = viewer
    connection.state.actor = viewer.actor
    connection.state.refresh_cookie = refreshed


def viewer_of(request: ASGIConnection[Any, Any, Any, Any]) -> SignedIn:
    found: SignedIn = request.state.viewer
    return found


async def checked_form(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The posted form, once its CSRF token matches the session's. Raises Forbidden when it is missing or
    wrong (a forged or stale form)."""
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), viewer_of(request).csrf.encode()):
        raise Forbidden("the form's security token is missing or does not match your session; reload the page")
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    for name, value in fields.items():
        if "\x00" in value:  # PostgreSQL's text cannot hold it; refused here as the API refuses it in JSON
            raise InvalidInput(f"{name} contains a NUL character", field=name)
    return fields
