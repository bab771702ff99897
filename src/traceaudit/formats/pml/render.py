"""The Detail column (and network paths) as Procmon's CSV export writes them.

Detail text is built per group from decoded fields: flag and enum fields are named once
per *distinct* value (Python over a few dozen values) and the text is assembled with
polars string expressions, so the cost follows the number of distinct values, not of
events. Operations rendered:

* file system: CreateFile, ReadFile/WriteFile, SetRenameInformation*/SetLinkInformation*,
  SetDispositionInformation*, LockFile/UnlockFileSingle, SetEndOfFile/SetAllocation;
  operations Procmon shows with an empty Detail (CloseFile, RegCloseKey…) get "";
* process: Thread Create/Exit, Load Image, Process Create/Start/Exit;
* network: the ``host:port -> host:port`` path and ``Length: …`` with the extra pairs.

Everything else has a null Detail (unknown, not empty). Two known differences from
Procmon: it names the account of a non-well-known impersonation SID (``HOST\\user``)
from the capturing machine, which the file does not hold, so the SID is shown; and the
Flags text of the Ex rename variant is this reader's spelling (no golden sample).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from traceaudit.formats.pml.columns import factorize
from traceaudit.formats.pml.detail import Group
from traceaudit.formats.pml.names import DISPOSITION_NAMES, OPEN_RESULT_NAMES

__all__ = [
    "EMPTY_DETAIL_OPERATIONS",
    "FILE_SYSTEM_RENDERERS",
    "bit_names",
    "access_text",
    "thousands",
    "seconds",
    "labels",
]

EMPTY_DETAIL_OPERATIONS = (
    "<Unknown>",
    "CloseFile",
    "FASTIO_ACQUIRE_FOR_CC_FLUSH",
    "FASTIO_RELEASE_FOR_CC_FLUSH",
    "FASTIO_RELEASE_FOR_MOD_WRITE",
    "FASTIO_RELEASE_FOR_SECTION_SYNCHRONIZATION",
    "FlushBuffersFile",
    "QueryEAFile",
    "QueryIdInformation",
    "QueryNormalizedNameInformationFile",
    "QueryRemoteProtocolInformation",
    "SetEAFile",
    "RegCloseKey",
    "RegDeleteKey",
    "RegDeleteValue",
    "RegFlushKey",
    "RegQueryKeySecurity",
    "RegQueryMultipleValueKey",
)
"""Operations whose Detail Procmon leaves empty (every such row in the corpus CSVs)."""

# Bit tables in Procmon's display order: a combination is named when all its bits are set,
# and its bits are then consumed.
ACCESS_NAMES: tuple[tuple[int, str], ...] = (
    (0x1F01FF, "All Access"),
    (0x1201BF, "Generic Read/Write/Execute"),
    (0x12019F, "Generic Read/Write"),
    (0x1200A9, "Generic Read/Execute"),
    (0x1201B6, "Generic Write/Execute"),
    (0x120089, "Generic Read"),
    (0x120116, "Generic Write"),
    (0x1200A0, "Generic Execute"),
    (0x1, "Read Data/List Directory"),
    (0x2, "Write Data/Add File"),
    (0x4, "Append Data/Add Subdirectory/Create Pipe Instance"),
    (0x8, "Read EA"),
    (0x10, "Write EA"),
    (0x20, "Execute/Traverse"),
    (0x40, "Delete Child"),
    (0x80, "Read Attributes"),
    (0x100, "Write Attributes"),
    (0x10000, "Delete"),
    (0x20000, "Read Control"),
    (0x40000, "Write DAC"),
    (0x80000, "Write Owner"),
    (0x100000, "Synchronize"),
    (0x1000000, "Access System Security"),
    (0x2000000, "Maximum Allowed"),
)
# GENERIC_READ/WRITE/EXECUTE/ALL → the file rights they map to (MapGenericMask).
GENERIC_MAPPING = (
    (0x80000000, 0x120089),
    (0x40000000, 0x120116),
    (0x20000000, 0x1200A0),
    (0x10000000, 0x1F01FF),
)
CREATE_OPTION_NAMES: tuple[tuple[int, str], ...] = (
    (0x1, "Directory"),
    (0x2, "Write Through"),
    (0x4, "Sequential Access"),
    (0x8, "No Buffering"),
    (0x10, "Synchronous IO Alert"),
    (0x20, "Synchronous IO Non-Alert"),
    (0x40, "Non-Directory File"),
    (0x80, "Create Tree Connection"),
    (0x100, "Complete If Oplocked"),
    (0x200, "No EA Knowledge"),
    (0x400, "Open for Recovery"),
    (0x800, "Random Access"),
    (0x1000, "Delete On Close"),
    (0x2000, "Open By ID"),
    (0x4000, "Open For Backup"),
    (0x8000, "No Compression"),
    (0x100000, "Reserve OpFilter"),
    (0x200000, "Open Reparse Point"),
    (0x400000, "Open No Recall"),
    (0x800000, "Open For Free Space Query"),
    (0x10000, "Open Requiring Oplock"),
    (0x20000, "Disallow Exclusive"),
)
ATTRIBUTE_LETTERS: tuple[tuple[int, str], ...] = (
    (0x1, "R"),
    (0x2, "H"),
    (0x4, "S"),
    (0x10, "D"),
    (0x20, "A"),
    (0x40, "D"),
    (0x80, "N"),
    (0x100, "T"),
    (0x200, "SF"),
    (0x400, "RP"),
    (0x800, "C"),
    (0x1000, "O"),
    (0x2000, "NCI"),
    (0x4000, "E"),
    (0x10000, "V"),
)
SHARE_NAMES: tuple[tuple[int, str], ...] = ((0x1, "Read"), (0x2, "Write"), (0x4, "Delete"))
IO_FLAG_NAMES: tuple[tuple[int, str], ...] = (
    (0x10, "Buffered"),
    (0x1, "Non-cached"),
    (0x2, "Paging I/O"),
    (0x4, "Synchronous"),
    (0x40, "Synchronous Paging I/O"),
    (0x400000, "Write Through"),
)
PRIORITY_NAMES = {1: "Very Low", 2: "Low", 3: "Normal", 4: "High", 5: "Critical"}
DISPOSITION_FLAG_NAMES: tuple[tuple[int, str], ...] = (
    (0x1, "FILE_DISPOSITION_DELETE"),
    (0x2, "FILE_DISPOSITION_POSIX_SEMANTICS"),
    (0x4, "FILE_DISPOSITION_FORCE_IMAGE_SECTION_CHECK"),
    (0x8, "FILE_DISPOSITION_ON_CLOSE"),
    (0x10, "FILE_DISPOSITION_IGNORE_READONLY_ATTRIBUTE"),
)
RENAME_FLAG_NAMES: tuple[tuple[int, str], ...] = (
    (0x1, "FILE_RENAME_REPLACE_IF_EXISTS"),
    (0x2, "FILE_RENAME_POSIX_SEMANTICS"),
    (0x4, "FILE_RENAME_SUPPRESS_PIN_STATE_INHERITANCE"),
    (0x8, "FILE_RENAME_SUPPRESS_STORAGE_RESERVE_INHERITANCE"),
    (0x10, "FILE_RENAME_NO_INCREASE_AVAILABLE_SPACE"),
    (0x20, "FILE_RENAME_NO_DECREASE_AVAILABLE_SPACE"),
    (0x40, "FILE_RENAME_IGNORE_READONLY_ATTRIBUTE"),
    (0x80, "FILE_RENAME_FORCE_RESIZE_TARGET_SR"),
    (0x100, "FILE_RENAME_FORCE_RESIZE_SOURCE_SR"),
)
DISPOSITIONS_WITH_ALLOCATION = (0, 2, 3, 5)  # Supersede, Create, OpenIf, OverwriteIf


def bit_names(value: int, table: Iterable[tuple[int, str]], separator: str = ", ") -> str:
    """Procmon's rendering of a bit mask: names of the (combinations of) bits set."""
    names = []
    for bits, name in table:
        if value & bits == bits:
            names.append(name)
            value &= ~bits
    return separator.join(names)


def access_text(mask: int) -> str:
    """Desired Access as Procmon shows it (generic rights mapped first)."""
    for generic, rights in GENERIC_MAPPING:
        if mask & generic:
            mask |= rights
    return bit_names(mask, ACCESS_NAMES) or f"None 0x{mask:x}"


def thousands(value: int) -> str:
    """``5242880`` → ``5,242,880`` (Procmon's en-US number format)."""
    return f"{value:,}"


def seconds(ticks: int) -> str:
    """100 ns ticks → ``0.0156250`` (seconds, 7 decimals)."""
    return f"{ticks // 10_000_000}.{ticks % 10_000_000:07d}"


def labels(values: np.ndarray, text: Callable[[int], str]) -> np.ndarray:
    """Each value's text as an object array, formatted once per distinct value."""
    distinct, codes = factorize(np.asarray(values).astype(np.int64))
    names = np.empty(len(distinct), dtype=object)
    names[:] = [text(v) for v in distinct.tolist()]
    return np.asarray(names[codes])


def _optional(condition: np.ndarray, text: np.ndarray | str) -> np.ndarray:
    """``text`` where ``condition`` holds, else "" (an optional ``, Key: value`` part)."""
    return np.where(condition, text, "").astype(object)


def _yes_no(flags: np.ndarray) -> np.ndarray:
    return np.where(flags, "True", "False").astype(object)


_CREATE_TEXT_FIELDS = (
    "access_mask",
    "disposition",
    "create_options",
    "attributes",
    "share_mode",
    "allocation",
    "impersonating",
    "open_result",
)


def _render_create(group: Group) -> np.ndarray:
    """CreateFile's Detail, made once per distinct combination of the fields it shows
    (a capture opens the same way over and over: far fewer texts than events)."""
    combination = np.zeros(group.size, dtype=np.int64)
    for name in _CREATE_TEXT_FIELDS:  # one code per distinct combination, field by field
        _, code = factorize(np.asarray(group.fields[name]).astype(np.int64))
        _, combination = factorize(combination * (int(code.max(initial=0)) + 1) + code)
    first = np.zeros(int(combination.max(initial=-1)) + 1, dtype=np.int64)
    first[combination[::-1]] = np.arange(group.size - 1, -1, -1)  # a row of each
    fields = {name: np.asarray(group.fields[name])[first] for name in _CREATE_TEXT_FIELDS}
    texts = _create_texts(fields, group.strings.get("impersonating", []))
    return np.asarray(texts[combination])


def _create_texts(f: dict[str, np.ndarray], impersonating: list[str]) -> np.ndarray:
    allocation = np.where(
        np.isin(f["disposition"], DISPOSITIONS_WITH_ALLOCATION), f["allocation"], -1
    )
    result_names = np.array([*OPEN_RESULT_NAMES, "<unknown>"], dtype=object)
    results = result_names[
        np.where(
            (f["open_result"] >= 0) & (f["open_result"] < len(OPEN_RESULT_NAMES)),
            f["open_result"],
            len(OPEN_RESULT_NAMES),
        )
    ]
    rendered: np.ndarray = (
        "Desired Access: "
        + labels(f["access_mask"], access_text)
        + ", Disposition: "
        + labels(
            f["disposition"],
            lambda v: DISPOSITION_NAMES[v] if v < len(DISPOSITION_NAMES) else "<unknown>",
        )
        + ", Options: "
        + labels(f["create_options"], lambda v: bit_names(v, CREATE_OPTION_NAMES))
        + ", Attributes: "
        + labels(f["attributes"], lambda v: bit_names(v, ATTRIBUTE_LETTERS, "") if v else "n/a")
        + ", ShareMode: "
        + labels(f["share_mode"], lambda v: bit_names(v, SHARE_NAMES) if v else "None")
        + ", AllocationSize: "
        + labels(allocation, lambda v: thousands(v) if v >= 0 else "n/a")
        + _optional(
            f["impersonating"] >= 0,
            labels(
                f["impersonating"],
                lambda v: f", Impersonating: {impersonating[v]}" if v >= 0 else "",
            ),
        )
        + _optional(f["open_result"] >= 0, ", OpenResult: " + results)
    )
    return rendered


def _render_read_write(group: Group) -> np.ndarray:
    f = group.fields
    rendered: np.ndarray = (
        "Offset: "
        + labels(f["offset"], thousands)
        + ", Length: "
        + labels(f["length"], thousands)
        + _optional(
            f["io_flags"] != 0,
            labels(f["io_flags"], lambda v: ", I/O Flags: " + bit_names(v, IO_FLAG_NAMES)),
        )
        + _optional(
            f["priority"] != 0,
            labels(f["priority"], lambda v: ", Priority: " + PRIORITY_NAMES.get(v, f"0x{v:x}")),
        )
    )
    return rendered


def _flags_text(table: tuple[tuple[int, str], ...], zero: str) -> Callable[[int], str]:
    return lambda v: "Flags: " + (bit_names(v, table) or zero)


def _render_rename(group: Group) -> np.ndarray:
    f = group.fields
    head = np.where(
        f["flags"] >= 0,
        labels(f["flags"], _flags_text(RENAME_FLAG_NAMES, "0x0")),
        "ReplaceIfExists: " + _yes_no(f["replace_if_exists"]),
    ).astype(object)
    targets = np.empty(group.size, dtype=object)
    targets[:] = group.strings["rename_target"]
    return head + ", FileName: " + targets


def _render_disposition(group: Group) -> np.ndarray:
    f = group.fields
    return np.where(
        f["flags"] >= 0,
        labels(f["flags"], _flags_text(DISPOSITION_FLAG_NAMES, "FILE_DISPOSITION_DO_NOT_DELETE")),
        "Delete: " + _yes_no(f["delete_flag"]),
    ).astype(object)


def _render_lock(group: Group) -> np.ndarray:
    f = group.fields
    span = (
        "Offset: " + labels(f["offset"], thousands) + ", Length: " + labels(f["length"], thousands)
    )
    lock = (
        "Exclusive: "
        + _yes_no(f["exclusive"])
        + ", "
        + span
        + ", Fail Immediately: "
        + _yes_no(f["fail_immediately"])
    )
    sub = group.sub_operation
    return np.where(sub == 1, lock, np.where(sub == 2, span, None)).astype(object)


def _render_size(group: Group) -> np.ndarray:
    key = np.where(group.sub_operation == 0x14, "EndOfFile: ", "AllocationSize: ").astype(object)
    return np.asarray(key + labels(group.fields["size"], thousands))


FILE_SYSTEM_RENDERERS: dict[str, Callable[[Group], np.ndarray]] = {
    "create": _render_create,
    "read_write": _render_read_write,
    "rename": _render_rename,
    "disposition": _render_disposition,
    "lock": _render_lock,
    "size": _render_size,
}
"""Detail text of each decoded group (one string, or None, per event)."""
