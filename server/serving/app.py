"""The serve app (FastAPI): routes, error mapping, metrics and limits around them.

``POST /v1/predict`` classifies prepared arrays (JSON) or image files (multipart);
``GET /v1/model`` says what is served; ``GET /metrics`` is Prometheus text;
``GET /healthz`` (no token) says whether a version is loaded; ``/docs`` is the OpenAPI UI.
Every answer from the model names the version and the component ids that gave it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import torch
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from tmc.common.errors import AuthError, DataError, NotFoundError, TMCError
from tmc.server.admin.auth import Principal
from tmc.server.admin.errors import CredentialsError
from tmc.server.serving.auth import BearerAuth
from tmc.server.serving.errors import (
    ModelUnavailableError,
    RequestTooLargeError,
    UnsupportedMediaError,
)
from tmc.server.serving.holder import LiveModel, Served
from tmc.server.serving.inputs import array_batch, check_batch, image_batch
from tmc.server.serving.limits import BodySizeLimit
from tmc.server.serving.metrics import PredictionMetrics, ServingMetrics
from tmc.server.serving.schemas import (
    ErrorBody,
    Health,
    ModelInfo,
    Prediction,
    PredictRequest,
    PredictResponse,
    TopClass,
)
from tmc.server.serving.settings import ServeSettings

_log = logging.getLogger(__name__)
PREDICT_PATH = "/v1/predict"

_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (RequestTooLargeError, 413),
    (UnsupportedMediaError, 415),
    (ModelUnavailableError, 503),
    (CredentialsError, 503),  # the server's credentials file is broken: not the caller's fault
    (AuthError, 401),
    (NotFoundError, 404),
    (DataError, 422),
)
_ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 404, 413, 415, 422, 503)}


def _authorised(request: Request) -> Principal:
    auth: BearerAuth = request.app.state.auth
    return auth(request)


Authorised = Annotated[Principal, Depends(_authorised)]
Version = Annotated[
    int | None, Query(ge=1, description="a past version (default: the current one)")
]
Top = Annotated[int, Query(ge=1, le=100, description="most probable classes listed per input")]


def _error(kind: str, message: str, status: int) -> JSONResponse:
    headers = {"www-authenticate": "Bearer"} if status == 401 else {}
    if status == 503:
        headers["retry-after"] = "1"
    return JSONResponse({"error": kind, "message": message}, status_code=status, headers=headers)


def _status_of(exc: TMCError) -> int:
    return next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)


def _predictions(
    scores: torch.Tensor, names: tuple[str, ...], inputs: list[str], top: int
) -> list[Prediction]:
    probabilities = torch.softmax(scores, dim=1)
    results = []
    for name, row, probs in zip(inputs, scores, probabilities, strict=True):
        best = probs.topk(min(top, probs.numel()))
        label = int(best.indices[0])
        results.append(
            Prediction(
                input=name,
                class_name=names[label],
                label=label,
                probability=float(best.values[0]),
                top=[
                    TopClass(class_name=names[int(c)], label=int(c), probability=float(p))
                    for p, c in zip(best.values, best.indices, strict=True)
                ],
                probabilities=probs.tolist(),
                logits=row.tolist(),
            )
        )
    return results


def _model_info(served: Served) -> ModelInfo:
    composed, version = served.composed, served.composed.version
    return ModelInfo(
        version=version.number,
        component_ids=list(version.component_ids),
        components=version.count,
        classes=list(composed.classes),
        input=composed.data.input,
        theta0_sha256=composed.base.sha256,
        delta_sha256=version.delta_sha256,
        weighting=version.weighting,
        round=version.round,
        created_at=version.created_at,
    )


async def _read_inputs(
    request: Request, settings: ServeSettings
) -> tuple[list[str], PredictRequest | list[tuple[str, bytes]]]:
    """The names and raw inputs of a predict request, by its content type."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/json":
        try:
            parsed = PredictRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            raise DataError(
                f'{_validation_message(exc.errors())} (send {{"inputs": [...]}}, a batch '
                "(N, C, H, W) of numbers: see GET /v1/model's input)"
            ) from exc
        return [f"inputs[{i}]" for i in range(len(parsed.inputs))], parsed
    if media == "multipart/form-data":
        # One more file than allowed is parsed, so that the refusal can say how many came.
        form = await request.form(max_files=settings.max_batch + 1, max_fields=16)
        uploads = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
        check_batch(len(uploads), settings.max_batch)
        files = [(f.filename or f"files[{i}]", await f.read()) for i, f in enumerate(uploads)]
        return [name for name, _ in files], files
    raise UnsupportedMediaError(
        f"content type {media or '(none)'!r} is not accepted: send application/json "
        "(prepared arrays) or multipart/form-data (image files in the field 'files')"
    )


def create_app(settings: ServeSettings, *, metrics: ServingMetrics | None = None) -> FastAPI:
    """The serve app. Its lifespan opens the registry and follows it (``LiveModel``)."""
    metrics = metrics or ServingMetrics()
    auth = BearerAuth(settings.credentials)  # an unreadable file fails here, before serving
    live = LiveModel(
        settings.registry, metrics=metrics, poll_s=settings.poll_s, wait_s=settings.wait_s
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(live.start)
        try:
            yield
        finally:
            await run_in_threadpool(live.close)

    app = FastAPI(
        title="tmc serve",
        summary="The federation's current composed model, following forgets.",
        version="1",
        lifespan=lifespan,
        responses=_ERRORS,  # type: ignore[arg-type]
    )
    app.state.live = live
    app.state.metrics = metrics
    app.state.auth = auth

    @app.exception_handler(TMCError)
    async def _tmc_error(request: Request, exc: TMCError) -> JSONResponse:
        status = _status_of(exc)
        if status == 500:
            _log.error("serve: %s on %s: %s", type(exc).__name__, request.url.path, exc)
        return _error(type(exc).__name__, str(exc), status)

    @app.exception_handler(ValidationError)
    async def _invalid(request: Request, exc: ValidationError) -> JSONResponse:
        return _error("ValidationError", _validation_message(exc.errors()), 422)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error("ValidationError", _validation_message(exc.errors()), 422)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        # Not bad input (that is a TMCError or a validation error above): a fault of ours.
        _log.error("serve: unexpected error on %s", request.url.path, exc_info=exc)
        return _error("InternalError", f"the server failed: {type(exc).__name__}", 500)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return _error("HTTPError", str(exc.detail), exc.status_code)

    @app.post(
        PREDICT_PATH,
        response_model=PredictResponse,
        openapi_extra={"requestBody": _PREDICT_BODY},
    )
    async def predict(
        request: Request, _: Authorised, version: Version = None, top: Top = 3
    ) -> PredictResponse:
        """Classify a batch: prepared arrays as JSON ``{"inputs": [...]}`` (N, C, H, W),
        or PNG/JPEG files as multipart form data in the field ``files``."""
        names, raw = await _read_inputs(request, settings)

        def compute(served: Served) -> torch.Tensor:
            spec = served.composed.data.input
            if isinstance(raw, PredictRequest):
                batch = array_batch(raw, spec, settings.max_batch)
            else:
                batch = image_batch(
                    raw, spec, max_batch=settings.max_batch, max_pixels=settings.max_image_pixels
                )
            return served.scores(batch)

        scores, served = await run_in_threadpool(live.answer, compute, version)
        metrics.items.inc(len(names))
        return PredictResponse(
            version=served.number,
            component_ids=list(served.component_ids),
            predictions=_predictions(scores, served.composed.classes, names, top),
        )

    @app.get("/v1/model", response_model=ModelInfo)
    async def model(_: Authorised, version: Version = None) -> ModelInfo:
        """What is served: version, component ids, classes, input spec, θ0 hash."""
        served = await run_in_threadpool(
            live.current if version is None else lambda: live.version(version)
        )
        return _model_info(served)

    @app.get("/metrics", response_class=Response)
    async def prometheus(_: Authorised) -> Response:
        """Prometheus text: prediction requests by status, latency, the served version."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/healthz", response_model=Health)
    async def health() -> Health:
        """Liveness without a token: whether a version is loaded (nothing else is said)."""
        number = live.served_number
        return Health(status="ok" if number is not None else "starting", version=number)

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(PredictionMetrics, metrics=metrics, path=PREDICT_PATH)
    return app


def _validation_message(errors: Any) -> str:
    parts = []
    for error in list(errors)[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg")))
    return "; ".join(parts) or "the request is invalid"


_PREDICT_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": PredictRequest.model_json_schema()},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                },
                "required": ["files"],
            }
        },
    },
}


__all__ = ["PREDICT_PATH", "create_app"]
