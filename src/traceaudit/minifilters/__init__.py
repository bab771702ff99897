"""File-system minifilters: what ``fltmc`` lists, where each sits, and whose it is.

A failure with no holder in a capture that could have shown one most likely comes from a
minifilter below Process Monitor's altitude (typically antivirus or EDR, in the FSFilter
Anti-Virus range): :mod:`~traceaudit.minifilters.fltmc` reads the saved output of
``fltmc filters`` / ``fltmc instances`` and :mod:`~traceaudit.minifilters.altitudes` says
what each altitude means (load order group, and vendor where Microsoft's allocated-altitudes
list has it; sources in that module's docstring).
"""

from traceaudit.minifilters.altitudes import (
    LOAD_ORDER_GROUPS,
    PROCMON_ALTITUDE,
    Allocation,
    LoadOrderGroup,
    allocations_at,
    bundled_source,
    group_of,
)
from traceaudit.minifilters.fltmc import (
    FltmcError,
    FltmcListing,
    Minifilter,
    decode,
    parse_fltmc,
    read_fltmc,
)

__all__ = [
    "LOAD_ORDER_GROUPS",
    "PROCMON_ALTITUDE",
    "Allocation",
    "LoadOrderGroup",
    "allocations_at",
    "bundled_source",
    "group_of",
    "FltmcError",
    "FltmcListing",
    "Minifilter",
    "decode",
    "parse_fltmc",
    "read_fltmc",
]
