"""Rendering shared by the pages: the Jinja environment and its filters, the page helper, the response
headers every page carries, and errors as HTML pages."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import Request, Response
from litestar.datastructures import MutableScopeHeaders
from litestar.exceptions import HTTPException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.template.config import TemplateConfig
from litestar.types import ASGIApp, Message, Receive, Scope, Send

import registry
from registry.domain.auth import Role
from registry.errors import RegistryError
from registry.ui import sessions

log = logging.getLogger("registry.ui")
HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
STATIC_PATH = "/ui/static"

SECURITY_HEADERS = {
    # Everything a page loads comes from this server; scripts only from files (no inline script to inject).
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    # Pages show what the viewer's token may read: not for shared caches, nor for the back button after
    # signing out.
    "cache-control": "no-store",
}


def filesize(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def utc_text(value: datetime | None) -> str:
    """What a ``<time>`` shows before the viewer's zone is applied (and without JavaScript)."""
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else ""


def url_part(value: object) -> str:
    return quote(str(value), safe="")


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(filesize=filesize, iso=iso, utc_text=utc_text, url=url_part)
    env.globals.update(static=STATIC_PATH, version=registry.__version__)
    return env


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(instance=JinjaTemplateEngine(engine_instance=environment()))


def page(request: Request[Any, Any, Any], name: str, *, status_code: int = 200, **context: Any) -> Template:
    """A full page (or, for an htmx request, the fragment ``name`` names) with the viewer in its context."""
    viewer = getattr(request.state, "viewer", None)
    context.setdefault("viewer", viewer)
    context.setdefault("csrf", viewer.csrf if viewer is not None else "")
    context.setdefault("Role", Role)
    context.setdefault("path", request.url.path)
    return Template(name, context=context, status_code=status_code)


def page_headers(app: ASGIApp) -> ASGIApp:
    """Middleware of the UI's routes: the security headers on every response, and the session cookie when
    the guard slid the session forward (``refresh_cookie`` on the connection state)."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders(message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
                refreshed = scope.get("state", {}).get("refresh_cookie")
                if refreshed:
                    secure = scope.get("scheme") == "https"
                    headers.add("set-cookie", sessions.cookie(refreshed, secure=secure).to_header(header=""))
            await send(message)

        await app(scope, receive, sending)

    return wrapped


def finish(request: Request[Any, Any, Any], response: Response[Any]) -> Response[Any]:
    """The security headers on a response made by an exception handler (those do not pass the middleware)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _sign_in_url(request: Request[Any, Any, Any], why: str) -> str:
    where = f"/ui/sign-in?why={quote(why, safe='')}"
    if request.method != "GET":
        return where
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{where}&next={quote(target, safe='')}"


def not_signed_in(request: Request[Any, Any, Any], exc: sessions.NotSignedIn) -> Response[Any]:
    where = _sign_in_url(request, exc.code)
    if request.headers.get("hx-request"):
        # htmx follows a redirect inside the fragment it swaps; this header sends the whole page instead.
        response: Response[Any] = Response(b"", status_code=401, headers={"HX-Redirect": where})
    else:
        response = Redirect(where, status_code=303)
    # An ended session's cookie is useless: drop it, so the sign-in page does not see it again.
    response.set_cookie(sessions.cleared(secure=sessions.is_https(request)))
    return finish(request, response)


def registry_error(request: Request[Any, Any, Any], exc: RegistryError) -> Response[Any]:
    return finish(request, error_page(request, exc.status, exc.message))


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if exc.status_code >= 500:
        return internal_error(request, exc)
    detail = exc.detail if exc.status_code != 400 else "the request is malformed (check the address)"
    return finish(request, error_page(request, exc.status_code, detail))


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return finish(request, error_page(request, 500, "internal error; the server log has the details"))


def error_page(request: Request[Any, Any, Any], status: int, message: str) -> Response[Any]:
    titles = {400: "Bad request", 403: "Not allowed", 404: "Not found", 409: "Conflict", 412: "Refused"}
    template = page(request, "error.html", status_code=status, title=titles.get(status, "Error"), message=message)
    return template


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    sessions.NotSignedIn: not_signed_in,
    RegistryError: registry_error,
    HTTPException: http_error,
    Exception: internal_error,
}
