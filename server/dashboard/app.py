"""The dashboard's web app: pages over one open registry, for a logged-in operator.

Every page needs the session cookie of an operator or a viewer (``session.py``); computing
silo values is for operators only; forget and readmit, for operators only, show what they will
do first and run only on a POST with the session's form token (``plans.py``). Every refusal
is a page with a 4xx status that says what is wrong (``error_pages.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Literal, get_args

from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from jinja2 import Environment
from starlette.concurrency import run_in_threadpool

from tmc.common.components.component import SILO_PATTERN
from tmc.common.data.spec import DatasetName
from tmc.common.errors import NotFoundError
from tmc.server.admin.auth import Principal
from tmc.server.cli.plots import history_png
from tmc.server.dashboard.error_pages import install_error_pages
from tmc.server.dashboard.forms import (
    ForgetForm,
    LoginForm,
    LogoutForm,
    ReadmitForm,
    ValueForm,
    read_form,
)
from tmc.server.dashboard.plans import carry_out_forget, forget_plan, readmit_plan
from tmc.server.dashboard.session import COOKIE, Sessions
from tmc.server.dashboard.templating import STYLESHEET, environment, render
from tmc.server.dashboard.valuing import value_current
from tmc.server.dashboard.views import silo_rows, silo_summary, silo_values, version_silos
from tmc.server.federation import read_history
from tmc.server.registry import Registry

MAX_NUMBER = 2**62  # SQLite's integers are 64-bit: a larger number is refused, not a 500
AUDIT_PAGE = 100
ACTOR_PREFIX = "dashboard:"

SiloName = Annotated[str, PathParam(pattern=SILO_PATTERN, description="a silo's name")]


class Dashboard:
    """The state a request needs: the registry, the sessions, the templates."""

    def __init__(self, registry: Registry, sessions: Sessions, *, secure_cookie: bool) -> None:
        self.registry = registry
        self.sessions = sessions
        self.secure_cookie = secure_cookie
        self.env: Environment = environment()

    def principal(self, request: Request) -> Principal:
        return self.sessions.principal(request.cookies.get(COOKIE))

    def page(self, request: Request, name: str, **context: object) -> HTMLResponse:
        """A page for the logged-in operator (UnauthenticatedError if there is none)."""
        token = request.cookies.get(COOKIE)
        principal = self.sessions.principal(token)
        html = render(
            self.env,
            name,
            principal=principal,
            form_token=self.sessions.form_token(token or ""),
            page=context.pop("page", request.url.path),
            **context,
        )
        return HTMLResponse(html)

    def operator(self, request: Request) -> Principal:
        """The operator of a request that leads to an action (a viewer is refused)."""
        return self.sessions.operator(request.cookies.get(COOKIE))

    def confirm(self, request: Request, form_token: str, *, act: bool = True) -> Principal:
        """Who sent a POST, with its form token checked; ``act``: it changes the registry,
        so only an operator may send it."""
        token = request.cookies.get(COOKIE)
        principal = self.sessions.operator(token) if act else self.sessions.principal(token)
        self.sessions.check_form_token(token or "", form_token)
        return principal


def _security_headers(response: Response) -> None:
    # Nothing loads from elsewhere, no script runs, no other site may frame the pages.
    response.headers["content-security-policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["x-content-type-options"] = "nosniff"
    response.headers["referrer-policy"] = "no-referrer"
    response.headers["cache-control"] = "no-store"


def create_app(registry: Registry, sessions: Sessions, *, secure_cookie: bool = False) -> FastAPI:
    """The dashboard over an open ``registry``; ``secure_cookie`` when served over TLS."""
    board = Dashboard(registry, sessions, secure_cookie=secure_cookie)
    app = FastAPI(title="tmc dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    install_error_pages(app, board.env)

    @app.middleware("http")
    async def headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        _security_headers(response)
        return response

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/silos", status_code=303)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> PlainTextResponse:
        # for container health checks: no token, and nothing about the registry
        return PlainTextResponse("ok")

    @app.get("/static/dashboard.css", include_in_schema=False)
    def stylesheet() -> FileResponse:
        return FileResponse(STYLESHEET, media_type="text/css")

    @app.get("/login")
    def login_page(request: Request) -> HTMLResponse:
        html = render(board.env, "login.html", title="Log in", principal=None, message="")
        return HTMLResponse(html)

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await read_form(request, LoginForm)
        token = form.token.strip()
        sessions.principal(token)  # refuses an unknown, revoked or silo token
        response = RedirectResponse("/silos", status_code=303)
        response.set_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=board.secure_cookie,
            path="/",
        )
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        form = await read_form(request, LogoutForm)
        board.confirm(request, form.form_token, act=False)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @app.get("/silos")
    def silos(request: Request) -> HTMLResponse:
        board.principal(request)
        history = read_history(registry.root)
        return board.page(
            request,
            "silos.html",
            title="Silos",
            rows=silo_rows(registry, history),
            last_round=history[-1] if history else None,
            current=registry.current_version(),
        )

    @app.get("/silos/{silo}")
    def silo(request: Request, silo: SiloName) -> HTMLResponse:
        board.principal(request)
        return board.page(
            request,
            "silo.html",
            title=f"Silo {silo}",
            page="/silos",
            summary=silo_summary(registry, silo),
            values=silo_values(registry, silo),
            datasets=get_args(DatasetName),
        )

    @app.post("/silos/{silo}/values")
    async def compute_values(request: Request, silo: SiloName) -> RedirectResponse:
        form = await read_form(request, ValueForm)
        board.confirm(request, form.form_token)
        await run_in_threadpool(silo_summary, registry, silo)  # an unknown silo: 404
        root = Path(form.dataset_root) if form.dataset_root else None
        await run_in_threadpool(value_current, registry, form.dataset, root)
        return RedirectResponse(f"/silos/{silo}", status_code=303)

    @app.get("/versions")
    def versions(request: Request) -> HTMLResponse:
        board.principal(request)
        return board.page(
            request,
            "versions.html",
            title="Versions",
            versions=registry.versions(),
            current=registry.current_version(),
            rounds=read_history(registry.root),
        )

    @app.get("/versions/accuracy.png")
    def accuracy_plot(request: Request) -> Response:
        board.principal(request)
        rounds = read_history(registry.root)
        if not rounds:
            raise NotFoundError("no round history next to this registry: nothing to plot")
        return Response(history_png(rounds), media_type="image/png")

    @app.get("/versions/{number}")
    def version(
        request: Request, number: Annotated[int, PathParam(ge=1, le=MAX_NUMBER)]
    ) -> HTMLResponse:
        board.principal(request)
        found = registry.version(number)
        components = version_silos(registry, found.component_ids)
        return board.page(
            request,
            "version.html",
            title=f"Version {number}",
            page="/versions",
            version=found,
            current=registry.current_version(),
            components=components,
            silos=sorted({c.silo for c in components}),
        )

    @app.get("/components")
    def components(
        request: Request,
        status: Literal["active", "forgotten", "all"] = "active",
        silo: Annotated[str | None, Query(pattern=SILO_PATTERN)] = None,
    ) -> HTMLResponse:
        board.principal(request)
        return board.page(
            request,
            "components.html",
            title="Components",
            components=registry.list_components(silo=silo, status=status),
            status=status,
            silo=silo,
        )

    @app.get("/audit")
    def audit(
        request: Request, before: Annotated[int | None, Query(ge=1, le=MAX_NUMBER)] = None
    ) -> HTMLResponse:
        board.principal(request)
        events = registry.audit_log()
        shown = [e for e in reversed(events) if before is None or e.seq < before][:AUDIT_PAGE]
        older = shown[-1].seq if shown and shown[-1].seq > events[0].seq else None
        return board.page(
            request, "audit.html", title="Audit log", events=shown, older=older, total=len(events)
        )

    @app.get("/silos/{silo}/forget")
    def forget_preview(request: Request, silo: SiloName) -> HTMLResponse:
        board.operator(request)
        return board.page(
            request,
            "forget.html",
            title=f"Forget {silo}",
            page="/silos",
            plan=forget_plan(registry, silo),
        )

    @app.post("/silos/{silo}/forget")
    async def forget(request: Request, silo: SiloName) -> RedirectResponse:
        form = await read_form(request, ForgetForm)
        principal = board.confirm(request, form.form_token)
        result = await run_in_threadpool(
            carry_out_forget,
            registry,
            silo,
            digest=form.plan,
            actor=ACTOR_PREFIX + principal.actor,
            reason=form.reason,
        )
        return RedirectResponse(f"/versions/{result.version.number}", status_code=303)

    @app.get("/silos/{silo}/readmit")
    def readmit_preview(request: Request, silo: SiloName) -> HTMLResponse:
        board.operator(request)
        return board.page(
            request,
            "readmit.html",
            title=f"Readmit {silo}",
            page="/silos",
            plan=readmit_plan(registry, silo),
        )

    @app.post("/silos/{silo}/readmit")
    async def readmit(request: Request, silo: SiloName) -> RedirectResponse:
        form = await read_form(request, ReadmitForm)
        principal = board.confirm(request, form.form_token)
        await run_in_threadpool(readmit_plan, registry, silo)  # the page's refusals
        await run_in_threadpool(
            registry.readmit, silo, actor=ACTOR_PREFIX + principal.actor, reason=form.reason
        )
        return RedirectResponse("/silos", status_code=303)

    return app


__all__ = ["create_app"]
