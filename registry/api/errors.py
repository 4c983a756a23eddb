"""The one place errors become HTTP responses (RFC 9457 problem+json). Driver text never reaches clients."""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from litestar import Litestar, MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Reference,
    Schema,
)
from litestar.routes import HTTPRoute

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
NESTED_TOO_DEEP = "the JSON body nests deeper than this server decodes"
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
    503: "Service unavailable",
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
    if _is_data_error(exc):
        return value_refused(request, exc)
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    if _is_mlflow(request):
        return mlflow_error("INTERNAL_ERROR", "internal error; the server log has the details", 500)
    return problem(500, "internal error; the server log has the details", code="internal_error")


def nested_too_deep(request: Request[Any, Any, Any], exc: RecursionError) -> Response[dict[str, Any]]:
    """A body nested past the decoder's recursion limit, wherever it was decoded: a client error."""
    return registry_error(request, InvalidInput(NESTED_TOO_DEEP, code="nested_too_deep"))


def _is_data_error(exc: Exception) -> bool:
    """The database refused a value (PostgreSQL SQLSTATE class 22: out of range, bad character, too long).
    Read off the driver error that SQLAlchemy wraps, without importing the database layer here."""
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith("22")


def value_refused(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Last line behind the edge checks: a value the database or the driver cannot hold (an integer past
    int64, a date past year 9999, text PostgreSQL refuses) is the caller's error, not a 500. Only the error's
    type is logged: its text may carry the value."""
    log.warning("value refused on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return registry_error(
        request, InvalidInput("a value in the request is out of range for the registry", code="value_out_of_range")
    )


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    RegistryError: registry_error,
    HTTPException: http_error,
    RecursionError: nested_too_deep,
    OverflowError: value_refused,
    Exception: internal_error,
}

# ------------------------------------------------------------------------------ the errors in OpenAPI

PROBLEM_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    description="An error (RFC 9457 problem details). Branch on `code`; `detail` is for people.",
    properties={
        "type": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.URI),
        "title": Schema(type=OpenAPIType.STRING),
        "status": Schema(type=OpenAPIType.INTEGER),
        "detail": Schema(type=OpenAPIType.STRING),
        "code": Schema(type=OpenAPIType.STRING, description="Stable machine-readable kind, e.g. not_found."),
        "field": Schema(type=OpenAPIType.STRING, description="The input at fault, when there is one."),
        "errors": Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(type=OpenAPIType.OBJECT),
            description="Each failed check of a malformed request.",
        ),
    },
    required=["type", "title", "status", "detail", "code"],
)

_ERROR_DESCRIPTIONS = {
    400: "Malformed or invalid input (a value out of range, a bad name, NUL in a string ...).",
    401: "No token, or a token that is unknown, revoked or expired.",
    403: "The token's role is below the one this operation needs, or a policy refuses it.",
    404: "Something the request names does not exist.",
    409: "The request conflicts with what is stored (a name taken, a param already set, a deleted run).",
    413: "The request body is larger than the configured limit.",
}
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _problem_response(status: int) -> OpenAPIResponse:
    reference = Reference(ref="#/components/schemas/Problem")
    headers: dict[str, OpenAPIHeader | Reference] | None = None
    if status == 401:
        headers = {"WWW-Authenticate": OpenAPIHeader(schema=Schema(type=OpenAPIType.STRING))}
    return OpenAPIResponse(
        description=_ERROR_DESCRIPTIONS[status],
        content={PROBLEM_JSON: OpenAPIMediaType(schema=reference)},
        headers=headers,
    )


def _error_statuses(method: str, has_path_params: bool, guards: list[Any], role_guards: Collection[Any]) -> list[int]:
    statuses = [400]
    if guards:
        statuses.append(401)
    # A write behind any guard can be refused by a policy too (a protected alias, a trigger's scope).
    if any(guard in role_guards for guard in guards) or (guards and method in _WRITES):
        statuses.append(403)
    if has_path_params or method in _WRITES:
        statuses.append(404)
    if method in _WRITES:
        statuses += [409, 413]
    return statuses


def document_errors(app: Litestar, *, prefix: str, role_guards: Collection[Any]) -> None:
    """Document in the app's OpenAPI schema the problem+json errors each operation under ``prefix`` can
    answer, in place of Litestar's generic 400: 400 always, 401 behind a guard, 403 behind a role guard,
    404 where the path or body names something, 409 and 413 on writes."""
    openapi = app.openapi_schema  # built once and cached: what /schema serves
    if openapi.components.schemas is None:
        openapi.components.schemas = {}
    openapi.components.schemas["Problem"] = PROBLEM_SCHEMA
    for route in app.routes:
        item = (openapi.paths or {}).get(route.path_format)
        if not isinstance(route, HTTPRoute) or not route.path.startswith(prefix) or item is None:
            continue
        for handler in route.route_handlers:
            guards = list(handler.resolve_guards())
            for method in handler.http_methods:
                operation = getattr(item, method.lower(), None)
                if operation is None:
                    continue
                kept = {k: v for k, v in (operation.responses or {}).items() if not k.startswith(("4", "5"))}
                for status in _error_statuses(method, bool(route.path_parameters), guards, role_guards):
                    kept[str(status)] = _problem_response(status)
                operation.responses = kept


__all__ = ["EXCEPTION_HANDLERS", "PROBLEM_JSON", "MediaType", "document_errors", "problem"]
