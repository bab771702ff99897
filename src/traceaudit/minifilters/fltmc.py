"""Read what ``fltmc filters`` and ``fltmc instances`` print, saved to a file.

``fltmc`` (the Filter Manager control program, run as administrator) prints fixed-width
tables: a header line (localized: ``Filter Name  Num Instances  Altitude  Frame`` in
English, ``Filtername  Anzahl Instanzen  Höhe  Frame`` in German), a **rule** of dashes
under each column, then one line per filter (``fltmc filters``: name, instances,
altitude, frame; a legacy filter shows ``<Legacy>`` and may lack the first two) or per
instance (``fltmc instances``: filter, volume (may be blank), altitude, instance name
(words), frame and, on newer Windows, SprtFtrs and VlStatus). The header words are never
read, only the rule: a table with 4 columns is ``fltmc filters``, with 5 or more
``fltmc instances``. Both may be in one file, one after the other.

Encodings: PowerShell 5's ``>`` writes UTF-16LE with a BOM, PowerShell 7 UTF-8, cmd's
``>`` the console's OEM code page; the names and numbers are ASCII in all of them, so a
header in any code page decodes well enough (it is not read).
"""

from __future__ import annotations

import codecs
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from traceaudit.errors import TraceauditError
from traceaudit.minifilters.altitudes import (
    PROCMON_ALTITUDE,
    Allocation,
    LoadOrderGroup,
    allocations_at,
    altitude_value,
    bundled_source,
    group_of,
)

__all__ = ["FltmcError", "Minifilter", "FltmcListing", "read_fltmc", "parse_fltmc", "decode"]

_RULE = re.compile(r"^\s*-{2,}(?:\s+-{2,}){2,}\s*$")
_PROCMON = re.compile(r"^procmon\d*$", re.IGNORECASE)
_HRESULT = re.compile(r"0x8007[0-9a-f]{4}", re.IGNORECASE)
_HOW_TO_SAVE = (
    "Save it from a prompt opened as administrator: fltmc filters > filters.txt "
    "(fltmc instances may follow in the same file)."
)


class FltmcError(TraceauditError, ValueError):
    """A file given as ``fltmc`` output that is not (or holds no filter)."""


@dataclass(frozen=True)
class Minifilter:
    """One filter at one altitude, as ``fltmc`` listed it."""

    name: str
    altitude: str | None
    instances: int | None = None
    frame: str | None = None
    volumes: tuple[str, ...] = ()

    @property
    def value(self) -> Decimal | None:
        return None if self.altitude is None else altitude_value(self.altitude)

    @property
    def group(self) -> LoadOrderGroup | None:
        value = self.value
        return None if value is None else group_of(value)

    @property
    def allocations(self) -> tuple[Allocation, ...]:
        value = self.value
        return () if value is None else allocations_at(value)

    @property
    def is_procmon(self) -> bool:
        return bool(_PROCMON.match(self.name))

    def describe(self) -> str:
        """``WdFilter at 328010: FSFilter Anti-Virus (…); WdFilter.sys by Microsoft``."""
        group = self.group
        where = (
            f"{group.name} ({group.description})" if group else "in no documented load order group"
        )
        owners = self.allocations
        known = (
            "; " + ", ".join(f"{a.minifilter} by {a.company}" for a in owners)
            if owners
            else "; not in the bundled allocated-altitudes list"
        )
        legacy = " (legacy filter)" if self.frame and self.frame.startswith("<") else ""
        return f"{self.name}{legacy} at {self.altitude}: {where}{known}"

    def to_dict(self) -> dict[str, Any]:
        group = self.group
        return {
            "name": self.name,
            "altitude": self.altitude,
            "instances": self.instances,
            "frame": self.frame,
            "volumes": list(self.volumes),
            "load_order_group": None if group is None else group.to_dict(),
            "allocated_to": [a.to_dict() for a in self.allocations],
        }


@dataclass(frozen=True)
class FltmcListing:
    """The filters of one ``fltmc`` output, and which of them sit below Procmon."""

    source: str
    filters: tuple[Minifilter, ...]
    tables: tuple[str, ...] = ()
    skipped_lines: int = 0
    procmon: Minifilter | None = field(default=None)

    @property
    def cutoff(self) -> Decimal:
        """Procmon's altitude: its line in the listing if there is one, else 385200."""
        value = None if self.procmon is None else self.procmon.value
        return PROCMON_ALTITUDE if value is None else value

    @property
    def below(self) -> tuple[Minifilter, ...]:
        """The filters below Procmon, the highest first (nearest Procmon)."""
        cutoff = self.cutoff
        found = [f for f in self.filters if f.value is not None and f.value < cutoff]
        return tuple(sorted(found, key=lambda f: (-(f.value or 0), f.name.lower())))

    @property
    def unplaced(self) -> tuple[Minifilter, ...]:
        """Filters listed without an altitude (legacy filters): where they sit is unknown."""
        return tuple(f for f in self.filters if f.value is None)

    @property
    def antivirus(self) -> tuple[Minifilter, ...]:
        """The filters below Procmon in the FSFilter Anti-Virus range."""
        return tuple(
            f for f in self.below if f.group is not None and f.group.name == "FSFilter Anti-Virus"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "tables": list(self.tables),
            "procmon_altitude": str(self.cutoff),
            "procmon_listed": self.procmon is not None,
            "filters": len(self.filters),
            "below_procmon": [f.to_dict() for f in self.below],
            "without_altitude": [f.to_dict() for f in self.unplaced],
            "skipped_lines": self.skipped_lines,
            "altitude_list": list(bundled_source()),
        }


def decode(data: bytes) -> str:
    """The text of a saved ``fltmc`` output, in whichever encoding Windows wrote it."""
    for bom, codec in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if data.startswith(bom):
            return data[len(bom) :].decode(codec, errors="replace")
    if len(data) >= 4 and data[1::2].count(0) * 2 > len(data) // 2:
        return data.decode("utf-16-le", errors="replace")
    for codec in ("utf-8", "cp1252"):
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            continue
    return data.decode("cp850")


def read_fltmc(path: str | os.PathLike[str]) -> FltmcListing:
    """Read a file holding ``fltmc filters`` and/or ``fltmc instances`` output."""
    file = Path(path)
    return parse_fltmc(decode(file.read_bytes()), source=file.name or str(file))


def _spans(rule: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"-+", rule)]


def _column(start: int, end: int, spans: list[tuple[int, int]]) -> int:
    """The column a token at [start, end) belongs to: the span it overlaps most, or the
    nearest one."""

    def score(span: tuple[int, int]) -> tuple[int, int]:
        overlap = min(end, span[1]) - max(start, span[0])
        distance = min(abs(start - span[1]), abs(span[0] - end))
        return (overlap, -distance)

    return max(range(len(spans)), key=lambda i: score(spans[i]))


def _filters_row(line: str, spans: list[tuple[int, int]]) -> Minifilter | None:
    tokens = [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", line)]
    if not tokens:
        return None
    name = tokens[0][0]
    rest = tokens[1:]
    frame: str | None = None
    if rest and rest[-1][0].startswith("<") and rest[-1][0].endswith(">"):
        frame = rest.pop()[0]
    if len(rest) == 3 and all(altitude_value(t[0]) is not None for t in rest):
        count_text, altitude_text, frame_text = (t[0] for t in rest)
        if not (count_text.isdigit() and frame_text.isdigit()):
            return None
        return Minifilter(name, altitude_text, int(count_text), frame_text)
    if len(rest) > 3:
        return None
    values: dict[int, str] = {}
    for text, start, end in rest:
        if altitude_value(text) is None:
            return None
        values[_column(start, end, spans) if len(spans) >= 4 else 2] = text
    count = values.get(1)
    altitude = values.get(2)
    if frame is None:
        frame = values.get(3)
    if altitude is None and frame is None:
        return None
    return Minifilter(
        name, altitude, int(count) if count is not None and count.isdigit() else None, frame
    )


def _instances_row(line: str) -> tuple[str, str, str] | None:
    """(filter, altitude, volume) of one ``fltmc instances`` line."""
    tokens = [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", line)]
    if len(tokens) < 2:
        return None
    name, _, name_end = tokens[0]
    for text, start, _ in tokens[1:]:
        if altitude_value(text) is not None:
            return name, text, line[name_end:start].strip()
    return None


def parse_fltmc(text: str, *, source: str = "fltmc output") -> FltmcListing:
    """The filters in ``text`` (see the module docstring); :class:`FltmcError` if it holds
    no ``fltmc`` table."""
    if "\x00" in text:
        raise FltmcError(f"{source}: not a text file, so not the output of fltmc. {_HOW_TO_SAVE}")
    if not text.strip():
        raise FltmcError(f"{source}: the file is empty. {_HOW_TO_SAVE}")
    lines = text.splitlines()
    found: dict[tuple[str, Decimal | None], Minifilter] = {}
    order: list[tuple[str, Decimal | None]] = []
    tables: list[str] = []
    skipped = 0
    index = 0
    while index < len(lines):
        if not _RULE.match(lines[index]):
            index += 1
            continue
        spans = _spans(lines[index])
        kind = "filters" if len(spans) == 4 else ("instances" if len(spans) >= 5 else "")
        index += 1
        rows = 0
        while index < len(lines) and lines[index].strip() and not _RULE.match(lines[index]):
            line = lines[index]
            index += 1
            entry = (
                _filters_row(line, spans)
                if kind == "filters"
                else _instance_entry(line)
                if kind == "instances"
                else None
            )
            if entry is None:
                skipped += 1
                continue
            rows += 1
            _merge(found, order, entry)
        if rows and kind:
            tables.append(kind)
    if not found:
        hresult = _HRESULT.search(text)
        if hresult:
            raise FltmcError(
                f"{source}: fltmc could not list the filters (error {hresult.group()}"
                + (", access denied" if hresult.group().lower() == "0x80070005" else "")
                + f"). {_HOW_TO_SAVE}"
            )
        raise FltmcError(
            f"{source}: not the output of fltmc: no 'fltmc filters' or 'fltmc instances' "
            "table in it (column names, a line of dashes under them, then one filter per "
            f"line). {_HOW_TO_SAVE}"
        )
    filters = tuple(found[key] for key in order)
    procmon = next((f for f in filters if f.is_procmon and f.value is not None), None)
    return FltmcListing(
        source=source,
        filters=filters,
        tables=tuple(dict.fromkeys(tables)),
        skipped_lines=skipped,
        procmon=procmon,
    )


def _instance_entry(line: str) -> Minifilter | None:
    row = _instances_row(line)
    if row is None:
        return None
    name, altitude, volume = row
    return Minifilter(name, altitude, volumes=(volume,) if volume else ())


def _merge(
    found: dict[tuple[str, Decimal | None], Minifilter],
    order: list[tuple[str, Decimal | None]],
    entry: Minifilter,
) -> None:
    """One entry per (filter, altitude): counts from ``filters``, volumes from ``instances``."""
    key = (entry.name.lower(), entry.value)
    old = found.get(key)
    if old is None:
        found[key] = entry
        order.append(key)
        return
    volumes = tuple(dict.fromkeys((*old.volumes, *entry.volumes)))
    found[key] = Minifilter(
        name=old.name,
        altitude=old.altitude or entry.altitude,
        instances=old.instances if old.instances is not None else entry.instances,
        frame=old.frame if old.frame is not None else entry.frame,
        volumes=volumes,
    )
