"""The one place errors become HTTP responses (RFC 9457 problem+json). Driver text never reaches clients."""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from registry.errors import (
    AlreadyExists,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    RegistryError,
    Unauthenticated,
)

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


# The MLflow face renders the same errors the way MLflow's client reads them: {"error_code", "message"}.
# The client branches on error_code (not the status), and retries 5xx for minutes, so caller errors stay 4xx.
_MLFLOW_PREFIXES = ("/api/2.0/", "/api/3.0/", "/ajax-api/")
_MLFLOW_CODES: dict[type[RegistryError], tuple[str, int]] = {
    AlreadyExists: ("RESOURCE_ALREADY_EXISTS", 400),
    NotFound: ("RESOURCE_DOES_NOT_EXIST", 404),
    Unauthenticated: ("UNAUTHENTICATED", 401),
    Forbidden: ("PERMISSION_DENIED", 403),
    PayloadTooLarge: ("REQUEST_LIMIT_EXCEEDED", 413),
    PreconditionFailed: ("INVALID_STATE", 400),
    Conflict: ("INVALID_PARAMETER_VALUE", 400),
    InvalidInput: ("INVALID_PARAMETER_VALUE", 400),
}


def _is_mlflow(request: Request[Any, Any, Any]) -> bool:
    return request.url.path.startswith(_MLFLOW_PREFIXES)


def mlflow_error(error_code: str, message: str, status: int) -> Response[dict[str, Any]]:
    return Response({"error_code": error_code, "message": message}, status_code=status, media_type=MediaType.JSON)


def registry_error(request: Request[Any, Any, Any], exc: RegistryError) -> Response[dict[str, Any]]:
    if _is_mlflow(request):
        for kind in type(exc).__mro__:
            if kind in _MLFLOW_CODES:
                code, status = _MLFLOW_CODES[kind]
                return mlflow_error(code, exc.message, status)
        return mlflow_error("INVALID_PARAMETER_VALUE", exc.message, 400)
    return problem(exc.status, exc.message, code=exc.code, **exc.extra)


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    if status >= 500:
        return internal_error(request, exc)
    if _is_mlflow(request):
        if status in (404, 405):
            return mlflow_error("ENDPOINT_NOT_FOUND", f"no MLflow endpoint {request.method} {request.url.path}", 404)
        if status == 413:
            return mlflow_error("REQUEST_LIMIT_EXCEEDED", "request body too large", 413)
        return mlflow_error("INVALID_PARAMETER_VALUE", _validation_detail(exc), 400)
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


def _validation_detail(exc: HTTPException) -> str:
    if isinstance(exc.extra, list) and exc.extra:
        first = exc.extra[0]
        if isinstance(first, dict) and first.get("message"):
            where = first.get("key")
            return f"{first['message']}" + (f" (at {where})" if where else "")
    return exc.detail or "invalid request"


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    if _is_mlflow(request):
        return mlflow_error("INTERNAL_ERROR", "internal error; the server log has the details", 500)
    return problem(500, "internal error; the server log has the details", code="internal_error")


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    RegistryError: registry_error,
    HTTPException: http_error,
    Exception: internal_error,
}

__all__ = ["EXCEPTION_HANDLERS", "PROBLEM_JSON", "MediaType", "problem"]
