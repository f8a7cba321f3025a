"""Refusals as pages: each project error becomes one 4xx status and a page that says what
is wrong. Errors that are not refusals (bugs, a broken disk) are left to the server's 500."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from jinja2 import Environment
from starlette.exceptions import HTTPException

from tmc.common.errors import AuthError, NotFoundError, RegistryError, TMCError
from tmc.server.admin.errors import CredentialsError, PermissionDeniedError
from tmc.server.cli.output import error_message
from tmc.server.dashboard.errors import FormError, PlanChangedError
from tmc.server.dashboard.session import COOKIE
from tmc.server.dashboard.templating import render

# Most specific first: the first class an error is an instance of decides.
_STATUS: tuple[tuple[type[TMCError], int, str], ...] = (
    (CredentialsError, 503, "Credentials unavailable"),
    (PermissionDeniedError, 403, "Not allowed"),
    (FormError, 400, "Bad request"),
    (NotFoundError, 404, "Not found"),
    (PlanChangedError, 409, "Changed since shown"),
    (RegistryError, 409, "Refused by the registry"),
    (TMCError, 400, "Bad request"),
)


def _back(request: Request) -> str:
    # Back to the section the request came from, never to an address taken from the request.
    first = request.url.path.strip("/").split("/")[0]
    return f"/{first}" if first in {"silos", "versions", "components", "audit"} else "/silos"


def install_error_pages(app: FastAPI, env: Environment) -> None:
    def page(request: Request, status: int, heading: str, message: str) -> HTMLResponse:
        html = render(
            env,
            "error.html",
            title=heading,
            principal=None,
            status=status,
            heading=heading,
            message=message,
            back=_back(request),
        )
        return HTMLResponse(html, status_code=status)

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError) -> HTMLResponse:
        if isinstance(exc, PermissionDeniedError):
            return page(request, 403, "Not allowed", error_message(exc))
        html = render(env, "login.html", title="Log in", principal=None, message=error_message(exc))
        response = HTMLResponse(html, status_code=401)
        if COOKIE in request.cookies:  # unknown or revoked: do not send it again
            response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @app.exception_handler(TMCError)
    async def project_error(request: Request, exc: TMCError) -> HTMLResponse:
        status, heading = next((s, h) for kind, s, h in _STATUS if isinstance(exc, kind))
        return page(request, status, heading, error_message(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, exc: RequestValidationError) -> HTMLResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        return page(request, 400, "Bad request", problems)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> HTMLResponse:
        heading = "Not found" if exc.status_code == 404 else "Refused"
        message = f"no page at {request.url.path}" if exc.status_code == 404 else str(exc.detail)
        return page(request, exc.status_code, heading, message)
