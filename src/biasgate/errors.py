"""Exceptions that carry what a user needs to act, and the exit code they map to.

Exit codes (design §1): 0 passed, 1 the gate failed (report written), 2 bad input or
configuration.
"""

from __future__ import annotations

from typing import Any


class BiasgateError(Exception):
    """Base class of every error biasgate raises on purpose."""

    exit_code = 2


class ConfigError(BiasgateError, ValueError):
    """The configuration (file, ``--set`` override or flow parameter) is invalid."""


class InputError(BiasgateError, ValueError):
    """The data cannot be used as configured: a missing column, an empty file, ..."""


class SourceError(BiasgateError, OSError):
    """A source or output location cannot be read or written.

    ``transient`` is True for failures worth retrying (a connection refused, a
    timeout); a missing file or a denied permission is final.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ValidationFailed(BiasgateError):
    """Great Expectations reported failures; ``result`` is validation.json."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


class GateFailed(BiasgateError):
    """A bias metric broke the policy; ``result`` is the full gate.json document."""

    exit_code = 1

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result
