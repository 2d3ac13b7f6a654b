"""Every error answer is JSON {"error": "...", "detail": ...}: the error type and the handlers that make it so."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException


class ErrorBody(BaseModel):
    """Every error answer."""

    error: str
    detail: Any = None


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": ErrorBody} for c in codes}


def install_error_handlers(app: FastAPI) -> None:
    """Answer ApiError, validation errors, HTTP errors and unexpected exceptions as JSON error bodies."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.error, "detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail, parts = [], []
        for e in exc.errors():
            loc = [str(x) for x in e.get("loc", ())]
            where = f"{loc[0]} parameter '{'.'.join(loc[1:])}'" if len(loc) > 1 else ".".join(loc) or "request"
            parts.append(f"{where}: {e.get('msg')}")
            item = {"loc": loc, "msg": e.get("msg"), "type": e.get("type")}
            if isinstance(e.get("input"), (str, int, float)) and len(str(e["input"])) <= 200:
                item["input"] = e["input"]
            detail.append(item)
        return JSONResponse({"error": "invalid request: " + "; ".join(parts), "detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        text = {404: f"not found: {request.method} {request.url.path}", 405: f"method {request.method} not allowed here"}
        return JSONResponse({"error": text.get(exc.status_code, str(exc.detail)), "detail": None},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the server's log; the client learns only the kind of failure.
        return JSONResponse({"error": "internal error; see the server's log", "detail": type(exc).__name__}, status_code=500)


def invalid(where: str, name: str, msg: str, value: Any) -> RequestValidationError:
    """A 422 for a parameter the schema cannot check (a time, a range between two parameters)."""
    return RequestValidationError([{"type": "value_error", "loc": (where, name), "msg": msg, "input": value}])
