"""Minifilter altitudes: where a filter sits in the file-system stack, and whose it is.

Sources (Microsoft Learn, Windows driver documentation, IFS section)
---------------------------------------------------------------------
* "Load order groups and altitudes for minifilter drivers"
  (https://learn.microsoft.com/en-us/windows-hardware/drivers/ifs/load-order-groups-and-altitudes-for-minifilter-drivers,
  ms.date 2024-06-24): an altitude is "an infinite-precision string interpreted as a
  decimal number"; a filter with a lower altitude sits **below** one with a higher
  altitude, that is nearer the file system. Each load order group owns a range
  (:data:`LOAD_ORDER_GROUPS`, copied from that page's table): FSFilter Activity Monitor
  360000-389999 ("observe and report on file I/O": Process Monitor's driver, PROCMON24,
  at 385200), FSFilter Anti-Virus 320000-329999 ("detect and disinfect viruses during file
  I/O": WdFilter, Microsoft Defender's filter, at 328010). Companies may add "fractional"
  altitudes to an allocated one (325000.3), so altitudes are compared as decimals.
* "Allocated filter altitudes"
  (https://learn.microsoft.com/en-us/windows-hardware/drivers/ifs/allocated-altitudes):
  the altitudes Microsoft has allocated, with the filter's file name and the company
  (headed "320000 - 329998: FSFilter Anti-Virus" there; the load-order page says
  329999). A copy is bundled as ``data/allocated-altitudes.csv``; its header comments say
  which version and how much of it (``scripts/refresh_altitudes.py`` rebuilds it).

Why this matters to traceaudit: Procmon sees only the I/O that reaches its own altitude.
A filter **below** it (an antivirus or EDR filter in the Anti-Virus range, an encryption
or HSM filter lower still) can open, scan, hold or refuse a file with requests that never
pass Procmon, so a capture that shows every process holding a file can still show no holder.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources
from typing import Any

__all__ = [
    "Allocation",
    "LoadOrderGroup",
    "LOAD_ORDER_GROUPS",
    "PROCMON_ALTITUDE",
    "altitude_value",
    "bundled_source",
    "group_of",
    "allocations_at",
]

PROCMON_ALTITUDE = Decimal("385200")
"""Process Monitor's driver (PROCMON24; Procmon11.sys in the 2020 list) in FSFilter
Activity Monitor."""


@dataclass(frozen=True)
class LoadOrderGroup:
    """One system-defined load order group and its altitude range (inclusive)."""

    name: str
    low: Decimal
    high: Decimal
    description: str

    def contains(self, altitude: Decimal) -> bool:
        return self.low <= altitude <= self.high

    @property
    def range_text(self) -> str:
        return f"{self.low}-{self.high}" if self.low else f"<{self.high + 1}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "range": self.range_text, "description": self.description}


def _group(name: str, low: int, high: int, description: str) -> LoadOrderGroup:
    return LoadOrderGroup(name, Decimal(low), Decimal(high), description)


# From "Load order groups and altitudes for minifilter drivers", top of the stack first.
# A fractional altitude just above a range's last integer (329999.5) still belongs to it.
LOAD_ORDER_GROUPS: tuple[LoadOrderGroup, ...] = (
    _group("Filter", 420000, 429999, "legacy Filter group; attaches furthest from the file system"),
    _group("FSFilter Top", 400000, 409999, "must attach above all other FSFilter types"),
    _group("FSFilter Activity Monitor", 360000, 389999, "observes and reports on file I/O"),
    _group("FSFilter Undelete", 340000, 349999, "recovers deleted files"),
    _group("FSFilter Anti-Virus", 320000, 329999, "detects and disinfects viruses during file I/O"),
    _group("FSFilter Replication", 300000, 309999, "replicates file data to remote servers"),
    _group("FSFilter Continuous Backup", 280000, 289999, "replicates file data to backup media"),
    _group(
        "FSFilter Content Screener",
        260000,
        269999,
        "prevents the creation of specific files or file content",
    ),
    _group("FSFilter Quota Management", 240000, 249999, "enhanced file system quotas"),
    _group(
        "FSFilter System Recovery",
        220000,
        229999,
        "maintains operating system integrity (System Restore)",
    ),
    _group(
        "FSFilter Cluster File System",
        200000,
        209999,
        "file server metadata across a network",
    ),
    _group("FSFilter HSM", 180000, 189999, "hierarchical storage management (cloud files)"),
    _group("FSFilter Imaging", 170000, 175000, "ZIP-like virtual namespaces"),
    _group("FSFilter Compression", 160000, 169999, "file data compression"),
    _group("FSFilter Encryption", 140000, 149999, "encrypts and decrypts data during file I/O"),
    _group("FSFilter Virtualization", 130000, 139999, "virtualizes the file path (LUA)"),
    _group(
        "FSFilter Physical Quota Management",
        120000,
        129999,
        "quotas by physical block counts",
    ),
    _group("FSFilter Open File", 100000, 109999, "snapshots of already open files"),
    _group(
        "FSFilter Security Enhancer",
        80000,
        89999,
        "lockdown and enhanced access control lists",
    ),
    _group("FSFilter Copy Protection", 60000, 69999, "checks for out-of-band data on media"),
    _group("FSFilter Bottom", 40000, 49999, "must attach below all other FSFilter types"),
    _group("FSFilter System", 20000, 29999, "reserved for internal use"),
    _group(
        "FSFilter Infrastructure", 0, 19999, "reserved for internal use; nearest the file system"
    ),
)


def altitude_value(text: str) -> Decimal | None:
    """An altitude string (``328010``, ``385250.5``) as a decimal; None if it is not one."""
    text = text.strip()
    if not text or not all(c.isdigit() or c == "." for c in text) or text.count(".") > 1:
        return None
    if text.startswith(".") or text.endswith("."):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - guarded above
        return None


def group_of(altitude: Decimal) -> LoadOrderGroup | None:
    """The load order group whose range holds ``altitude`` (its integer part), if any."""
    whole = Decimal(int(altitude))
    return next((g for g in LOAD_ORDER_GROUPS if g.contains(whole)), None)


@dataclass(frozen=True)
class Allocation:
    """One row of Microsoft's allocated-altitudes list."""

    altitude: str
    minifilter: str
    company: str
    group: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "altitude": self.altitude,
            "minifilter": self.minifilter,
            "company": self.company,
            "load_order_group": self.group,
        }


_DATA = "allocated-altitudes.csv"


@cache
def _table() -> tuple[dict[Decimal, tuple[Allocation, ...]], tuple[str, ...]]:
    text = resources.files("traceaudit.minifilters").joinpath(f"data/{_DATA}").read_text("utf-8")
    comments = tuple(line[1:].strip() for line in text.splitlines() if line.startswith("#"))
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    table: dict[Decimal, list[Allocation]] = {}
    for row in csv.DictReader(io.StringIO(body)):
        value = altitude_value(row["altitude"])
        if value is None:
            continue
        table.setdefault(value, []).append(
            Allocation(row["altitude"], row["minifilter"], row["company"], row["load_order_group"])
        )
    return {k: tuple(v) for k, v in table.items()}, comments


def allocations_at(altitude: Decimal) -> tuple[Allocation, ...]:
    """Every allocation in the bundled list at exactly ``altitude`` (usually one)."""
    return _table()[0].get(altitude, ())


def bundled_source() -> tuple[str, ...]:
    """The bundled list's header comments: where it came from, its date, how complete."""
    return _table()[1]
