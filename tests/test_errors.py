"""One root for every error the package raises on purpose, so a caller can catch them all."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import airflow_carbon
from airflow_carbon.errors import CarbonError


def _modules() -> list[str]:
    """The package's modules, less the migration scripts: Alembic runs those, with its own context."""
    return sorted(m.name for m in pkgutil.walk_packages(airflow_carbon.__path__, "airflow_carbon.")
                  if ".migrations." not in m.name + ".")


def public_errors() -> dict[str, type[BaseException]]:
    """Every public exception class defined in the package, by its dotted path."""
    found = {}
    for name in _modules():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == name
                    and not attr.startswith("_")):
                found[f"{name}.{attr}"] = value
    return found


def test_every_public_error_of_the_package_derives_from_carbon_error():
    errors = public_errors()
    strays = sorted(path for path, cls in errors.items() if not issubclass(cls, CarbonError))
    assert not strays, f"not a CarbonError: {strays}"


def test_the_walk_sees_the_errors_of_every_layer():
    """Without this, a walk that found nothing would pass the test above."""
    names = {path.rsplit(".", 1)[-1] for path in public_errors()}
    assert {"CarbonSettingsError", "SignalDataError", "InvalidRecordError", "UnsupportedDialectError",
            "SignalServiceError", "MissingExtraError"} <= names


@pytest.mark.parametrize("path", [
    "airflow_carbon.settings.CarbonSettingsError",
    "airflow_carbon.signals.series.SignalDataError",
    "airflow_carbon.metrics.store.UnsupportedDialectError",
    "airflow_carbon.errors.MissingExtraError",
])
def test_errors_about_bad_values_are_still_value_errors(path):
    """Callers written before the hierarchy catch ``ValueError``; they keep working."""
    module, name = path.rsplit(".", 1)
    assert issubclass(getattr(importlib.import_module(module), name), ValueError)
