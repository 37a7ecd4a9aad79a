"""The signal CSV of the end-to-end tests, its green window anchored to the task's own first decision.

A window that turns green N seconds after a fixture wrote the file races with Airflow: on a busy machine the task
reaches its decision after the window opened, runs at once and never defers. So the file is first written with the
window far ahead (within the task's max_delay, so the task defers whenever it decides), and moved close only once
the test has seen the task defer (the trigger reads it again at its next refresh).
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.signal_files import write_signal


def write_signal_file(path: Path, *, green_in_s: float, period_s: int) -> Path:
    """``write_signal``, replacing the file at once: a task or trigger reading it never sees half a file."""
    staged = write_signal(path.with_name(path.name + ".new"), green_in_s=green_in_s, period_s=period_s)
    os.replace(staged, path)
    return path

