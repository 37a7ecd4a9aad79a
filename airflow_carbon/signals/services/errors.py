"""Why a carbon-signal service gave no usable answer; callers decide on the type and ``retryable``, never the text."""

from __future__ import annotations

from typing import Any

from airflow_carbon.errors import CarbonError


class SignalServiceError(CarbonError):
    """A carbon-signal service did not give a usable answer.

    :param message: says what failed: service, endpoint path, status, a short reason. Never a secret.
    :param service: ``watttime``, ``electricitymaps``, ``ukgrid``.
    :param status: the HTTP status, None when there was no answer (timeout, connection refused).
    :param retryable: trying again later may succeed (timeouts, 429, 5xx, an open circuit).
    """

    def __init__(self, message: str, *, service: str, status: int | None = None, retryable: bool = False,
                 path: str | None = None):
        super().__init__(message)
        self.message, self.service, self.status, self.retryable, self.path = message, service, status, retryable, path

    def __reduce__(self) -> tuple[Any, ...]:  # keyword-only arguments: pickle by state (process pools, logs)
        return _restore_error, (type(self), self.args, self.__dict__)


def _restore_error(cls: type[SignalServiceError], args: tuple[Any, ...], state: dict[str, Any]) -> SignalServiceError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class AuthError(SignalServiceError):
    """Credentials refused (HTTP 401/403)."""


class ScopeError(SignalServiceError):
    """The account may not read this region or signal (WattTime 400 "Invalid scope", no coverage)."""


class ForecastNotAvailable(SignalServiceError):
    """The account's plan has no forecast access (Electricity Maps free tier)."""


class CircuitOpenError(SignalServiceError):
    """The service failed too often lately; no request was sent."""


class BadResponse(SignalServiceError):
    """An answer that is not what the docs say: malformed JSON, a wrong shape, unexpected units.

    :param field: the offending field, e.g. ``meta.units`` or ``data[3].value``.
    """

    def __init__(self, message: str, *, service: str, path: str | None = None, field: str | None = None,
                 status: int | None = None):
        super().__init__(message, service=service, status=status, retryable=False, path=path)
        self.field = field


__all__ = ["AuthError", "BadResponse", "CircuitOpenError", "ForecastNotAvailable", "ScopeError",
           "SignalServiceError"]
