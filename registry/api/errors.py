"""The one place errors become HTTP responses (RFC 9457 problem+json). Driver text never reaches clients."""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from registry.errors import RegistryError

log = logging.getLogger("registry.api")
PROBLEM_JSON = "application/problem+json"

_TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    412: "Precondition failed",
    413: "Payload too large",
    415: "Unsupported media type",
    500: "Internal error",
}


def problem(status: int, detail: str, *, code: str, **extra: Any) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": f"https://modelkeep.dev/problems/{code.replace('_', '-')}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {"WWW-Authenticate": 'Bearer realm="modelkeep"'} if status == 401 else None
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def registry_error(_: Request[Any, Any, Any], exc: RegistryError) -> Response[dict[str, Any]]:
    return problem(exc.status, exc.message, code=exc.code, **exc.extra)


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    if status >= 500:
        return internal_error(request, exc)
    if isinstance(exc, ValidationException):
        errors = exc.extra if isinstance(exc.extra, list) else None
        return problem(400, _validation_detail(exc), code="invalid_input", errors=errors)
    code = {
        400: "invalid_input",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
        401: "unauthenticated",
        403: "forbidden",
    }.get(status, "bad_request")
    detail = exc.detail
    if status == 413:
        limit = request.route_handler.resolve_request_max_body_size() if request.scope.get("route_handler") else None
        detail = f"request body is larger than the limit ({limit} bytes)" if limit else "request body too large"
    return problem(status, detail, code=code)


def _validation_detail(exc: ValidationException) -> str:
    if isinstance(exc.extra, list) and exc.extra:
        first = exc.extra[0]
        if isinstance(first, dict) and first.get("message"):
            where = first.get("key")
            return f"{first['message']}" + (f" (at {where})" if where else "")
    return exc.detail or "invalid request"


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "internal error; the server log has the details", code="internal_error")


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    RegistryError: registry_error,
    HTTPException: http_error,
    Exception: internal_error,
}

__all__ = ["EXCEPTION_HANDLERS", "PROBLEM_JSON", "MediaType", "problem"]
