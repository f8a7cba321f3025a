"""Errors of ``tmc serve``, refining the project's (``common.errors``).

Each maps to one HTTP status (``app.py``): a bad request is a 4xx that names what is wrong,
never a 500, and nothing is changed by it.
"""

from __future__ import annotations

from tmc.common.errors import TMCError


class ServingError(TMCError):
    """The inference service cannot answer a request (base of the errors below)."""


class RequestTooLargeError(ServingError):
    """A body over the size limit, or a batch over the batch limit (HTTP 413)."""


class UnsupportedMediaError(ServingError):
    """A body that is neither JSON nor multipart form data (HTTP 415)."""


class ModelUnavailableError(ServingError):
    """No version may be answered from right now: none committed yet, or the served one
    was invalidated by a forget and its successor is still loading (HTTP 503)."""
