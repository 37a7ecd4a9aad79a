"""One root for every error the package raises on purpose, so a caller can catch them all.

Each error's message names what was wrong and where: the task and setting, the file, line and
column, the service and field. The leaves live beside what raises them; they all derive from here.
"""

from __future__ import annotations


class CarbonError(Exception):
    """An error of airflow-carbon, with a message that names the task, file, line or setting."""


class CarbonConfigError(CarbonError, ValueError):
    """A value given by a person (a setting, a connection, a form field) that cannot be used."""


class MissingExtraError(CarbonConfigError):
    """An option that needs an optional dependency this installation lacks; the message names the extra."""
