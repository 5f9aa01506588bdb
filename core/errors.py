"""The errors modeldeck shows to a user: one line each, saying what is wrong and where."""

from __future__ import annotations


class ModeldeckError(Exception):
    """Base for every error that reaches the user as one line (CLI exit status 2)."""

    exit_code = 2

    def __str__(self) -> str:  # keep it to one line whatever the message carries
        return " ".join(super().__str__().split())


class ConfigError(ModeldeckError):
    """The config file is missing, unreadable or malformed; the message names file and key."""


class RegistryError(ModeldeckError):
    """The registry file cannot be used, or an operation on it is not allowed."""


class NotFoundError(RegistryError):
    """A model, version, alias or job that does not exist."""


class ConflictError(RegistryError):
    """Another writer changed what this operation expected (compare-and-set failed)."""


class GateError(RegistryError):
    """A release gate blocks the operation (and it was not forced)."""


class InputError(ModeldeckError):
    """A data file or window that cannot be read or compared; names the file and column."""


class UnknownEnvironmentError(RegistryError):
    """A release names an environment that is not declared (no alias, endpoint or policy)."""


class DiscoveryUnavailableError(RegistryError):
    """Whether an environment exists depends on ``[[discover]]``, and Prometheus could not be
    asked: says so with Prometheus's URL (never a header value), not "unknown environment"."""
