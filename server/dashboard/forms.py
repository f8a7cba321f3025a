"""The dashboard's forms: read from a bounded url-encoded body into pydantic models.

Parsed here rather than by FastAPI's ``Form`` so that no multipart parser is needed and a
malformed or oversized body is refused with a page that says why, before any handler runs.
"""

from __future__ import annotations

from typing import TypeVar
from urllib.parse import parse_qs

from fastapi import Request
from pydantic import Field, ValidationError

from tmc.common.data.spec import DatasetName
from tmc.common.schema import StrictModel
from tmc.server.dashboard.errors import FormError

MAX_FORM_BYTES = 16 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"

FormT = TypeVar("FormT", bound=StrictModel)


class LoginForm(StrictModel):
    token: str = Field(min_length=1, max_length=512)


class ForgetForm(StrictModel):
    form_token: str = Field(max_length=128)
    plan: str = Field(pattern=r"^[0-9a-f]{64}$")
    reason: str = Field("", max_length=2000)


class ReadmitForm(StrictModel):
    form_token: str = Field(max_length=128)
    reason: str = Field("", max_length=2000)


class ValueForm(StrictModel):
    form_token: str = Field(max_length=128)
    dataset: DatasetName = "digits"
    dataset_root: str = Field("", max_length=4096, description="empty: the built-in data")


class LogoutForm(StrictModel):
    form_token: str = Field(max_length=128)


async def read_form(request: Request, model: type[FormT]) -> FormT:
    """The form of ``request`` as ``model``; FormError if it is not one."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != FORM_TYPE:
        raise FormError(f"expected a form ({FORM_TYPE}), got {kind or 'no content type'}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormError(f"the form is larger than {MAX_FORM_BYTES} bytes")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormError(f"the form is not valid url-encoded UTF-8: {exc}") from None
    repeated = sorted(name for name, values in fields.items() if len(values) > 1)
    if repeated:
        raise FormError(f"the form repeats the field(s) {', '.join(repeated)}")
    try:
        return model.model_validate({name: values[0] for name, values in fields.items()})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in exc.errors()
        )
        raise FormError(f"the form is invalid: {problems}") from None
