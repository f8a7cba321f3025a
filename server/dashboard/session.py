"""Who is logged in: the operator's token, kept in a cookie, checked on every request.

The token is checked against the admin API's credentials file (its hashes and roles, re-read
when it changes), so a revoked token stops working at once. ``operator`` tokens may look and
act (forget, readmit); ``viewer`` tokens may only look; silo tokens are refused, since the
dashboard shows every silo and a silo may see its own only. The cookie is
HttpOnly (no script reads it) and SameSite=Strict (no other site's page sends it); every form
that changes something also carries a form token derived from the session, which another
site cannot know.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from tmc.server.admin.auth import Authenticator, Principal, hash_token
from tmc.server.admin.errors import PermissionDeniedError, UnauthenticatedError

COOKIE = "tmc_dashboard"


class Sessions:
    """Turns a cookie into a :class:`Principal`, and makes and checks form tokens."""

    def __init__(self, credentials: Path) -> None:
        self._authenticator = Authenticator(credentials)
        # Per process: a restart invalidates open confirmation pages, never a login.
        self._secret = secrets.token_bytes(32)

    def principal(self, token: str | None) -> Principal:
        """Who may look: an operator or a viewer (UnauthenticatedError, PermissionDeniedError)."""
        if not token:
            raise UnauthenticatedError("not logged in: enter an operator or viewer token")
        principal = self._authenticator.authenticate([("authorization", f"Bearer {token}")])
        if not (principal.is_operator or principal.is_viewer):
            raise PermissionDeniedError(
                f"the token {principal.label!r} has the role {principal.role!r}: the dashboard "
                "shows every silo, so it needs an operator (or viewer) token"
            )
        return principal

    def operator(self, token: str | None) -> Principal:
        """Who may act: an operator only."""
        principal = self.principal(token)
        if not principal.is_operator:
            raise PermissionDeniedError(
                f"the token {principal.label!r} is a viewer's: it may look, not forget or "
                "readmit; nothing was changed"
            )
        return principal

    def form_token(self, token: str) -> str:
        """The token a form of this session must send back (an HMAC of the session)."""
        message = f"form:{hash_token(token)}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def check_form_token(self, token: str, offered: str) -> None:
        if not hmac.compare_digest(self.form_token(token), offered):
            raise PermissionDeniedError(
                "the form token is missing or stale (page from another session or from before "
                "a restart): reload the page and confirm again; nothing was changed"
            )
