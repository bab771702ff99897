"""``read_trace``: the one-call way to get an event frame from a trace file."""

from __future__ import annotations

import os
from datetime import date as Date
from pathlib import Path

import polars as pl

__all__ = ["read_trace"]


def read_trace(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    date: Date | None = None,
    strict: bool = False,
) -> pl.DataFrame:
    """Read a trace file into the event schema (:data:`traceaudit.schema.EVENT_SCHEMA`).

    The format is detected from the content unless ``format`` names it; ``date`` supplies
    the day for exports whose rows carry only a time of day. Damaged rows are skipped (use
    :func:`traceaudit.formats.load_trace` to see how many and why), or raise with
    ``strict=True``.
    """
    from traceaudit.formats import load_trace

    return load_trace(Path(path), format=format, date=date, strict=strict).events
