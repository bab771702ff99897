"""Which rewriter each column gets, with one cache per distinct value.

Traces repeat themselves: 53,000 events of a real capture have 18 process names, a few
thousand paths and a few hundred command lines. Every value is rewritten once and looked
up afterwards, so the cost grows with the number of distinct values, not rows. Columns
that carry no names (times, PIDs, Operation, Result…) are copied untouched (only
``--secret`` words are replaced in them, when there are any).

Only two rewrites need more than the value itself: a ``QueryDirectory`` Detail lists
names *in* the row's Path, and Company/Description are kept for well-known software only.

While discovering, the values of the untouched columns that hold words (Operation,
Result, Category, Event Class, Integrity…) are learnt (:meth:`Context.learn`): a secret
equal to one of their words (a folder named ``Path`` beside ``PATH NOT FOUND``) is then
not searched for in text, since those columns keep it anyway. ``Version`` (the image's
file version) is not rewritten but has secrets replaced in it: a version string can equal
an address found elsewhere in the trace.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from traceaudit.formats.procmon_text.columns import CLIPBOARD_COLUMNS
from traceaudit.redaction.context import Context
from traceaudit.redaction.fields import (
    rewrite_account,
    rewrite_cmdline,
    rewrite_company,
    rewrite_detail,
    rewrite_env,
    rewrite_text,
)
from traceaudit.redaction.paths import rewrite_location, rewrite_process

__all__ = ["CLIPBOARD_COLUMNS", "RowRewriter"]


_PASS = frozenset(
    [
        "Time of Day",
        "Date & Time",
        "Relative Time",
        "Duration",
        "Completion Time",
        "PID",
        "TID",
        "Parent PID",
        "Sequence",
        "Session",
        "Event Class",
        "Operation",
        "Result",
        "Virtualized",
        "Integrity",
        "Category",
        "Architecture",
        "Authentication ID",
    ]
)
_LEARN = frozenset(
    [
        "Event Class",
        "Operation",
        "Result",
        "Virtualized",
        "Integrity",
        "Category",
        "Architecture",
        "Authentication ID",
    ]
)
"""Untouched columns of few distinct values whose words are learnt while discovering."""
_CACHE_ALL = 200_000
"""Past this many distinct values of a kind, only values that change are kept: unique,
unchanged Details (``Offset: 5,242,880, Length: 4,096``) would otherwise fill memory."""
_SIMPLE: dict[str, Callable[[Context, str], str]] = {
    "Process Name": rewrite_process,
    "Path": rewrite_location,
    "Image Path": rewrite_location,
    "Command Line": rewrite_cmdline,
    "User": rewrite_account,
}


class RowRewriter:
    """Rewrites rows whose fields are the Procmon columns ``columns`` (None: unknown)."""

    def __init__(self, ctx: Context, columns: Sequence[str | None]) -> None:
        self.ctx = ctx
        self.columns = list(columns)
        index = {name: i for i, name in enumerate(columns) if name is not None}
        self._plan = [self._kind(name) for name in columns]
        self._operation = index.get("Operation")
        self._path = index.get("Path")
        self._has_process = "Process Name" in index
        self._caches: dict[str, dict[Any, str]] = {}
        self._work: list[tuple[int, str, dict[Any, str]]] = []
        self._plan_work()

    def _plan_work(self) -> None:
        """The fields to visit: all but the untouched ones (those too with ``--secret``,
        and while discovering those whose words are learnt), each with the cache of its
        kind of value."""
        discovering = self.ctx.discovering
        substitute = bool(self.ctx.custom) and not discovering
        work = [
            (i, kind)
            for i, kind in enumerate(self._plan)
            if kind != "pass" or substitute or (discovering and self.columns[i] in _LEARN)
        ]
        # the process name first: Company and Description depend on it
        work.sort(key=lambda item: (item[1] != "Process Name", item[0]))
        self._work = [(i, kind, self._caches.setdefault(kind, {})) for i, kind in work]

    @staticmethod
    def _kind(name: str | None) -> str:
        if name in _PASS:
            return "pass"
        if name in _SIMPLE:
            return name
        if name == "Detail":
            return "detail"
        if name == "Version":
            return "version"
        if name in ("Company", "Description"):
            return "company"
        return "text"

    def reset(self) -> None:
        """Forget the discovery pass's results (call after :meth:`Context.freeze`)."""
        for cache in self._caches.values():
            cache.clear()
        self._plan_work()

    def _cached(self, kind: str, key: Any, make: Callable[[], str]) -> str:
        cache = self._caches.setdefault(kind, {})
        value = cache.get(key)
        if value is None:
            value = make()
            cache[key] = value
        return value

    def row(self, fields: list[str]) -> list[str]:
        """The rewritten fields of one row (extra fields are rewritten as free text)."""
        ctx = self.ctx
        out = fields[:]
        width = len(fields)
        process_known = True
        for i, kind, cache in self._work:
            if i >= width:
                continue
            value = fields[i]
            if not value:
                continue
            key: Any = value
            if kind == "detail":
                operation = _at(fields, self._operation)
                if operation == "QueryDirectory" or value.startswith("Filter: "):
                    path = _at(fields, self._path)
                    key = (value, operation, path)  # listings name children of the Path
            elif kind == "company":
                key = (value, process_known and self._has_process)
            elif kind == "pass":
                if ctx.discovering:
                    if value not in cache:
                        cache[value] = value
                        ctx.learn(value)
                    continue
                out[i] = ctx.substitute(value)
                continue
            got = cache.get(key)
            if got is None:
                got = self._rewrite(kind, key)
                if got != value or len(cache) < _CACHE_ALL:
                    cache[key] = got
            out[i] = got
            if kind == "Process Name":
                process_known = got == value
        for i in range(len(self._plan), width):
            out[i] = self._cached("text", fields[i], partial(rewrite_text, ctx, fields[i]))
        return out

    def _rewrite(self, kind: str, key: Any) -> str:
        ctx = self.ctx
        if kind == "detail":
            if isinstance(key, tuple):
                value, operation, path = key
                return rewrite_detail(ctx, value, operation, path)
            return rewrite_detail(ctx, key)
        if kind == "company":
            return rewrite_company(ctx, key[0], key[1])
        if kind == "version":
            return ctx.substitute(key)
        if kind == "text":
            return rewrite_text(ctx, key)
        return _SIMPLE[kind](ctx, key)

    def env_line(self, line: str) -> str:
        """A pasted line continuing an environment block (``;\\tNAME=value``)."""
        return self._cached("env", line, lambda: rewrite_env(self.ctx, line))

    def free_text(self, line: str) -> str:
        """A pasted line that is not an event: free text."""
        return self._cached("text", line, lambda: rewrite_text(self.ctx, line))

    def text(self, line: str) -> str:
        """A line that is not an event (blank, Markdown fence): only ``--secret`` words."""
        return line if self.ctx.discovering else self.ctx.substitute(line)


def _at(fields: list[str], index: int | None) -> str:
    return fields[index] if index is not None and index < len(fields) else ""
