"""The service errors: one family under the package's root error, and they survive pickling."""

from __future__ import annotations

import pickle

import pytest

from airflow_carbon.errors import CarbonError
from airflow_carbon.signals.services.errors import (
    AuthError,
    BadResponse,
    CircuitOpenError,
    ForecastNotAvailable,
    ScopeError,
    SignalServiceError,
)


def test_errors_survive_pickling():
    error = BadResponse("svc: GET /x: meta.units is 'kg'", service="svc", path="/x", field="meta.units")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is BadResponse and str(copy) == str(error)
    assert (copy.service, copy.path, copy.field, copy.retryable) == ("svc", "/x", "meta.units", False)
    auth = pickle.loads(pickle.dumps(AuthError("svc: no", service="svc", status=401)))
    assert isinstance(auth, SignalServiceError) and auth.status == 401


@pytest.mark.parametrize("cls", [SignalServiceError, AuthError, ScopeError, ForecastNotAvailable, CircuitOpenError])
def test_every_service_error_is_a_carbon_error(cls):
    with pytest.raises(CarbonError, match="svc: GET /x -> HTTP 503"):
        raise cls("svc: GET /x -> HTTP 503", service="svc", status=503, retryable=True)
