"""Redacting a Process Monitor XML export (File > Save > XML) in place.

Layout (see :mod:`traceaudit.formats.procmon_text.xml_read`)::

    <procmon><processlist><process><ProcessName/><ImagePath/><CommandLine/><Owner/>…
                 <modulelist><module><Path/><Company/><Description/>…</module>…
             <eventlist><event><Time_of_Day/><Process_Name/><PID/>…<Detail/>
                 [<stack><frame><path/><location/>…</frame>…</stack>]</event>…

Only the text of leaf elements is rewritten, so everything else (the declaration, the
byte-order mark, CRLF line ends, indentation, element order) stays byte for byte. An
event's leaves are gathered into one row of Procmon columns (``Process_Name`` is
``Process Name``) and go through the same :class:`~._redact_rows.RowRewriter` as a CSV
row; a process is a row of its image columns; a module's Company and Description are
kept when its path is (a well-known DLL); ``Version`` leaves only have secrets replaced
and ``Integrity`` leaves are learnt as untouched words (see :mod:`._redact_rows`).
Entities are decoded before rewriting and
values that change are escaped again the way Procmon escapes them (``&quot;``…); values
that do not change are written back untouched.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from functools import partial
from typing import IO

from traceaudit.formats.procmon_text.columns import PROCMON_COLUMNS
from traceaudit.redaction.context import Context
from traceaudit.redaction.fields import rewrite_company, rewrite_text
from traceaudit.redaction.paths import rewrite_location, rewrite_process
from traceaudit.redaction.rows import RowRewriter

__all__ = ["XmlHandler"]

_BLOCK = re.compile(r"<(?P<kind>process|event)>.*?</(?P=kind)>", re.S)
_INNER = {
    "process": re.compile(r"<module>.*?</module>", re.S),
    "event": re.compile(r"<frame>.*?</frame>", re.S),
}
_LEAF = re.compile(r"<(?P<tag>[^\s<>/!?]+)>(?P<text>[^<]*)</(?P=tag)>")
_EVENT_COLUMNS: dict[str, str] = {
    re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_"): name for name in PROCMON_COLUMNS
}
_EVENT_COLUMNS["date_and_time"] = "Date & Time"
_PROCESS_COLUMNS = {
    "ProcessName": "Process Name",
    "ImagePath": "Image Path",
    "CommandLine": "Command Line",
    "Owner": "User",
    "CompanyName": "Company",
    "Description": "Description",
}
_PASS = frozenset(
    [
        "ProcessIndex",
        "ProcessId",
        "ParentProcessId",
        "ParentProcessIndex",
        "AuthenticationId",
        "CreateTime",
        "FinishTime",
        "IsVirtualized",
        "Is64bit",
        "Integrity",
        "Version",
        "Timestamp",
        "BaseAddress",
        "Size",
        "depth",
        "address",
    ]
)


def _escape(text: str) -> str:
    """Escape as Procmon does: the five XML entities."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&apos;")
    )


class XmlHandler:
    """Discovery and writing passes over a Procmon XML export."""

    def __init__(self, text: str, ctx: Context) -> None:
        self.text = text
        self.ctx = ctx
        self._event_columns = list(dict.fromkeys(_EVENT_COLUMNS.values()))
        self._event_index = {name: i for i, name in enumerate(self._event_columns)}
        self.events = RowRewriter(ctx, self._event_columns)
        self.processes = RowRewriter(ctx, list(_PROCESS_COLUMNS.values()))
        self._cache: dict[tuple[str, str], str] = {}
        self.events_seen = 0

    def reset(self) -> None:
        """Forget the discovery pass (after :meth:`Context.freeze`)."""
        self.events.reset()
        self.processes.reset()
        self._cache.clear()

    def discover(self) -> None:
        """Run the rewriters over every element once, so the context notes every secret."""
        for _ in self._pieces():
            pass

    def write(self, stream: IO[str]) -> int:
        """Write the rewritten document to ``stream``; return the number of events."""
        for piece in self._pieces():
            stream.write(piece)
        return self.events_seen

    # ------------------------------------------------------------------ structure
    def _pieces(self) -> Iterator[str]:
        text = self.text
        pos = 0
        self.events_seen = 0
        for block in _BLOCK.finditer(text):
            yield self._loose(text[pos : block.start()])
            yield self._block(block.group("kind"), block.group(0))
            pos = block.end()
        yield self._loose(text[pos:])

    def _loose(self, text: str) -> str:
        """Leaves outside any process or event: free text."""
        return _replace(text, lambda tag, value: self._text(value))

    def _block(self, kind: str, block: str) -> str:
        inner = [(m.start(), m.end()) for m in _INNER[kind].finditer(block)]
        outer = [m for m in _LEAF.finditer(block) if not _inside(m.start(), inner)]
        values = {m.group("tag"): html.unescape(m.group("text")) for m in reversed(outer)}
        nested: Callable[[str], str]
        if kind == "event":
            self.events_seen += 1
            new = self._event(values)
            nested = self._frame
        else:
            new = self._process(values)
            nested = self._module
        out: list[str] = []
        pos = 0
        spans: list[tuple[int, int, re.Match[str] | None]] = [
            (m.start(), m.end(), m) for m in outer
        ]
        spans += [(start, end, None) for start, end in inner]
        for start, end, match in sorted(spans, key=lambda span: span[0]):
            out.append(block[pos:start])
            if match is None:
                out.append(nested(block[start:end]))
            else:
                out.append(_leaf(match, new.get(match.group("tag"))))
            pos = end
        out.append(block[pos:])
        return "".join(out)

    # ------------------------------------------------------------------ rewriting
    def _event(self, values: dict[str, str]) -> dict[str, str]:
        row = [""] * len(self._event_columns)
        placed: dict[str, int] = {}
        for tag, value in values.items():
            column = _EVENT_COLUMNS.get(re.sub(r"[^a-z0-9]+", "_", tag.lower()).strip("_"))
            index = None if column is None else self._event_index[column]
            if index is not None and index not in placed.values():
                placed[tag] = index
                row[index] = value
        new = self.events.row(row)
        out = {}
        for tag, value in values.items():
            if tag in placed:
                out[tag] = new[placed[tag]]
            elif tag not in _PASS:
                out[tag] = self._text(value)
        return out

    def _process(self, values: dict[str, str]) -> dict[str, str]:
        columns = list(_PROCESS_COLUMNS)
        new = self.processes.row([values.get(tag, "") for tag in columns])
        out = dict(zip(columns, new, strict=True))
        for tag, value in values.items():
            if tag not in _PROCESS_COLUMNS:
                self._other(tag, value, out)
        return out

    def _other(self, tag: str, value: str, out: dict[str, str]) -> None:
        """A leaf that is no Procmon column: free text, or untouched (``_PASS``)."""
        if tag == "Version":
            out[tag] = self._cached("version", value, lambda: self.ctx.substitute(value))
        elif tag not in _PASS:
            out[tag] = self._text(value)
        elif tag == "Integrity" and self.ctx.discovering:
            self.ctx.learn(value)

    def _module(self, block: str) -> str:
        values = {m.group("tag"): html.unescape(m.group("text")) for m in _LEAF.finditer(block)}
        path = values.get("Path", "")
        new_path = self._cached("location", path, lambda: rewrite_location(self.ctx, path))
        image = path.rsplit("\\", 1)[-1]
        known = new_path == path or rewrite_process(self.ctx, image) == image
        out = {"Path": new_path}
        for tag in ("Company", "Description"):
            if tag in values:
                value = values[tag]
                out[tag] = self._cached(
                    f"company{known}", value, partial(rewrite_company, self.ctx, value, known)
                )
        for tag, value in values.items():
            if tag not in out:
                self._other(tag, value, out)
        return _replace(block, lambda tag, value: out.get(tag))

    def _frame(self, block: str) -> str:
        def rewrite(tag: str, value: str) -> str | None:
            if tag.lower() == "path":
                return self._cached("location", value, lambda: rewrite_location(self.ctx, value))
            return None if tag in _PASS else self._text(value)

        return _replace(block, rewrite)

    def _text(self, value: str) -> str:
        return self._cached("text", value, lambda: rewrite_text(self.ctx, value))

    def _cached(self, kind: str, value: str, make: Callable[[], str]) -> str:
        key = (kind, value)
        got = self._cache.get(key)
        if got is None:
            got = make()
            self._cache[key] = got
        return got


def _inside(position: int, spans: list[tuple[int, int]]) -> bool:
    return any(start <= position < end for start, end in spans)


def _leaf(match: re.Match[str], new: str | None) -> str:
    """The leaf element with ``new`` as its text (untouched when unchanged)."""
    raw = match.group("text")
    if new is None or new == html.unescape(raw):
        return match.group(0)
    tag = match.group("tag")
    return f"<{tag}>{_escape(new)}</{tag}>"


def _replace(text: str, rewrite: Callable[[str, str], str | None]) -> str:
    """Every leaf of ``text`` with its text passed through ``rewrite(tag, value)``."""

    def one(match: re.Match[str]) -> str:
        return _leaf(match, rewrite(match.group("tag"), html.unescape(match.group("text"))))

    return _LEAF.sub(one, text)
