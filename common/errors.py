"""The project's one exception hierarchy.

Every error says what is wrong and what the consequence is, so an operator can act on it
without reading the code. Catch :class:`TMCError` to handle anything the project raises on
purpose; anything else is a bug.
"""

from __future__ import annotations


class TMCError(Exception):
    """Base class of every error the project raises on purpose."""


class ConfigError(TMCError, ValueError):
    """A configuration value is missing, out of range or inconsistent."""


class DataError(TMCError):
    """A dataset cannot be loaded or split as asked (missing path, too few samples, ...)."""


class ModelError(TMCError):
    """A base model cannot be built or materialised (unknown architecture, bad weights file)."""


class TangentError(ModelError):
    """A network contains an operation the tangent (linearised) forward cannot handle."""


class ComponentError(TMCError, ValueError):
    """A component is malformed and was not accepted; nothing was changed."""


class BaseMismatchError(ComponentError):
    """A component was trained from another base model (θ0 hash differs)."""


class ComponentSchemaError(ComponentError):
    """A component's tensors do not match the base's tangent parameters (keys, shapes, dtypes)."""


class NonFiniteError(ComponentError):
    """A component contains NaN or Inf values."""


class NormBoundError(ComponentError):
    """A component's norm exceeds the configured bound."""


class CompositionError(TMCError, ValueError):
    """Components cannot be composed as asked (none given, bad weights, mixed bases)."""


class RegistryError(TMCError):
    """The component registry cannot carry out an operation; the registry is unchanged."""


class NotFoundError(RegistryError, KeyError):
    """A component, silo or version named in a request does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class IntegrityError(RegistryError):
    """Stored data does not match its recorded hash: the registry needs attention."""


class FederationError(TMCError):
    """A federated round cannot proceed (too few silos online, no valid replies, ...)."""


class ProtocolError(FederationError):
    """A message does not follow the project's protocol (missing record, malformed JSON,
    arrays of the wrong dtype or shape); it is refused and nothing is changed."""


class AuthError(TMCError):
    """A request is not authenticated, or not authorised for what it asks."""
