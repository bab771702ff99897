"""The Windows rules the analysis rests on, in one place: paths, share modes, statuses.

Paths
-----
NTFS names are case-insensitive (case-preserving), and Procmon sometimes shows a directory
with a trailing backslash. Every comparison of paths in the analysis goes through
:func:`path_key`, so ``C:\\Temp\\A.DLL`` and ``c:\\temp\\a.dll`` are the same file.

Share modes
-----------
Windows checks sharing per file: a new open is refused with SHARING VIOLATION when an
existing handle's share mode does not admit the new access, **or** the new share mode does
not admit an existing handle's access. Only three kinds of access take part: read (read
data, execute), write (write data, append data) and delete. Opens that ask only for
attributes, security or SYNCHRONIZE never conflict, however they share.

Generic rights are mapped the way the file system maps them (FILE_GENERIC_READ includes
read data, FILE_GENERIC_WRITE write and append data, GENERIC_ALL everything); MAXIMUM_ALLOWED
is treated as everything, since the granted set is not in the trace.

Statuses
--------
Which results can mean that a handle or section was in the way (:data:`LOCK_RESULTS`),
which only look alarming (:data:`INFORMATIONAL_RESULTS`), which operations change the
namespace (:data:`NAMESPACE_OPERATIONS`: they fail while anything below a directory is
open), and the Win32 error each status becomes for the application (:data:`WIN32_ERROR`).
"""

from __future__ import annotations

import polars as pl

from traceaudit.schema import (
    CREATE_OPTION_BITS,
    DELETE_BITS,
    READ_BITS,
    SHARE_DELETE,
    SHARE_READ,
    SHARE_WRITE,
    WRITE_BITS,
)

SEP = "\\"


def path_key(column: str | pl.Expr = "path") -> pl.Expr:
    """Case-folded path with any trailing backslash removed (``C:\\`` stays as it is)."""
    expr = pl.col(column) if isinstance(column, str) else column
    # One trailing backslash dropped when at least three characters precede it (a regex,
    # not when/then: polars 2.0's streaming engine panics on that over strings).
    return expr.str.to_lowercase().str.replace(r"(?s)^(.{3}.*)\\$", "${1}")


def fold(path: str) -> str:
    """The same normalisation for one Python string (user input such as ``--path``)."""
    folded = path.lower()
    if folded.endswith(SEP) and len(folded) > 3:
        folded = folded[:-1]
    return folded


def _has(mask: pl.Expr, bits: int) -> pl.Expr:
    return (mask & pl.lit(bits, dtype=pl.UInt32)) != 0


def wants_read(mask: pl.Expr) -> pl.Expr:
    return _has(mask, READ_BITS)


def wants_write(mask: pl.Expr) -> pl.Expr:
    return _has(mask, WRITE_BITS)


def wants_delete(mask: pl.Expr) -> pl.Expr:
    return _has(mask, DELETE_BITS)


def is_data_access(mask: pl.Expr) -> pl.Expr:
    """True when the open asks for read, write or delete: the rights sharing is about."""
    return _has(mask, READ_BITS | WRITE_BITS | DELETE_BITS)


def _shares(share: pl.Expr, bit: int) -> pl.Expr:
    return (share & pl.lit(bit, dtype=pl.UInt8)) != 0


def incompatible(
    held_mask: pl.Expr, held_share: pl.Expr, new_mask: pl.Expr, new_share: pl.Expr
) -> pl.Expr:
    """Whether a held handle and a new open exclude each other, in either direction.

    Null (unknown) access or share on either side gives null: the caller decides what an
    unknown means (for a handle open before the capture: a possible blocker).
    """
    held_excludes_new = (
        (wants_read(new_mask) & ~_shares(held_share, SHARE_READ))
        | (wants_write(new_mask) & ~_shares(held_share, SHARE_WRITE))
        | (wants_delete(new_mask) & ~_shares(held_share, SHARE_DELETE))
    )
    new_excludes_held = (
        (wants_read(held_mask) & ~_shares(new_share, SHARE_READ))
        | (wants_write(held_mask) & ~_shares(new_share, SHARE_WRITE))
        | (wants_delete(held_mask) & ~_shares(new_share, SHARE_DELETE))
    )
    # An attribute-only open is never entered in the file's share-access record
    # (IoSetShareAccess skips it), so it neither blocks nor is blocked.
    both_data = is_data_access(held_mask) & is_data_access(new_mask)
    return both_data & (held_excludes_new | new_excludes_held)


# NTSTATUS display strings (Procmon's) that can mean an open handle is in the way.
LOCK_RESULTS = frozenset(
    {
        "SHARING VIOLATION",
        "ACCESS DENIED",
        "DELETE PENDING",
        "CANNOT DELETE",
        "FILE LOCK CONFLICT",
        "NOT GRANTED",
        "LOCK NOT GRANTED",
        "OPLOCK NOT GRANTED",
        "CANNOT BREAK OPLOCK",
        "USER MAPPED FILE",
    }
)

# Statuses that look alarming but are not failures of the operation.
INFORMATIONAL_RESULTS = frozenset(
    {
        "FILE LOCKED WITH ONLY READERS",
        "FILE LOCKED WITH WRITERS",
        "OPLOCK HANDLE CLOSED",
        "OPLOCK BREAK IN PROGRESS",
        "FAST IO DISALLOWED",
        "REPARSE",
        "BUFFER OVERFLOW",
    }
)

# Operations that change the namespace: they fail while anything below a directory is open.
NAMESPACE_OPERATIONS = frozenset(
    {
        "SetRenameInformationFile",
        "SetRenameInformationEx",
        "SetRenameInformationExBypassAccessCheck",
        "SetLinkInformationFile",
        "SetLinkInformationEx",
        "SetDispositionInformationFile",
        "SetDispositionInformationEx",
    }
)

# What the application saw: RtlNtStatusToDosError of each status.
WIN32_ERROR: dict[str, int] = {
    "ACCESS DENIED": 5,
    "SHARING VIOLATION": 32,
    "DELETE PENDING": 5,
    "CANNOT DELETE": 5,
    "FILE LOCK CONFLICT": 33,
    "NOT GRANTED": 33,
    "LOCK NOT GRANTED": 33,
    "OPLOCK NOT GRANTED": 300,
    "CANNOT BREAK OPLOCK": 802,
    "USER MAPPED FILE": 1224,
}

# Statuses of a refused oplock request (FILE_OPEN_REQUIRING_OPLOCK, FSCTL_REQUEST_OPLOCK).
OPLOCK_RESULTS = frozenset({"OPLOCK NOT GRANTED", "CANNOT BREAK OPLOCK"})
# Informational for any other open; an oplock probe's answer when it required an oplock.
_BREAK_IN_PROGRESS = "OPLOCK BREAK IN PROGRESS"
_REQUIRES_OPLOCK = CREATE_OPTION_BITS["Open Requiring Oplock"]
