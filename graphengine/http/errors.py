"""Exception handlers: every error leaves as JSON with a 4xx/5xx status, never as a traceback."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from graphengine.errors import WorkflowInvalid
from graphengine.files import PathRejected
from graphengine.http.bodies import BadBody
from graphengine.http.responses import error_body

log = logging.getLogger(__name__)

_KINDS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          409: "conflict", 413: "body_too_large", 415: "unsupported_media_type"}


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    kind = exc.kind if isinstance(exc, BadBody) else _KINDS.get(exc.status_code, "error")
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.url.path}"
    if exc.status_code == 405 and detail == "Method Not Allowed":
        detail = f"method {request.method} is not allowed on {request.url.path}"
    return JSONResponse(error_body(kind, detail), status_code=exc.status_code, headers=exc.headers)


async def path_rejected(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PathRejected)
    kind = {403: "forbidden_path", 404: "not_found"}.get(exc.status, "invalid_path")
    return JSONResponse(error_body(kind, exc.message), status_code=exc.status)


async def workflow_invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WorkflowInvalid)
    return JSONResponse(exc.body, status_code=400)


async def unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(error_body("internal_error", "internal server error (see the server log)"), status_code=500)


EXCEPTION_HANDLERS = {
    HTTPException: http_exception,
    PathRejected: path_rejected,
    WorkflowInvalid: workflow_invalid,
    Exception: unexpected,
}
