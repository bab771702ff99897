"""Two reads of one capture that must agree (test helper for readers with two paths)."""

from __future__ import annotations

from polars.testing import assert_frame_equal

from traceaudit.schema import Trace


def assert_same_trace(got: Trace, expected: Trace, what: str = "") -> None:
    """The same events, warnings, skipped rows and cut (``what`` names the input)."""
    assert_frame_equal(got.events, expected.events)
    assert (got.warnings, got.skipped, got.skipped_rows, got.truncated) == (
        expected.warnings,
        expected.skipped,
        expected.skipped_rows,
        expected.truncated,
    ), what
