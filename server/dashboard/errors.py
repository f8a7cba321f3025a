"""Errors of the dashboard, refining the project's (``common.errors``); each one becomes
one HTTP status and a page that says what is wrong (``pages.py``)."""

from __future__ import annotations

from tmc.common.errors import RegistryError, TMCError


class FormError(TMCError, ValueError):
    """A submitted form is malformed, too large or of the wrong type; nothing was changed."""


class PlanChangedError(RegistryError):
    """What an action would do changed after its confirmation page was shown (a round
    committed, another forget ran); nothing was changed, the operator must review again."""
