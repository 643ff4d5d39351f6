"""Domain errors: each carries a message a user can act on and the field path it concerns."""

from __future__ import annotations


class DomainError(Exception):
    """A command broke a business rule; `path` names the offending field (dotted), if any."""

    def __init__(self, reason: str, path: str = "") -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.reason = reason
        self.path = path

    def at(self, prefix: str) -> DomainError:
        """The same error with its path nested under `prefix` (e.g. a batch row)."""
        path = f"{prefix}.{self.path}" if self.path else prefix
        return type(self)(self.reason, path)


class ValidationFailed(DomainError):
    """A value has the wrong type or shape (HTTP 422)."""


class NotFound(DomainError):
    """The command names an object that does not exist (HTTP 404)."""


class AlreadyExists(DomainError):
    """The command would create an object that exists already (HTTP 409)."""


class RuleViolated(DomainError):
    """The command is well-formed but the object's state forbids it (HTTP 422)."""
