"""The one JSON error shape: {"error": {"code", "message", "details"}}, never a stack trace."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from temporalio.service import RPCError, RPCStatusCode

from client.errors import (
    GroupKeptClosing,
    IncidentError,
    IncidentNotFound,
    NotStarted,
    PostmortemRequired,
    ResolutionRequired,
    TemporalUnavailable,
    TransitionRefused,
    WorkflowTimeout,
)
from vigil.logging import get_logger

log = get_logger(__name__)

STATUS_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 422: "validation_error",
    429: "too_many_requests", 503: "unavailable",
}


TEMPORAL_DOWN = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED}


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    """Raise from handlers and services; rendered in the one error shape."""

    def __init__(self, status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details, self.headers = status, code, message, details, headers


def error_response(status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, details=details))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def domain_error(err: IncidentError | GroupKeptClosing) -> ApiError:
    """The one mapping of the client's domain errors to HTTP (IncidentClosed is a TransitionRefused: 409)."""
    if isinstance(err, TransitionRefused):
        return ApiError(409, "invalid_transition", err.message, {"current_status": err.current.value})
    if isinstance(err, PostmortemRequired):
        # The workflow names what is missing (sections filled of total) and where to edit it.
        return ApiError(409, "postmortem_required", err.message, err.details)
    if isinstance(err, ResolutionRequired):
        return ApiError(422, "validation_error", err.message)
    if isinstance(err, NotStarted):
        # Stored while Temporal was unreachable; its workflow starts when its alerts are redelivered.
        return ApiError(503, "incident_not_started", err.message, headers={"Retry-After": "5"})
    if isinstance(err, IncidentNotFound):
        return ApiError(404, "not_found", err.message)
    if isinstance(err, GroupKeptClosing):
        return ApiError(503, "conflict_retry", f"{err}; retry", headers={"Retry-After": "1"})
    log.error("unmapped domain error", error=type(err).__name__, detail=str(err))
    return ApiError(500, "internal_error", "internal error; see the API logs")


# A held lock past the lock/busy timeout, a statement past statement_timeout, no free pooled connection, or
# the database down: the caller should retry, as with Temporal unreachable.
DATABASE_BUSY = (OperationalError, PoolTimeout)


def database_busy(path: str, exc: Exception) -> JSONResponse:
    log.warning("database busy or unreachable", path=path, error=type(exc).__name__, detail=str(exc)[:200])
    return error_response(503, "database_unavailable", "the database is busy or unreachable; retry later",
                          headers={"Retry-After": "5"})


METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(req: Request) -> list[str]:
    """Every method some route answers on this path: Starlette's 405 names only the first route that matched the
    path, and FastAPI registers one route per method."""
    routes = req.app.router.routes
    return [m for m in METHODS if any(r.matches({**req.scope, "method": m})[0] is Match.FULL for r in routes)]


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"], "type": err["type"]}
        for err in exc.errors()
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_req: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(IncidentError)
    @app.exception_handler(GroupKeptClosing)
    async def _domain_error(_req: Request, exc: IncidentError | GroupKeptClosing) -> JSONResponse:
        api = domain_error(exc)
        return error_response(api.status, api.code, api.message, api.details, api.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "validation_error", "request validation failed", _validation_details(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = STATUS_CODES.get(exc.status_code, "error")
        details = getattr(exc, "details", None)  # api.limits' 413 names the limit
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(req))}
        return error_response(exc.status_code, code, str(exc.detail), details, headers)

    @app.exception_handler(TemporalUnavailable)
    async def _temporal_unavailable(_req: Request, exc: TemporalUnavailable) -> JSONResponse:
        return error_response(503, "temporal_unavailable", "Temporal is unreachable; retry later",
                              headers={"Retry-After": "5"})

    @app.exception_handler(WorkflowTimeout)
    async def _workflow_timeout(req: Request, exc: WorkflowTimeout) -> JSONResponse:
        log.warning("workflow did not answer in time", path=req.url.path, error=str(exc))
        return error_response(
            503, "workflow_timeout", "the incident workflow did not answer in time (is a worker running?); retry",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(RPCError)
    async def _temporal(req: Request, exc: RPCError) -> JSONResponse:
        if exc.status in TEMPORAL_DOWN:
            log.warning("temporal unavailable", path=req.url.path, error=str(exc))
            return error_response(503, "temporal_unavailable", "Temporal is unreachable; retry later",
                                  headers={"Retry-After": "5"})
        log.error("temporal error", path=req.url.path, status=exc.status.name, error=str(exc))
        return error_response(500, "internal_error", "internal error; see the API logs")

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _database_busy(req: Request, exc: Exception) -> JSONResponse:
        return database_busy(req.url.path, exc)

    @app.exception_handler(Exception)
    async def _unhandled(req: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=req.url.path)
        return error_response(500, "internal_error", "internal error; see the API logs")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": name.replace("_", " ")}
    for code, name in STATUS_CODES.items()
    if code in (401, 403, 404, 409, 413, 422, 503)
}
