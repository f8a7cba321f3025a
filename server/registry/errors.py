"""Registry-specific refinements of the project's errors (``common.errors``).

Each derives from :class:`~common.errors.RegistryError`, so callers that only care that
"the registry refused" catch that; callers that map errors to responses (the admin API)
can tell the cases apart.
"""

from __future__ import annotations

from tmc.common.errors import IntegrityError, RegistryError


class RegistryExistsError(RegistryError):
    """``create`` was asked for a folder that already holds a registry."""


class RegistryIncompleteError(RegistryError):
    """The registry database exists but its creation has not finished (or was cut off)."""


class RegistryMismatchError(RegistryError):
    """A registry was reopened with another base, weighting or norm bound than it holds."""


class ForgottenComponentError(RegistryError):
    """A component that was forgotten on request was offered again; it stays forgotten."""


class ForgottenSiloError(RegistryError):
    """A silo forgotten on request offered a contribution; it is refused until the operator
    readmits the silo. The message is the refusal: "forgotten on <date>: <reason>"."""


class ForgetChangedError(RegistryError):
    """A forget named the components it expected to remove (what a confirmation showed),
    and the registry would remove others; nothing was changed."""


class PrivacyFloorError(RegistryError):
    """A component does not state the privacy the registry requires of every component."""


class RegistryLockedError(RegistryError):
    """Another process held the registry's write lock for longer than the busy timeout."""


class RegistryBusyError(RegistryError):
    """Another run holds the registry's run lock (one run per registry); the message names it."""


class DuplicateContributionError(RegistryError):
    """A silo offered a second active component for an increment it already contributed."""


class RegistryClosedError(RegistryError):
    """An operation was called on a registry after ``close()``."""


class SchemaVersionError(RegistryError):
    """The registry database was written by a newer (or unknown) version of this code."""


class MissingBlobError(IntegrityError):
    """A file the metadata refers to is not on disk."""


class StorageError(RegistryError):
    """The disk refused a write (full, read-only, failing); nothing was committed."""
