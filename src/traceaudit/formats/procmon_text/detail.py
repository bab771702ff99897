"""Procmon's Detail column as typed columns, vectorised with polars.

Detail is ``Key: Value`` pairs joined by ``", "``, but values contain ``", "`` too
(``Desired Access: Read Attributes, Synchronize, Disposition: Open``), so the string is
cut at the *known keys* of the operation, not at commas. Each operation family is parsed
only on its own rows (a gathered sub-column) and the results are gathered back, so the
cost follows the number of CreateFile/ReadFile/… rows, not the size of the trace. Which
rows belong to a family is decided once per distinct operation name (:class:`Operations`).

Cutting uses literal splits at ``", Key: "`` (no regular expressions on the hot path):
a value runs from its key to the next known key of the same family, or to the end.
Unknown keys are never fatal: an unknown ``Key: value`` pair ends up inside the previous
value, where the token parsers below ignore it (unknown access, share or option names
count as no bits; dispositions and open results keep their first word). Access lists,
share modes and option lists take few distinct values, so each distinct value is parsed
once and mapped back; CreateFile details as a whole repeat too (a few percent are
distinct in real captures) and are parsed once per distinct string. Read/WriteFile and
rename details, nearly all distinct, are first cut in one split where they have
Procmon's own shape (``Offset: X, Length: Y, …``, ``ReplaceIfExists: X, FileName: Y``),
which gives the same values as the general cut; only the other rows take the general cut.

Where numba is available, a family's rows (or its distinct Details) are cut and read in one
compiled loop instead (:mod:`.kernels`, :func:`_parse_compiled`): the same cut at the known
keys, reading only values spelled as Procmon spells them; the rows it is not sure of go
through the polars parser above, so both give the same columns.

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
from dataclasses import dataclass, field
from functools import lru_cache, partial

import numpy as np
import polars as pl
import pyarrow.compute as pc

from traceaudit.formats.procmon_text import kernels
from traceaudit.schema import (
    ACCESS_BITS,
    CREATE_OPTION_BITS,
    DETAIL_COLUMNS,
    EVENT_SCHEMA,
    SHARE_DELETE,
    SHARE_READ,
    SHARE_WRITE,
)

__all__ = [
    "DETAIL_SCHEMA",
    "CREATE_OPERATIONS",
    "IO_OPERATIONS",
    "Operations",
    "detail_columns",
    "parse_detail",
    "submit_detail_columns",
]

DETAIL_SCHEMA: dict[str, pl.DataType] = {name: EVENT_SCHEMA[name] for name in DETAIL_COLUMNS}
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

_NAME_SAMPLE = 50_000  # rows whose operation names Operations.of tries first
_CODES_ROWS = 300_000  # below this, Operations.of takes the compiled loop
# Below this, a family's columns are spread to the trace's rows in numpy (_spread): polars'
# gather costs ≈ 0.1 ms a column whatever the size, numpy's scatter ≈ 1 ms a column at 1M
# rows, where polars' gather runs the columns on its threads (7 against 15-21 ms).
_SPREAD_ROWS = 200_000

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
    the typed ``columns``. ``fast``, if given, cuts Procmon's usual shape of the Detail
    in fewer string passes: it returns the wanted values and which rows have that shape
    (for those, exactly the values the general cut gives); the other rows go through
    the general cut.
    """

    rows: Callable[[pl.Expr], pl.Expr]
    keys: tuple[str, ...]
    wanted: tuple[str, ...]
    build: Callable[[pl.DataFrame], list[pl.Series]]
    columns: tuple[str, ...]
    words: tuple[str, ...] = ()
    last: tuple[str, ...] = ()
    fast: Callable[[pl.Series], tuple[pl.DataFrame, pl.Series]] | None = None
    compiled: Callable[[kernels.Cut], tuple[list[pl.Series], np.ndarray]] | None = None
    reads: Mapping[str, tuple[int, kernels.NameTable | None]] = field(default_factory=dict)
    cut: kernels.KeyCut = field(init=False)

    def __post_init__(self) -> None:
        keys = kernels.KeyCut.of(self.keys, self.wanted, self.words, self.last, self.reads)
        object.__setattr__(self, "cut", keys)


@dataclass(frozen=True)
class Operations:
    """A column of operation names as small codes: ``names`` holds the distinct names and
    ``codes`` each row's index among them (null where the operation is). Questions about
    the operation (which family? which event class?) are then answered once per name,
    not once per row."""

    names: pl.Series
    codes: pl.Series

    @classmethod
    def of(cls, operations: pl.Series) -> Operations:
        operations = operations.cast(pl.String)
        # The compiled loop (≈ 11 ns a row) beats polars' Enum cast (≈ 8 ns a row, but
        # ≈ 1.3 ms a call) on traces of up to a few hundred thousand rows.
        small = operations.len() < _CODES_ROWS
        compiled = kernels.codes(operations) if small and kernels.available() else None
        if compiled is not None:
            return cls(*compiled)
        # The names of a sample usually are all the names: then one pass (the cast) does
        # instead of two (unique, then the cast). A name the sample lacks casts to null.
        sample = operations.head(_NAME_SAMPLE).drop_nulls().unique(maintain_order=True)
        codes = operations.cast(pl.Enum(sample), strict=False).to_physical()
        if codes.null_count() == operations.null_count():
            return cls(sample, codes)
        names = operations.drop_nulls().unique(maintain_order=True)
        return cls(names, operations.cast(pl.Enum(names)).to_physical())

    def where(self, test: Callable[[pl.Expr], pl.Expr]) -> pl.Series:
        """Whether each row's operation passes ``test`` (False for a null operation)."""
        passed = pl.select(test(pl.lit(self.names))).to_series().fill_null(False).arg_true()
        return self.codes.is_in(passed.to_list()).fill_null(False)

    def rows_of(
        self, tests: list[Callable[[pl.Expr], pl.Expr]], present: pl.Series | None
    ) -> list[pl.Series]:
        """For each test, the rows (indices) whose operation passes it and whose
        ``present`` is True: :meth:`where` for several tests that no name passes twice,
        decided in one pass over the rows instead of one per test (on the rows of a small
        trace, polars' cost per call is most of the work)."""
        which = _families_of(tuple(self.names.to_list()), tuple(tests))
        if which is None:  # a name in two families: one test at a time
            return [
                (self.where(test) & present if present is not None else self.where(test)).arg_true()
                for test in tests
            ]
        codes = self.codes.cast(pl.UInt32)
        if codes.null_count():
            codes = codes.fill_null(self.names.len())
        family = which[codes.to_numpy()]
        if present is not None:
            family[~present.to_numpy()] = 0
        return [
            pl.Series(np.flatnonzero(family == i + 1), dtype=pl.UInt32) for i in range(len(tests))
        ]

    def each_row(self, per_name: pl.Series) -> pl.Series:
        """``per_name`` (one value per name, in ``names`` order) spread to the rows."""
        return per_name.gather(self.codes)


@lru_cache(maxsize=64)
def _families_of(
    names: tuple[str, ...], tests: tuple[Callable[[pl.Expr], pl.Expr], ...]
) -> np.ndarray | None:
    """For :meth:`Operations.rows_of`: each name's test (1 + its index; 0: none; one more
    entry, 0, for a null operation), or None when a name passes two tests. Traces read
    one after the other (or in batches) have the same names: decided once for them."""
    series = pl.Series(names, dtype=pl.String)
    passed = pl.select(
        [test(pl.lit(series)).fill_null(False).alias(str(i)) for i, test in enumerate(tests)]
    )
    which = np.zeros(len(names) + 1, dtype=np.uint8)
    for i in range(len(tests)):
        matches = passed[str(i)].to_numpy()
        if (which[:-1][matches] != 0).any():
            return None
        which[:-1][matches] = i + 1
    which.flags.writeable = False
    return which


def parse_detail(
    frame: pl.DataFrame, *, detail: str = "detail", operation: str = "operation"
) -> pl.DataFrame:
    """Return ``frame`` with the typed Detail columns of :data:`DETAIL_SCHEMA` added.

    Rows outside a family get nulls in its columns; a missing key gives null, never an
    error. ``frame`` needs the ``detail`` and ``operation`` string columns.
    """
    operations = Operations.of(frame.get_column(operation))
    return frame.with_columns(detail_columns(frame.get_column(detail), operations))


def detail_columns(details: pl.Series, operations: Operations) -> list[pl.Series]:
    """The columns :func:`parse_detail` adds, for ``details`` and their operations."""
    return submit_detail_columns(details, operations)()


def submit_detail_columns(
    details: pl.Series, operations: Operations
) -> Callable[[], list[pl.Series]]:
    """Start :func:`detail_columns` on the family threads; the call returned waits for
    the columns."""
    details = details.cast(pl.String)
    # A null Detail gives nulls in every family, so those rows are left out.
    present = details.is_not_null() if details.null_count() else None
    wheres = operations.rows_of([family.rows for family in _FAMILIES], present)
    parse = partial(_parse_family, details=details)
    pairs = list(zip(_FAMILIES, wheres, strict=True))
    if details.len() < _SPREAD_ROWS:
        # One job for all: on a small trace the families' threads mostly take turns on
        # the GIL (small polars and pyarrow calls hold it), and each switch costs.
        job = _POOL.submit(lambda: [column for f, where in pairs for column in parse(f, where)])
        return job.result
    jobs = [_POOL.submit(parse, f, where) for f, where in pairs]
    return lambda: [column for job in jobs for column in job.result()]


def _parse_family(family: _Family, where: pl.Series, *, details: pl.Series) -> list[pl.Series]:
    """One family's typed columns, full length (null outside the family's rows,
    ``where``)."""
    if where.is_empty():
        return [
            pl.repeat(None, details.len(), dtype=DETAIL_SCHEMA[c], eager=True).alias(c)
            for c in family.columns
        ]
    rows = details.gather(where)
    # Parse each distinct Detail once when they repeat (CreateFile details do: a few
    # percent are distinct in real captures), else every row.
    distinct = _distinct(rows)
    if distinct is None:
        parsed = _parse_rows(rows, family, total=details.len())
        local = _numbers(rows.len())
    else:
        values, local = distinct
        parsed = _parse_rows(values, family)
    if details.len() < _SPREAD_ROWS and kernels.available():
        return _spread(parsed, where.to_numpy(), local.to_numpy(), details.len())
    # Each row's place in ``parsed`` (null outside the family), then one gather of the
    # whole frame (a null position gives a null row): the positions are checked once,
    # not once per column, and polars spreads the columns over its threads.
    position = pl.repeat(None, details.len(), dtype=pl.UInt32, eager=True).scatter(where, local)
    return parsed[position].get_columns()


def _spread(parsed: pl.DataFrame, where: np.ndarray, local: np.ndarray, n: int) -> list[pl.Series]:
    """``parsed``'s columns spread to ``n`` rows: row ``where[i]`` takes ``parsed``'s row
    ``local[i]``, the other rows are null (what the gather of :func:`_parse_family` gives).

    Numbers and booleans are written in numpy and handed over as Arrow buffers (polars'
    gather with null positions cost 0.1-0.15 ms per column on a 53k-row trace, whatever
    the family's size); strings are gathered by polars, in one call.
    """
    columns: dict[str, pl.Series] = {}
    strings: list[str] = []
    outside = _outside(where, n)
    for column in parsed.get_columns():
        numpy_type = _NUMPY_TYPES.get(column.dtype)
        if numpy_type is None:
            strings.append(column.name)
            continue
        array = column.to_arrow()
        full: np.ndarray = np.zeros(n, dtype=numpy_type)
        if array.null_count:
            values = np.asarray(pc.fill_null(array, False if numpy_type is np.bool_ else 0))
            null = outside.copy()
            null[where] = ~np.asarray(array.is_valid())[local]
        else:
            values = np.asarray(array)
            null = outside
        full[where] = values[local]
        columns[column.name] = kernels.arrow_series(full, null).alias(column.name)
    if strings:
        index = np.zeros(n, dtype=np.uint32)
        index[where] = local
        gathered = parsed.select(strings)[kernels.arrow_series(index, outside)]
        columns.update((name, gathered[name]) for name in strings)
    return [columns[name] for name in parsed.columns]


def _outside(where: np.ndarray, n: int) -> np.ndarray:
    """True for each of ``n`` rows but ``where``."""
    outside = np.ones(n, dtype=np.bool_)
    outside[where] = False
    return outside


def _distinct(rows: pl.Series) -> tuple[pl.Series, pl.Series] | None:
    """The distinct values of ``rows`` and each row's index among them, or None when too
    few repeat for parsing the distinct values to pay.

    A first look at a sample spares high-cardinality families (ReadFile offsets) the
    work. Rows are grouped by a 64-bit hash (one pass over the text, where unique() and
    a lookup would take two); the grouping is then checked against the text itself, so
    a hash collision costs time, never a wrong value.
    """
    if rows.len() < 64 or rows.head(4096).n_unique() * 2 > min(rows.len(), 4096):
        return None
    hashes = rows.hash()
    first = hashes.is_first_distinct()
    values = rows.filter(first)
    if values.len() * 4 > rows.len():
        return None
    index = hashes.replace_strict(hashes.filter(first), _numbers(values.len()))
    if not values.gather(index).equals(rows):  # a collision: group by the text instead
        values = rows.unique(maintain_order=True)
        index = rows.replace_strict(values, _numbers(values.len()))
    return values, index


def _compact(rows: pl.Series, total: int) -> pl.Series:
    """``rows`` copied next to each other in memory when they are a sparse pick of
    ``total`` rows, else ``rows`` as they are.

    A gathered string column still points into the text of the whole Detail column, so
    every string kernel on a sparse pick jumps across hundreds of megabytes: measured 3-5×
    slower per row than on the same strings packed (1M-row export, rename rows 1 in 16).
    The copy (one Arrow round trip) pays when the rows are parsed one by one, with
    several passes each; for a dense pick the strings are near each other anyway.
    """
    if rows.len() * 8 > total:
        return rows
    packed = pl.from_arrow(rows.to_arrow(compat_level=pl.CompatLevel.oldest()))
    assert isinstance(packed, pl.Series)
    return packed.alias(rows.name)


def _numbers(n: int) -> pl.Series:
    return pl.int_range(n, dtype=pl.UInt32, eager=True)


def _parse_rows(rows: pl.Series, family: _Family, *, total: int | None = None) -> pl.DataFrame:
    """The typed columns of every row: through the compiled loop where numba is
    available (:func:`_parse_compiled`, which packs the rows' bytes anyway), else in
    polars (``total``: the rows are a pick of so many, see :func:`_compact`)."""
    if family.compiled is not None and kernels.available():
        return _parse_compiled(rows, family)
    return _parse_polars(rows if total is None else _compact(rows, total), family)


def _parse_polars(rows: pl.Series, family: _Family) -> pl.DataFrame:
    """The typed columns of every row, in polars."""
    return pl.DataFrame(family.build(_values(rows, family)))


def _parse_compiled(rows: pl.Series, family: _Family) -> pl.DataFrame:
    """The typed columns of every row through the compiled loop; the rows it is not sure
    of go through :func:`_parse_polars`."""
    assert family.compiled is not None
    buffers = kernels.string_buffers(rows)
    cut = kernels.cut(buffers, np.arange(rows.len(), dtype=np.int64), family.cut)
    columns, unsure = family.compiled(cut)
    parsed = pl.DataFrame(columns)
    todo = np.flatnonzero(unsure | cut.unsure())
    if len(todo):
        index = pl.Series(todo, dtype=pl.UInt32)
        slow = _parse_polars(rows.gather(index), family)
        parsed = pl.DataFrame([parsed[c].scatter(index, slow[c]) for c in family.columns])
    return parsed


def _values(rows: pl.Series, family: _Family) -> pl.DataFrame:
    """The wanted keys' values: the family's fast cut where it applies, the general cut
    for the rows it leaves."""
    # A first look at a sample spares rows of another shape (LockFile's ``Exclusive: …``)
    # a fast cut that would leave them all.
    if family.fast is None or not family.fast(rows.head(64))[1].any():
        return _cut(rows, family)
    values, done = family.fast(rows)
    if done.all():
        return values
    todo = (~done).arg_true()
    slow = _cut(rows.gather(todo), family)
    return pl.DataFrame([values[key].scatter(todo, slow[key]) for key in family.wanted])


def _cut(details: pl.Series, family: _Family) -> pl.DataFrame:
    """The value of each wanted key (null when absent), cut at the family's keys.

    Only literal splits are used (``str.splitn``): they need no offsets, so text before
    the key may hold any characters. A text value is cut at every other key in turn,
    which leaves it ending at the earliest one.
    """
    # With ", " in front, a key that opens the Detail is found like any other.
    d = pl.col("d")
    values: list[pl.Expr] = []
    for key in family.wanted:
        after = d.str.splitn(f", {key}: ", 2).struct.field("field_1")
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
    return pl.DataFrame({"d": details}).select((pl.lit(", ") + d).alias("d")).select(values)


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
    replaced: pl.Series = values.replace_strict(distinct, parsed, default=None, return_dtype=dtype)
    return replaced


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


_OPTION_FLAGS = (
    pl.when((pl.col("o") & _DIRECTORY) != 0)
    .then(True)
    .when((pl.col("o") & _NON_DIRECTORY) != 0)
    .then(False)
    .alias("is_directory"),
    ((pl.col("o") & _DELETE_ON_CLOSE) != 0).alias("delete_on_close"),
)


def _create(values: pl.DataFrame) -> list[pl.Series]:
    options = _by_distinct(values["Options"], lambda v: _bits(v, CREATE_OPTION_BITS), pl.Int64())
    flags = pl.DataFrame({"o": options}).select(_OPTION_FLAGS)
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


def _io_fast(details: pl.Series) -> tuple[pl.DataFrame, pl.Series]:
    """Offset and Length of Procmon's own shape, ``Offset: X, Length: Y[, …]``, in one
    split, and which rows have that shape.

    When the first two ``", "``-separated fields are ``Offset: X`` and ``Length: Y``, no
    ``", "`` comes before them, so the general cut gives exactly X and Y.
    """
    first, second = pl.col("field_0"), pl.col("field_1")
    parts = pl.DataFrame({"d": details}).select(
        pl.col("d").str.split_exact(", ", 1).struct.unnest()
    )
    values = parts.select(
        first.str.slice(len("Offset: ")).alias("Offset"),
        second.str.slice(len("Length: ")).alias("Length"),
        (first.str.starts_with("Offset: ") & second.str.starts_with("Length: "))
        .fill_null(False)
        .alias("done"),
    )
    return values.select("Offset", "Length"), values["done"]


def _rename_fast(details: pl.Series) -> tuple[pl.DataFrame, pl.Series]:
    """ReplaceIfExists and FileName of Procmon's usual shape, ``ReplaceIfExists: X,
    FileName: Y`` (Y may hold ``", "``), in one split, and which rows have that shape.

    X holds no ``", "``, so the general cut gives exactly X and the rest after
    ``FileName: ``; a Detail with ``", Flags: "`` anywhere is left to the general cut.
    """
    first, rest = pl.col("field_0"), pl.col("field_1")
    frame = pl.DataFrame({"d": details})
    parts = frame.select(pl.col("d").str.splitn(", ", 2).struct.unnest())
    flags = frame.select(pl.col("d").str.contains(", Flags: ", literal=True)).to_series()
    values = parts.select(
        first.str.slice(len("ReplaceIfExists: ")).alias("ReplaceIfExists"),
        pl.lit(None, dtype=pl.String).alias("Flags"),
        rest.str.slice(len("FileName: ")).alias("FileName"),
        (
            first.str.starts_with("ReplaceIfExists: ")
            & rest.str.starts_with("FileName: ")
            & ~pl.lit(flags)
        )
        .fill_null(False)
        .alias("done"),
    )
    return values.select("ReplaceIfExists", "Flags", "FileName"), values["done"]


# ----------------------------------------------------------- through the compiled loops
#
# Each builder turns the compiled cut of a family's rows into the same typed columns as
# the polars builder above, for the rows the loops are sure of, and says which rows they
# are not sure of (those go through the polars parser).

_ACCESS = kernels.NameTable.of(ACCESS_BITS)
_SHARE = kernels.NameTable.of(SHARE_BITS)
_OPTIONS = kernels.NameTable.of(CREATE_OPTION_BITS)
# Procmon's words (procmon-parser's consts.py); others are left to the polars parser.
_DISPOSITIONS = kernels.NameTable.of(
    ("Supersede", "Open", "Create", "OpenIf", "Overwrite", "OverwriteIf")
)
_OPEN_RESULTS = kernels.NameTable.of(
    ("Superseded", "Opened", "Created", "Overwritten", "Exists", "DoesNotExist", "<unknown>")
)
_TRUE_FALSE = kernels.NameTable.of({"True": 1, "False": 0})
_NUMBER = (kernels.NUMBER, None)


_NUMPY_TYPES: dict[pl.DataType, type] = {
    pl.UInt32(): np.uint32,
    pl.UInt8(): np.uint8,
    pl.Int64(): np.int64,
    pl.Boolean(): np.bool_,
}


def _masked(values: np.ndarray, status: np.ndarray, dtype: pl.DataType) -> pl.Series:
    """``values`` where ``status`` is 0, else null, as ``dtype`` (an Arrow array with a
    validity mask: a fraction of the cost of a polars query on small columns)."""
    return kernels.arrow_series(values.astype(_NUMPY_TYPES[dtype]), status != 0)


def _named(value: tuple[np.ndarray, np.ndarray], table: kernels.NameTable) -> pl.Series:
    """The table's name at each index where the status is 0, else null."""
    position = _masked(*value, pl.UInt32())
    return pl.Series(table.names, dtype=pl.String).gather(position)


def _create_compiled(cut: kernels.Cut) -> tuple[list[pl.Series], np.ndarray]:
    options, status = cut.value(2)
    # _OPTION_FLAGS in numpy (a polars query costs more on the few distinct Details).
    absent = status != 0
    directory = (options & _DIRECTORY) != 0
    non_directory = (options & _NON_DIRECTORY) != 0
    columns = [
        _masked(*cut.value(0), pl.UInt32()).alias("access_mask"),
        _masked(*cut.value(3), pl.UInt8()).alias("share_mode"),
        _named(cut.value(1), _DISPOSITIONS).alias("disposition"),
        _masked(options, status, pl.UInt32()).alias("create_options"),
        kernels.arrow_series(directory, absent | ~(directory | non_directory)).alias(
            "is_directory"
        ),
        kernels.arrow_series((options & _DELETE_ON_CLOSE) != 0, absent).alias("delete_on_close"),
        _named(cut.value(4), _OPEN_RESULTS).alias("open_result"),
    ]
    return columns, np.zeros(len(options), dtype=np.bool_)


def _flag_compiled(cut: kernels.Cut, word: int, flags: int) -> tuple[pl.Series, np.ndarray]:
    """``coalesce(flag(word), has_flag(flags))`` where the loop is sure: the word is True
    or False, or both keys are absent. A Flags value is left to polars."""
    value, status = cut.value(word)
    unsure = (status == 1) & (cut.status[:, flags] != 1)
    return _masked(value == 1, status, pl.Boolean()), unsure


def _rename_compiled(cut: kernels.Cut) -> tuple[list[pl.Series], np.ndarray]:
    replace, unsure = _flag_compiled(cut, 0, 1)
    names = kernels.strings(cut, 2)
    target = pl.select(pl.when(pl.lit(names) != "").then(pl.lit(names))).to_series()
    return [target.alias("rename_target"), replace.alias("replace_if_exists")], unsure


def _disposition_compiled(cut: kernels.Cut) -> tuple[list[pl.Series], np.ndarray]:
    delete, unsure = _flag_compiled(cut, 0, 1)
    return [delete.alias("delete_flag")], unsure


def _io_compiled(cut: kernels.Cut) -> tuple[list[pl.Series], np.ndarray]:
    columns = [
        _masked(*cut.value(0), pl.Int64()).alias("offset"),
        _masked(*cut.value(1), pl.Int64()).alias("length"),
    ]
    return columns, np.zeros(len(cut.status), dtype=np.bool_)


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
        compiled=_create_compiled,
        reads={
            "Desired Access": (kernels.BITS, _ACCESS),
            "Disposition": (kernels.NAME, _DISPOSITIONS),
            "Options": (kernels.BITS, _OPTIONS),
            "ShareMode": (kernels.BITS, _SHARE),
            "OpenResult": (kernels.NAME, _OPEN_RESULTS),
        },
        columns=(
            "access_mask",
            "share_mode",
            "disposition",
            "create_options",
            "is_directory",
            "delete_on_close",
            "open_result",
        ),
    ),
    _Family(
        rows=lambda op: (
            op.str.starts_with("SetRenameInformation") | op.str.starts_with("SetLinkInformation")
        ),
        keys=("ReplaceIfExists", "Flags", "FileName"),
        wanted=("ReplaceIfExists", "Flags", "FileName"),
        build=_rename,
        compiled=_rename_compiled,
        reads={"ReplaceIfExists": (kernels.NAME, _TRUE_FALSE)},
        columns=("rename_target", "replace_if_exists"),
        fast=_rename_fast,
        words=("ReplaceIfExists",),
        last=("FileName",),
    ),
    _Family(
        rows=lambda op: op.str.starts_with("SetDispositionInformation"),
        keys=("Delete", "Flags"),
        wanted=("Delete", "Flags"),
        build=_disposition,
        compiled=_disposition_compiled,
        reads={"Delete": (kernels.NAME, _TRUE_FALSE)},
        columns=("delete_flag",),
        words=("Delete",),
    ),
    _Family(
        rows=lambda op: op.is_in(IO_OPERATIONS),
        keys=("Exclusive", "Offset", "Length", "I/O Flags", "Priority", "Fail Immediately"),
        wanted=("Offset", "Length"),
        build=_io,
        compiled=_io_compiled,
        reads={"Offset": _NUMBER, "Length": _NUMBER},
        columns=("offset", "length"),
        words=("Offset", "Length"),
        fast=_io_fast,
    ),
)
