"""Procmon's Detail column as typed columns, vectorised with polars.

Detail is ``Key: Value`` pairs joined by ``", "``, but values contain ``", "`` too
(``Desired Access: Read Attributes, Synchronize, Disposition: Open``), so the string is
cut at the *known keys* of the operation, not at commas. Each operation family is parsed
only on its own rows (a filtered sub-column) and the results are gathered back, so the
cost follows the number of CreateFile/ReadFile/… rows, not the size of the trace.

Cutting uses literal splits at ``", Key: "`` (no regular expressions on the hot path):
a value runs from its key to the next known key of the same family, or to the end.
Unknown keys are never fatal: an unknown ``Key: value`` pair ends up inside the previous
value, where the token parsers below ignore it (unknown access, share or option names
count as no bits; dispositions and open results keep their first word). Access lists,
share modes and option lists take few distinct values, so each distinct value is parsed
once and mapped back; CreateFile details as a whole repeat too (a few percent are
distinct in real captures) and are parsed once per distinct string.

=================================  ==================================================
family (operations)                columns
=================================  ==================================================
CreateFile, CreatePipe,            access_mask (Desired Access via ACCESS_BITS),
CreateMailSlot                     share_mode, disposition, create_options,
                                   is_directory, delete_on_close, open_result
SetRenameInformation*,             rename_target (FileName), replace_if_exists
SetLinkInformation*                (ReplaceIfExists, or FILE_*_REPLACE_IF_EXISTS in Flags)
SetDispositionInformation*         delete_flag (``Delete: True``, or
                                   FILE_DISPOSITION_DELETE in the Ex variant's Flags)
ReadFile, WriteFile, LockFile,     offset, length (thousands separators ``,`` ``.``
UnlockFileSingle                   space, NBSP, apostrophe removed)
=================================  ==================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import polars as pl

from traceaudit.schema import ACCESS_BITS, CREATE_OPTION_BITS, SHARE_DELETE, SHARE_READ, SHARE_WRITE

__all__ = ["DETAIL_SCHEMA", "CREATE_OPERATIONS", "IO_OPERATIONS", "parse_detail"]

DETAIL_SCHEMA: dict[str, pl.DataType] = {
    "access_mask": pl.UInt32(),
    "share_mode": pl.UInt8(),
    "disposition": pl.String(),
    "create_options": pl.UInt32(),
    "is_directory": pl.Boolean(),
    "delete_on_close": pl.Boolean(),
    "open_result": pl.String(),
    "rename_target": pl.String(),
    "replace_if_exists": pl.Boolean(),
    "delete_flag": pl.Boolean(),
    "offset": pl.Int64(),
    "length": pl.Int64(),
}
"""The columns :func:`parse_detail` adds, with their types (as in EVENT_SCHEMA)."""

CREATE_OPERATIONS = ("CreateFile", "CreatePipe", "CreateMailSlot")
IO_OPERATIONS = ("ReadFile", "WriteFile", "LockFile", "UnlockFileSingle")

SHARE_BITS: dict[str, int] = {
    "Read": SHARE_READ,
    "Write": SHARE_WRITE,
    "Delete": SHARE_DELETE,
    "None": 0,
}

# The families are independent; polars releases the GIL, so they run side by side.
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="traceaudit-detail")

_DIRECTORY = CREATE_OPTION_BITS["Directory"]
_NON_DIRECTORY = CREATE_OPTION_BITS["Non-Directory File"]
_DELETE_ON_CLOSE = CREATE_OPTION_BITS["Delete On Close"]
_SEPARATORS = r"[\s,.'\u00a0\u202f\u2019]"


@dataclass(frozen=True)
class _Family:
    """One operation family: which rows, which keys cut its Detail, what it yields.

    ``keys`` are all the keys that end a text value; ``wanted`` the ones whose value is
    used; ``words`` the wanted keys whose value never holds ``", "`` (numbers, whose
    thousands separator is never followed by a space, and True/False), so it simply ends
    at the first ``", "``; ``last`` the wanted keys Procmon always prints last (a rename's
    FileName), whose value runs to the end of the Detail even if the path holds
    ``", Key: "``; ``build`` turns the frame of wanted values (one column per key) into
    typed columns.
    """

    rows: Callable[[pl.Expr], pl.Expr]
    keys: tuple[str, ...]
    wanted: tuple[str, ...]
    build: Callable[[pl.DataFrame], list[pl.Series]]
    words: tuple[str, ...] = ()
    last: tuple[str, ...] = ()


def parse_detail(
    frame: pl.DataFrame, *, detail: str = "detail", operation: str = "operation"
) -> pl.DataFrame:
    """Return ``frame`` with the typed Detail columns of :data:`DETAIL_SCHEMA` added.

    Rows outside a family get nulls in its columns; a missing key gives null, never an
    error. ``frame`` needs the ``detail`` and ``operation`` string columns.
    """
    details = frame.get_column(detail).cast(pl.String)
    ops = frame.get_column(operation).cast(pl.String)
    families = [(family, details, ops) for family in _FAMILIES]
    results = list(_POOL.map(_parse_family, *zip(*families, strict=True)))
    return frame.with_columns([column for columns in results for column in columns])


def _parse_family(family: _Family, details: pl.Series, ops: pl.Series) -> list[pl.Series]:
    """One family's typed columns, full length (null outside the family's rows)."""
    mask = pl.select(family.rows(pl.lit(ops))).to_series().fill_null(False)
    rows = details.filter(mask)
    # Parse each distinct Detail once when they repeat (CreateFile details do: a few
    # percent are distinct in real captures), else every row. A first look at a sample
    # spares high-cardinality families (ReadFile offsets) a useless unique().
    index = None
    if rows.len() >= 64 and rows.head(4096).n_unique() * 2 <= min(rows.len(), 4096):
        distinct = rows.drop_nulls().unique()
        if distinct.len() * 4 <= rows.len():
            parsed = family.build(_cut(distinct, family))
            index = rows.replace_strict(
                distinct, pl.int_range(distinct.len(), eager=True), default=None
            )
    if index is None:
        parsed = family.build(_cut(rows, family))
    position = pl.select(pl.when(pl.lit(mask)).then(pl.lit(mask).cum_sum() - 1)).to_series()
    if index is not None:
        position = index.gather(position)
    # One frame-level gather: polars spreads the columns over its threads.
    return pl.DataFrame(parsed).select(pl.all().gather(position)).get_columns()


def _cut(details: pl.Series, family: _Family) -> pl.DataFrame:
    """The value of each wanted key (null when absent), cut at the family's keys.

    Only literal splits are used (``str.splitn``): they need no offsets, so text before
    the key may hold any characters. A text value is cut at every other key in turn,
    which leaves it ending at the earliest one.
    """
    d = pl.col("d")
    values: list[pl.Expr] = []
    for key in family.wanted:
        after = (
            pl.when(d.str.starts_with(f"{key}: "))
            .then(d.str.slice(len(key) + 2))
            .otherwise(d.str.splitn(f", {key}: ", 2).struct.field("field_1"))
        )
        if key in family.words:
            value = after.str.splitn(", ", 2).struct.field("field_0")
        elif key in family.last:
            value = after
        else:
            value = after
            for other in family.keys:
                if other != key:
                    value = value.str.splitn(f", {other}: ", 2).struct.field("field_0")
        values.append(value.alias(key))
    return pl.DataFrame({"d": details}).select(values)


def _by_distinct(
    values: pl.Series, parse: Callable[[pl.Expr], pl.Expr], dtype: pl.DataType
) -> pl.Series:
    """``parse`` applied to each distinct value once, then mapped back to every row.

    Access lists, share modes, options and flags take a few dozen distinct values in a
    trace of millions of rows, so this is much cheaper than parsing every row.
    """
    distinct = values.drop_nulls().unique()
    if distinct.len() * 4 > values.len():
        return pl.select(parse(pl.lit(values)).cast(dtype)).to_series()
    parsed = pl.select(parse(pl.lit(distinct)).cast(dtype)).to_series()
    return values.replace_strict(distinct, parsed, default=None, return_dtype=dtype)


def _bits(value: pl.Expr, table: Mapping[str, int]) -> pl.Expr:
    """OR of the bits named in a ``", "``-separated list; unknown names count as 0.

    ``0x…`` tokens are read as hexadecimal; ``A/B`` names not in the table fall back to
    their first part.
    """
    token = pl.element().str.strip_chars()
    direct = token.replace_strict(table, default=None, return_dtype=pl.Int64)
    first_part = (
        token.str.split("/").list.first().replace_strict(table, default=None, return_dtype=pl.Int64)
    )
    hexadecimal = (
        pl.when(token.str.starts_with("0x"))
        .then(token.str.slice(2).str.to_integer(base=16, strict=False))
        .otherwise(None)
    )
    bits = pl.coalesce(direct, hexadecimal, first_part, pl.lit(0, dtype=pl.Int64))
    return value.str.split(", ").list.eval(bits.bitwise_or()).list.first()


def _first_word(value: pl.Expr) -> pl.Expr:
    """The value up to its first ``", "`` (drops an unknown key swallowed after it)."""
    word = value.str.split(", ").list.first().str.strip_chars()
    return pl.when(word != "").then(word)


def _flag(value: pl.Expr) -> pl.Expr:
    """``True``/``False`` text to Boolean (null for anything else)."""
    word = _first_word(value)
    return pl.when(word == "True").then(True).when(word == "False").then(False)


def _has_flag(name: str, hex_bit: int) -> Callable[[pl.Expr], pl.Expr]:
    """Parser: does a Flags value name ``name`` (``A, B`` or ``A | B``) or set ``hex_bit``?"""

    def parse(flags: pl.Expr) -> pl.Expr:
        named = flags.str.contains(rf"(?:^|[,|]\s*){name}(?:$|[\s,|])")
        text = flags.str.strip_chars()
        number = text.str.slice(2).str.to_integer(base=16, strict=False)
        return (
            pl.when(text.str.starts_with("0x"))
            .then((number & hex_bit) != 0)
            .when(flags.is_not_null())
            .then(named)
        )

    return parse


def _number(value: pl.Series) -> pl.Series:
    """``5,242,880`` / ``5.242.880`` / ``5 242 880`` → 5242880 (null if not a number)."""
    plain = value.str.replace_all(",", "", literal=True).str.to_integer(strict=False)
    unread = plain.is_null() & value.is_not_null()
    if not unread.any():
        return plain
    index = unread.arg_true()
    localized = value.gather(index).str.replace_all(_SEPARATORS, "").str.to_integer(strict=False)
    return plain.scatter(index, localized)


def _create(values: pl.DataFrame) -> list[pl.Series]:
    options = _by_distinct(values["Options"], lambda v: _bits(v, CREATE_OPTION_BITS), pl.Int64())
    flags = pl.DataFrame({"o": options}).select(
        pl.when((pl.col("o") & _DIRECTORY) != 0)
        .then(True)
        .when((pl.col("o") & _NON_DIRECTORY) != 0)
        .then(False)
        .alias("is_directory"),
        ((pl.col("o") & _DELETE_ON_CLOSE) != 0).alias("delete_on_close"),
    )
    return [
        _by_distinct(values["Desired Access"], lambda v: _bits(v, ACCESS_BITS), pl.UInt32()).alias(
            "access_mask"
        ),
        _by_distinct(values["ShareMode"], lambda v: _bits(v, SHARE_BITS), pl.UInt8()).alias(
            "share_mode"
        ),
        _by_distinct(values["Disposition"], _first_word, pl.String()).alias("disposition"),
        options.cast(pl.UInt32).alias("create_options"),
        flags["is_directory"],
        flags["delete_on_close"],
        _by_distinct(values["OpenResult"], _first_word, pl.String()).alias("open_result"),
    ]


def _rename(values: pl.DataFrame) -> list[pl.Series]:
    replace = pl.DataFrame(
        {
            "flag": _by_distinct(values["ReplaceIfExists"], _flag, pl.Boolean()),
            "flags": _by_distinct(
                values["Flags"],
                _has_flag(r"FILE_(?:RENAME|LINK)_REPLACE_IF_EXISTS", 0x1),
                pl.Boolean(),
            ),
        }
    ).select(pl.coalesce("flag", "flags"))
    target = values.select(
        pl.when(pl.col("FileName") != "").then(pl.col("FileName")).alias("rename_target")
    )
    return [target.to_series(), replace.to_series().alias("replace_if_exists")]


def _disposition(values: pl.DataFrame) -> list[pl.Series]:
    delete = pl.DataFrame(
        {
            "flag": _by_distinct(values["Delete"], _flag, pl.Boolean()),
            "flags": _by_distinct(
                values["Flags"], _has_flag("FILE_DISPOSITION_DELETE", 0x1), pl.Boolean()
            ),
        }
    ).select(pl.coalesce("flag", "flags"))
    return [delete.to_series().alias("delete_flag")]


def _io(values: pl.DataFrame) -> list[pl.Series]:
    return [_number(values["Offset"]).alias("offset"), _number(values["Length"]).alias("length")]


_CREATE_KEYS = (
    "Desired Access",
    "Disposition",
    "Options",
    "Attributes",
    "ShareMode",
    "AllocationSize",
    "Impersonating",
    "OpenResult",
)

_FAMILIES: tuple[_Family, ...] = (
    _Family(
        rows=lambda op: op.is_in(CREATE_OPERATIONS),
        keys=_CREATE_KEYS,
        wanted=("Desired Access", "Disposition", "Options", "ShareMode", "OpenResult"),
        build=_create,
    ),
    _Family(
        rows=lambda op: (
            op.str.starts_with("SetRenameInformation") | op.str.starts_with("SetLinkInformation")
        ),
        keys=("ReplaceIfExists", "Flags", "FileName"),
        wanted=("ReplaceIfExists", "Flags", "FileName"),
        build=_rename,
        words=("ReplaceIfExists",),
        last=("FileName",),
    ),
    _Family(
        rows=lambda op: op.str.starts_with("SetDispositionInformation"),
        keys=("Delete", "Flags"),
        wanted=("Delete", "Flags"),
        build=_disposition,
        words=("Delete",),
    ),
    _Family(
        rows=lambda op: op.is_in(IO_OPERATIONS),
        keys=("Exclusive", "Offset", "Length", "I/O Flags", "Priority", "Fail Immediately"),
        wanted=("Offset", "Length"),
        build=_io,
        words=("Offset", "Length"),
    ),
)
