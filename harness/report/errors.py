"""The report's one error: bad input (no such path, no runs, unknown baseline), one line for the user."""

from __future__ import annotations


class ReportError(ValueError):
    """Bad input to a report (no such path, no runs, unknown baseline): one line for the user, no traceback."""
