"""The package's one clock: aware UTC, read in one place so tests and readers know where "now" comes from."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
