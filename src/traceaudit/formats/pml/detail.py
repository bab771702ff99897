"""Typed details of the file-system operations the analysis needs, decoded per group.

Events are grouped by detail layout (:data:`GROUPS`: operation numbers, sub-operation
bytes, decoder); each decoder reads its group's fields for all the group's events at once
(structured-dtype gathers from :mod:`.layout`, plus the fields that follow the path)
and returns numpy arrays, one value per event. They feed both the schema's typed columns
(:func:`typed_columns`) and the Detail text (:mod:`.render`).

=====================  ===========================================================
group                  fields
=====================  ===========================================================
create (CreateFile)    access_mask, share_mode, disposition, create_options,
                       is_directory, delete_on_close, open_result; attributes,
                       allocation, impersonating (for the Detail text)
rename (SetRename*,    rename_target, replace_if_exists; flags (the Ex variants)
SetLink*)
disposition            delete_flag; flags (the Ex variant)
read_write             offset, length; io_flags, priority
lock                   offset, length; exclusive, fail_immediately
size (SetEndOfFile,    size
SetAllocation)
directory              the QueryDirectory filter, which Procmon appends to the path
(QueryDirectory)
=====================  ===========================================================

The rename record (docs/formats.md §2, procmon-reader): after the path comes the caller's
FILE_RENAME_INFORMATION buffer, ``Length`` bytes (the IRP's Parameters.SetFile.Length,
in the parameter block): u8 ReplaceIfExists (u32 Flags in the Ex variants), padding to a
pointer, RootDirectory pointer, u32 FileNameLength, UTF-16 name. Procmon follows the
buffer with the target as a DOS path (size word + string), which is what its CSV shows;
that is the ``rename_target`` when present, else the raw name (``\\??\\`` removed; a
bare name is joined to the source's directory, as procmon-reader does).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from traceaudit.formats.pml.columns import Named, nullable
from traceaudit.formats.pml.events import EventArrays, read_u16, read_u32
from traceaudit.formats.pml.layout import (
    FILE_SYSTEM,
    IPC,
    create_file_dtype,
    lock_dtype,
    read_write_dtype,
)
from traceaudit.formats.pml.names import DISPOSITION_NAMES, OPEN_RESULT_NAMES, WELL_KNOWN_SIDS
from traceaudit.formats.pml.paths import PathSpans
from traceaudit.formats.pml.tables import gather_records
from traceaudit.formats.pml.text import binary_values, decode_strings, gather_bytes

__all__ = ["Group", "GROUPS", "decode_groups", "groups_for", "typed_columns"]

_U64 = np.dtype("<u8")
_DIRECTORY = 0x1
_NON_DIRECTORY = 0x40
_DELETE_ON_CLOSE = 0x1000
_SET_FILE_LENGTH = 4 + 12  # Parameters.SetFile.Length in the parameter block
_RENAME_EX = (0x41, 0x42)
_DISPOSITION_EX = 0x40


@dataclass
class Group:
    """The events of one detail layout and what was decoded for them.

    ``index`` are positions in :class:`EventArrays`; ``after`` where each path ends (the
    operation's own fields follow it); ``spans`` where every event's path lies (the
    groups that need the text decode their own events' paths, so the typed details do
    not wait for the Path column); ``fields`` one numpy array per field, aligned with
    ``index``; ``strings`` string fields as lists (groups with few events), ``columns`` as series.
    """

    events: EventArrays
    index: np.ndarray
    after: np.ndarray
    spans: PathSpans
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    strings: dict[str, list[str]] = field(default_factory=dict)
    columns: dict[str, pl.Series] = field(default_factory=dict)

    @property
    def details(self) -> np.ndarray:
        return np.asarray(self.events.details[self.index])

    @property
    def end(self) -> np.ndarray:
        return np.asarray(self.events.details_end[self.index])

    @property
    def sub_operation(self) -> np.ndarray:
        return np.asarray(self.events.sub_operation[self.index])

    @property
    def size(self) -> int:
        return len(self.index)

    def keep(self, mask: np.ndarray) -> None:
        """Drop the events whose records do not fit in their details."""
        if not bool(mask.all()):
            self.index, self.after = self.index[mask], self.after[mask]

    def paths(self) -> pl.Series:
        """The paths of this group's events."""
        return self.spans.paths(self.events.buf, self.index)


def _sid_text(raw: bytes) -> str:
    """A binary SID as Procmon shows it: the account for well-known SIDs, else S-1-…"""
    if len(raw) < 8 or raw[0] != 1 or len(raw) != 8 + 4 * raw[1]:
        return ""
    authority = int.from_bytes(raw[2:8], "big")
    parts = [str(int.from_bytes(raw[i : i + 4], "little")) for i in range(8, len(raw), 4)]
    sid = "-".join(["S-1", str(authority), *parts])
    return WELL_KNOWN_SIDS.get(sid, sid)


def _decode_create(group: Group) -> None:
    """CreateFile: the create parameters, desired access, impersonation and result."""
    events = group.events
    dtype = create_file_dtype(events.header.pointer)
    group.keep((group.end >= group.details + dtype.itemsize) & (group.after + 8 <= group.end))
    data, after, end = events.data, group.after, group.end
    record = gather_records(data, group.details, dtype)
    options = record["options"]
    sid_size = data[after + 4].astype(np.int64)
    sid_size = np.where(after + 8 + sid_size <= end, sid_size, 0)
    sids = np.full(group.size, -1, dtype=np.int64)  # index into strings["impersonating"]
    with_sid = np.flatnonzero(sid_size)
    if len(with_sid):
        raw = binary_values(gather_bytes(events.buf, after[with_sid] + 8, sid_size[with_sid]))
        distinct = sorted(set(raw))
        group.strings["impersonating"] = [_sid_text(sid) for sid in distinct]
        number = {sid: i for i, sid in enumerate(distinct)}
        sids[with_sid] = [number[sid] for sid in raw]
    extra, extra_size = events.extra_of(group.index)
    open_result = np.full(group.size, -1, dtype=np.int64)
    at = np.flatnonzero(extra_size >= 4)
    open_result[at] = read_u32(data, extra[at])
    group.fields.update(
        access_mask=read_u32(data, after),
        share_mode=(record["share_mode"] & 0xFF).astype(np.uint8),
        disposition=(options >> 24).astype(np.int64),
        create_options=options & 0xFFFFFF,
        directory_stated=(options & (_DIRECTORY | _NON_DIRECTORY)) != 0,
        is_directory=(options & _DIRECTORY) != 0,
        delete_on_close=(options & _DELETE_ON_CLOSE) != 0,
        open_result=open_result,
        attributes=record["attributes"].astype(np.int64),
        allocation=record["allocation"].astype(np.int64),
        impersonating=sids,
    )


def _decode_read_write(group: Group) -> None:
    """ReadFile / WriteFile: offset, length (the transferred length once completed),
    I/O flags and priority."""
    events = group.events
    dtype = read_write_dtype(events.header.pointer)
    group.keep(group.end >= group.details + dtype.itemsize)
    record = gather_records(events.data, group.details, dtype)
    length = record["length"].astype(np.int64)
    extra, extra_size = events.extra_of(group.index)
    at = np.flatnonzero(extra_size >= 4)
    length[at] = read_u32(events.data, extra[at])
    flags = record["flags"].astype(np.int64)
    group.fields.update(
        offset=record["offset"],
        length=length,
        io_flags=flags & 0xE000FF,
        priority=(flags >> 17) & 7,
    )


def _dos_target(group: Group, name_at: np.ndarray) -> tuple[np.ndarray, pl.Series]:
    """The DOS-path target Procmon writes after the caller's rename buffer."""
    events = group.events
    data, after, end = events.data, group.after, group.end
    buffer_end = after + read_u32(data, group.details + _SET_FILE_LENGTH).astype(np.int64)
    present = (buffer_end >= name_at) & (buffer_end + 2 <= end)
    size_word = np.zeros(group.size, dtype=np.int64)
    at = np.flatnonzero(present)
    size_word[at] = read_u16(data, buffer_end[at])
    one_byte = (size_word >> 15).astype(bool)
    chars = size_word & 0x7FFF
    present &= (chars > 0) & (buffer_end + 2 + np.where(one_byte, chars, 2 * chars) <= end)
    start = np.where(present, buffer_end + 2, events.offsets[group.index])
    return present, decode_strings(
        events.buf, start, np.where(present, chars, 0), one_byte & present
    )


def _decode_rename(group: Group) -> None:
    """SetRenameInformation*/SetLinkInformation*: target and ReplaceIfExists (Flags)."""
    events = group.events
    pointer = events.header.pointer
    group.keep(group.after + 2 * pointer + 4 <= group.end)
    data, after, end = events.data, group.after, group.end
    flags = read_u32(data, after).astype(np.int64)
    extended = np.isin(group.sub_operation, _RENAME_EX)
    name_at = after + 2 * pointer + 4
    name_bytes = np.minimum(read_u32(data, after + 2 * pointer).astype(np.int64), end - name_at)
    raw = decode_strings(events.buf, name_at, np.maximum(name_bytes, 0) // 2)
    has_dos, dos = _dos_target(group, name_at)
    target = (
        pl.DataFrame({"raw": raw, "dos": dos, "has_dos": has_dos, "path": group.paths()})
        .select(
            pl.when(pl.col("has_dos"))
            .then(pl.col("dos"))
            .when(pl.col("raw").str.starts_with("\\??\\"))
            .then(pl.col("raw").str.slice(4))
            .when(pl.col("raw").str.starts_with("\\") | (pl.col("raw") == ""))
            .then(pl.col("raw"))
            .otherwise(pl.col("path").str.replace(r"[^\\]*$", "") + pl.col("raw"))
        )
        .to_series()
    )
    group.strings["rename_target"] = target.to_list()
    group.fields.update(
        replace_if_exists=np.where(extended, flags & 1, flags & 0xFF) != 0,
        flags=np.where(extended, flags, -1),
    )


def _decode_disposition(group: Group) -> None:
    """SetDispositionInformationFile (u8 Delete) and …Ex (u32 Flags, bit 0 = delete)."""
    group.keep(group.after + 4 <= group.end)
    flags = read_u32(group.events.data, group.after).astype(np.int64)
    extended = group.sub_operation == _DISPOSITION_EX
    group.fields.update(
        delete_flag=np.where(extended, flags & 1, flags & 0xFF) != 0,
        flags=np.where(extended, flags, -1),
    )


def _decode_lock(group: Group) -> None:
    """LockFile / UnlockFile*: byte offset, length (after the path), lock flags."""
    events = group.events
    pointer = events.header.pointer
    dtype = lock_dtype(pointer)
    group.keep((group.end >= group.details + dtype.itemsize) & (group.after + pointer <= group.end))
    record = gather_records(events.data, group.details, dtype)
    group.fields.update(
        offset=record["offset"],
        length=gather_records(events.data, group.after, np.dtype(f"<u{pointer}")).astype(np.int64),
        exclusive=record["exclusive"] != 0,
        fail_immediately=record["fail_immediately"] != 0,
    )


def _decode_size(group: Group) -> None:
    """SetEndOfFileInformationFile / SetAllocationInformationFile: the new size."""
    group.keep(group.after + 8 <= group.end)
    group.fields["size"] = gather_records(group.events.data, group.after, _U64).astype(np.int64)


def _decode_directory(group: Group) -> None:
    """QueryDirectory: the file-name filter, which Procmon shows appended to the path."""
    events = group.events
    group.keep(group.after + 2 <= group.end)
    data, after, end = events.data, group.after, group.end
    size_word = read_u16(data, after).astype(np.int64)
    one_byte = (size_word >> 15).astype(bool)
    chars = size_word & 0x7FFF
    fits = (chars > 0) & (after + 2 + np.where(one_byte, chars, 2 * chars) <= end)
    group.keep(fits)
    if group.size == 0:
        return
    fits_at = np.flatnonzero(fits)
    filters = decode_strings(events.buf, after[fits_at] + 2, chars[fits_at], one_byte[fits_at])
    path = (
        pl.DataFrame({"path": group.paths(), "filter": filters})
        .select(
            pl.when(pl.col("path").str.ends_with("\\"))
            .then(pl.col("path") + pl.col("filter"))
            .otherwise(pl.col("path") + "\\" + pl.col("filter"))
        )
        .to_series()
    )
    group.columns["path"] = path


Decoder = Callable[[Group], None]

GROUPS: dict[str, tuple[tuple[int, ...], tuple[int, ...] | None, Decoder]] = {
    # name: (operation numbers, sub-operation bytes or None = any, decoder)
    "create": ((20,), None, _decode_create),
    "read_write": ((3, 5, 23, 24), None, _decode_read_write),
    "rename": ((26,), (0x0A, 0x0B, 0x41, 0x42), _decode_rename),
    "disposition": ((26,), (0x0D, 0x40), _decode_disposition),
    "lock": ((37,), (1, 2, 3, 4), _decode_lock),
    "size": ((26,), (0x13, 0x14), _decode_size),
    "directory": ((32,), (1,), _decode_directory),
}
"""File-system (and IPC) detail layouts decoded, as a dispatch table."""


def decode_groups(
    events: EventArrays,
    spans: PathSpans,
    names: Collection[str] | None = None,
) -> dict[str, Group]:
    """Decode every group that has events (only the groups ``names`` when given)."""
    classes = events.event_class
    candidates = np.flatnonzero((classes == FILE_SYSTEM) | (classes == IPC))
    operations = events.operation[candidates]
    sub_operations = events.sub_operation[candidates]
    decoded: dict[str, Group] = {}
    for name, (group_operations, group_subs, decoder) in GROUPS.items():
        if names is not None and name not in names:
            continue
        mask = np.isin(operations, group_operations)
        if group_subs is not None:
            mask &= np.isin(sub_operations, group_subs)
        index = candidates[mask]
        if len(index) == 0:
            continue
        group = Group(events, index, spans.after[index], spans)
        decoder(group)
        if group.size:
            decoded[name] = group
    return decoded


TYPED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    # event-schema column: (group, field) pairs that fill it
    "access_mask": (("create", "access_mask"),),
    "share_mode": (("create", "share_mode"),),
    "create_options": (("create", "create_options"),),
    "is_directory": (("create", "is_directory"),),
    "delete_on_close": (("create", "delete_on_close"),),
    "replace_if_exists": (("rename", "replace_if_exists"),),
    "delete_flag": (("disposition", "delete_flag"),),
    "offset": (("read_write", "offset"), ("lock", "offset")),
    "length": (("read_write", "length"), ("lock", "length")),
}
"""Numeric and boolean schema columns, and where their values come from."""

NAMED_COLUMNS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # event-schema column: (group, code field, names by code)
    "disposition": ("create", "disposition", DISPOSITION_NAMES),
    "open_result": ("create", "open_result", OPEN_RESULT_NAMES),
}


def typed_columns(
    groups: dict[str, Group], count: int, schema: dict[str, pl.DataType]
) -> dict[str, pl.Series]:
    """The schema's detail columns for all ``count`` events (null outside their groups)."""
    columns: dict[str, pl.Series] = {}
    for name, sources in TYPED_COLUMNS.items():
        present = [(groups[g], f) for g, f in sources if g in groups]
        if not present:
            continue
        values = np.zeros(count, dtype=present[0][0].fields[present[0][1]].dtype)
        null = np.ones(count, dtype=bool)
        for group, field_name in present:
            values[group.index] = group.fields[field_name]
            null[group.index] = False
        if name == "is_directory":
            null[groups["create"].index] |= ~groups["create"].fields["directory_stated"]
        columns[name] = nullable(values, null, schema[name], name)
    for name, (group_name, code_field, names) in NAMED_COLUMNS.items():
        named = groups.get(group_name)
        if named is None:
            continue
        group = named
        codes = np.full(count, len(names), dtype=np.int64)  # the last name is null
        known = group.fields[code_field]
        codes[group.index] = np.where((known >= 0) & (known < len(names)), known, len(names))
        columns[name] = Named([*names, None], codes).series(name)
    rename = groups.get("rename")
    if rename is not None:
        target = Named([None], np.zeros(count, dtype=np.int64)).series("rename_target")
        columns["rename_target"] = target.scatter(rename.index, rename.strings["rename_target"])
    return columns


def groups_for(columns: Collection[str]) -> set[str]:
    """The groups to decode for the schema ``columns``: those that fill a typed column
    asked for, all but ``directory`` for ``detail`` (their Detail text), and
    ``directory`` for ``path`` (Procmon shows QueryDirectory's filter in the path)."""
    wanted = set(columns)
    names = {g for c, sources in TYPED_COLUMNS.items() if c in wanted for g, _ in sources}
    names |= {group for c, (group, _, _) in NAMED_COLUMNS.items() if c in wanted}
    if "rename_target" in wanted:
        names.add("rename")
    if "detail" in wanted:
        names |= set(GROUPS) - {"directory"}
    if "path" in wanted:
        names.add("directory")
    return names
