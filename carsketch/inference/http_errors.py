"""How the server refuses: every error is one line of JSON, `{"error": "..."}`, whatever raised it, and a body over
the limit is refused before it is read in full."""

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

MAX_BODY_BYTES = 1_000_000


def one_line(error: ValidationError | RequestValidationError) -> str:
    """A validation error as one line: where and what of the first problem, and how many more there are."""
    problems = error.errors()
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"] if part != "body")
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return f"{where + ': ' if where else ''}{first['msg']}{more}"


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status, headers=headers)


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    return error_response(error.status_code, error.detail, error.headers)


async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    return error_response(422, one_line(error))


async def _server_error(request: Request, error: Exception) -> JSONResponse:
    return error_response(500, f"internal error ({type(error).__name__}); the server goes on")


HANDLERS = {HTTPException: _http_error, RequestValidationError: _invalid_request, Exception: _server_error}


class BodyLimit:
    """ASGI middleware: 413 for a request body over max_bytes, at once where its Content-Length declares more, else as
    soon as the bytes streamed in (a chunked body declares none) pass it. The server holds a body to its declared
    length, so the streamed bytes alone are counted."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = f"request body over {self.max_bytes:,} bytes"
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await error_response(413, too_large)(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, too_large)
            return message

        await self.app(scope, limited_receive, send)
