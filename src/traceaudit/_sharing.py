"""Windows share-mode rules as polars expressions.

Windows checks sharing per file: a new open is refused with SHARING VIOLATION when an
existing handle's share mode does not admit the new access, **or** the new share mode does
not admit an existing handle's access. Only three kinds of access take part: read (read
data, execute), write (write data, append data) and delete. Opens that ask only for
attributes, security or SYNCHRONIZE never conflict, however they share.

Generic rights are mapped the way the file system maps them (FILE_GENERIC_READ includes
read data, FILE_GENERIC_WRITE write and append data, GENERIC_ALL everything); MAXIMUM_ALLOWED
is treated as everything, since the granted set is not in the trace.
"""

from __future__ import annotations

import polars as pl

from traceaudit.schema import SHARE_DELETE, SHARE_READ, SHARE_WRITE

READ_BITS = 0x0001 | 0x0020 | 0x80000000 | 0x20000000 | 0x10000000 | 0x02000000
WRITE_BITS = 0x0002 | 0x0004 | 0x40000000 | 0x10000000 | 0x02000000
DELETE_BITS = 0x00010000 | 0x10000000 | 0x02000000


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
